"""The trust core: which indexes and manifests a client may believe."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from satchel.content import canonical
from satchel.content.chunking import ChunkerParams
from satchel.content.errors import FormatError, TrustError
from satchel.content.index import IndexEntry
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.signing import SigningKey
from satchel.sync.release import INDEX_VALIDITY, sign_index, sign_manifest
from satchel.sync.trust import check_entry_version, verify_index, verify_manifest

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
KEY = SigningKey.generate()
OTHER = SigningKey.generate()


def mid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def index(
    serial: int = 5,
    *,
    key: SigningKey = KEY,
    now: datetime = NOW,
    entries: tuple[IndexEntry, ...] = (),
) -> bytes:
    return sign_index(
        entries or (IndexEntry("b", "en", 2, mid(2), 10, "B"),), serial=serial, key=key, now=now
    )


def check(data: bytes, **kwargs: object) -> object:
    args: dict[str, object] = {
        "bundle": "b",
        "locale": "en",
        "pinned": KEY.public,
        "expected_fingerprint": None,
        "now": NOW + timedelta(hours=1),
        "last_serial": None,
    }
    args.update(kwargs)
    return verify_index(data, **args)  # type: ignore[arg-type]


# -- index ---------------------------------------------------------------------------------
def test_an_index_about_another_line_is_refused() -> None:
    """Each line has its own index: one about b/en cannot stand in for b/es's."""
    with pytest.raises(FormatError, match="is about b/en"):
        check(index(), locale="es")
    two = (IndexEntry("b", "en", 2, mid(2), 10, "B"), IndexEntry("c", "en", 1, mid(1), 10, "C"))
    with pytest.raises(FormatError, match="exactly one"):
        check(index(entries=two))


def test_a_withdrawn_held_version_is_no_rollback() -> None:
    entry = IndexEntry("b", "en", 2, mid(2), 10, "B", withdrawn=(3,))
    check_entry_version(entry, 3, mid(3))  # the laptop holds 3, which was withdrawn: kept
    with pytest.raises(TrustError, match="rollback"):
        check_entry_version(entry, 4, mid(4))  # 4 was not withdrawn: going back is refused


def test_first_use_pins_the_publisher_key() -> None:
    trusted = check(index(), pinned=None)
    assert trusted.newly_pinned == KEY.public  # type: ignore[attr-defined]
    assert trusted.index.serial == 5  # type: ignore[attr-defined]


def test_pinned_key_is_not_pinned_again() -> None:
    assert check(index()).newly_pinned is None  # type: ignore[attr-defined]


def test_index_from_another_key_is_refused() -> None:
    with pytest.raises(TrustError, match="key changed"):
        check(index(key=OTHER))


def test_trusted_fingerprint_must_match_even_on_first_use() -> None:
    with pytest.raises(TrustError):
        check(index(key=OTHER), pinned=None, expected_fingerprint=KEY.public.fingerprint)
    trusted = check(index(), pinned=None, expected_fingerprint=KEY.public.keyid.upper())
    assert trusted.newly_pinned == KEY.public  # type: ignore[attr-defined]


def test_malformed_trust_fingerprint_is_refused() -> None:
    with pytest.raises(FormatError):
        check(index(), pinned=None, expected_fingerprint="abcd")


def test_index_with_a_tampered_signed_part_is_refused() -> None:
    doc = canonical.decode(index(), what="i", max_bytes=1 << 20)
    doc["signed"]["entries"][0]["version"] = 3
    with pytest.raises(TrustError, match="bad signature"):
        check(canonical.encode(doc), pinned=None)


def test_index_whose_embedded_key_was_swapped_is_refused() -> None:
    # An attacker signs with their key and also swaps the publisher field: TOFU clients
    # would accept it, but a pinned client must not.
    with pytest.raises(TrustError):
        check(index(key=OTHER), pinned=KEY.public)


def test_unsigned_index_is_refused() -> None:
    doc = canonical.decode(index(), what="i", max_bytes=1 << 20)
    doc["signatures"][0]["keyid"] = OTHER.public.keyid
    with pytest.raises(TrustError, match="not signed"):
        check(canonical.encode(doc), pinned=None)


@pytest.mark.parametrize(
    "after", [INDEX_VALIDITY, INDEX_VALIDITY + timedelta(seconds=1), timedelta(days=365)]
)
def test_expired_index_is_refused(after: timedelta) -> None:
    with pytest.raises(TrustError, match="expired"):
        check(index(), now=NOW + after)
    check(index(), now=NOW + INDEX_VALIDITY - timedelta(seconds=1))


def test_serial_may_not_go_backwards() -> None:
    with pytest.raises(TrustError, match="rollback"):
        check(index(serial=4), last_serial=5)
    check(index(serial=5), last_serial=5)  # the same index again (304) is fine
    check(index(serial=6), last_serial=5)


def test_same_serial_with_other_content_is_refused() -> None:
    first = index(serial=5)
    second = index(serial=5, entries=(IndexEntry("b", "en", 3, mid(3), 10, "B"),))
    assert first != second
    check(first, last_serial=5, last_raw=first)
    with pytest.raises(TrustError, match="equivocation"):
        check(second, last_serial=5, last_raw=first)
    check(second, last_serial=4, last_raw=first)  # a newer serial may say anything


def test_trust_option_names_a_new_key_to_switch_to() -> None:
    # Without --trust a changed key is refused; with --trust naming it, it replaces the pin,
    # and the old key's serials no longer bind the new key's index.
    with pytest.raises(TrustError, match="key changed"):
        check(index(serial=1, key=OTHER), last_serial=9)
    trusted = check(
        index(serial=1, key=OTHER), expected_fingerprint=OTHER.public.fingerprint, last_serial=9
    )
    assert trusted.newly_pinned == OTHER.public  # type: ignore[attr-defined]
    with pytest.raises(TrustError):  # --trust never lets a third key through
        check(index(key=KEY), pinned=KEY.public, expected_fingerprint=OTHER.public.keyid)


# -- versions ------------------------------------------------------------------------------
def entry(version: int, manifest: str) -> IndexEntry:
    return IndexEntry("b", "en", version, manifest, 10, "B")


def test_check_entry_version() -> None:
    check_entry_version(entry(1, mid(1)), None, None)
    check_entry_version(entry(3, mid(3)), 2, mid(2))
    check_entry_version(entry(2, mid(2)), 2, mid(2))
    with pytest.raises(TrustError, match="rollback"):
        check_entry_version(entry(1, mid(1)), 2, mid(2))
    with pytest.raises(TrustError, match="different content"):
        check_entry_version(entry(2, mid(99)), 2, mid(2))


# -- manifests -----------------------------------------------------------------------------
PARAMS = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)


def manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "bundle": "b",
        "locale": "en",
        "version": 2,
        "parent_version": 1,
        "created": NOW,
        "title": "B",
        "chunker": PARAMS,
        "files": (FileEntry("a.txt", 5, 0o644, "text/plain", ((mid(7), 5),)),),
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


def entry_for(data: bytes, **changes: object) -> IndexEntry:
    fields: dict[str, object] = {
        "bundle": "b",
        "locale": "en",
        "version": 2,
        "manifest": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "title": "B",
    }
    fields.update(changes)
    return IndexEntry(**fields)  # type: ignore[arg-type]


def test_manifest_matching_its_entry_is_accepted() -> None:
    data = sign_manifest(manifest(), KEY)
    assert verify_manifest(data, entry_for(data), KEY.public) == manifest()


def test_manifest_with_another_hash_is_refused() -> None:
    data = sign_manifest(manifest(), KEY)
    with pytest.raises(TrustError, match="hash"):
        verify_manifest(data, entry_for(data, manifest=mid(0)), KEY.public)


def test_manifest_signed_by_another_key_is_refused() -> None:
    data = sign_manifest(manifest(), OTHER)
    with pytest.raises(TrustError):
        verify_manifest(data, entry_for(data), KEY.public)


@pytest.mark.parametrize("field", [{"bundle": "c"}, {"locale": "uk"}, {"version": 3}])
def test_manifest_for_another_line_or_version_is_refused(field: dict[str, object]) -> None:
    data = sign_manifest(manifest(), KEY)
    with pytest.raises(TrustError, match="describes"):
        verify_manifest(data, entry_for(data, **field), KEY.public)


def test_tampered_manifest_is_refused_even_with_a_matching_hash() -> None:
    doc = canonical.decode(sign_manifest(manifest(), KEY), what="m", max_bytes=1 << 20)
    doc["signed"]["title"] = "Evil"
    data = canonical.encode(doc)
    with pytest.raises(TrustError, match="bad signature"):
        verify_manifest(data, entry_for(data), KEY.public)
