"""Keys, signature envelopes and the release index."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content import canonical
from satchel.content.errors import FormatError, TrustError
from satchel.content.index import MAX_INDEX_BYTES, IndexEntry, ReleaseIndex, parse_index
from satchel.content.signing import (
    PublicKey,
    SigningKey,
    normalize_fingerprint,
    open_envelope,
    verify_envelope,
)

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
KEY = SigningKey.generate()
OTHER = SigningKey.generate()


def mid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def open_(data: bytes) -> Any:
    return open_envelope(data, what="doc", max_bytes=1 << 20)


def index_doc(**changes: Any) -> dict[str, Any]:
    index = ReleaseIndex(
        serial=5,
        issued=NOW,
        expires=NOW + timedelta(days=60),
        publisher=KEY.public,
        entries=(IndexEntry("alpha", "uk", 4, mid(2), 2000, "Альфа", (3, 1), (2,)),),
    )
    doc = index.to_signed()
    doc.update(changes)
    return doc


# -- keys ----------------------------------------------------------------------------------
def test_keyid_and_fingerprint() -> None:
    pub = KEY.public
    assert pub.keyid == hashlib.sha256(pub.raw).hexdigest()
    assert pub.fingerprint.replace(":", "") == pub.keyid
    assert len(pub.fingerprint.split(":")) == 16
    assert normalize_fingerprint(pub.fingerprint.upper()) == pub.keyid
    assert normalize_fingerprint(" " + pub.keyid.replace("", " ").strip()) == pub.keyid
    assert PublicKey.from_json(pub.to_json()) == pub


@pytest.mark.parametrize("text", ["", "abc", "g" * 64, "a" * 63, "a" * 65, "0x" + "a" * 62])
def test_bad_fingerprints_are_refused(text: str) -> None:
    with pytest.raises(FormatError):
        normalize_fingerprint(text)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {**KEY.public.to_json(), "scheme": "rsa"},
        {**KEY.public.to_json(), "keyid": OTHER.public.keyid},
        {**KEY.public.to_json(), "public_key": base64.b64encode(bytes(31)).decode()},
        {**KEY.public.to_json(), "public_key": "not base64!"},
        {**KEY.public.to_json(), "public_key": 5},
    ],
)
def test_bad_public_keys_are_refused(raw: object) -> None:
    with pytest.raises(FormatError):
        PublicKey.from_json(raw)


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    key = SigningKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public == key.public
    assert SigningKey.load_or_create(path).public == key.public
    with pytest.raises(FileExistsError):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).public == key.public


def test_non_key_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(FormatError):
        SigningKey.load(bad)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    other = tmp_path / "ec.pem"
    other.write_bytes(pem)
    os.chmod(other, 0o600)
    with pytest.raises(FormatError, match="not Ed25519"):
        SigningKey.load(other)


# -- envelopes -----------------------------------------------------------------------------
def test_signed_envelope_verifies() -> None:
    data = KEY.sign({"hello": "world", "n": 1})
    env = open_(data)
    assert env.signed == {"hello": "world", "n": 1}
    assert env.doc_id == hashlib.sha256(data).hexdigest()
    verify_envelope(env, KEY.public, what="doc")
    assert canonical.decode(data, what="doc", max_bytes=1 << 20) == {
        "signatures": [{"keyid": KEY.public.keyid, "sig": env_sig(data)}],
        "signed": {"hello": "world", "n": 1},
    }


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=10), _JSON, max_size=4))
def test_the_signed_bytes_are_the_canonical_encoding_of_the_signed_part(
    signed: dict[str, Any],
) -> None:
    # Signatures are checked over a slice of the document, not a re-encoding of it.
    env = open_(KEY.sign(signed))
    assert env.message == canonical.encode(signed)
    verify_envelope(env, KEY.public, what="doc")


def env_sig(data: bytes) -> str:
    return canonical.decode(data, what="doc", max_bytes=1 << 20)["signatures"][0]["sig"]


def test_tampered_signed_part_is_refused() -> None:
    doc = canonical.decode(KEY.sign({"version": 1}), what="doc", max_bytes=1 << 20)
    doc["signed"]["version"] = 2
    env = open_(canonical.encode(doc))
    with pytest.raises(TrustError, match="bad signature"):
        verify_envelope(env, KEY.public, what="doc")


def test_tampered_signature_is_refused() -> None:
    doc = canonical.decode(KEY.sign({"version": 1}), what="doc", max_bytes=1 << 20)
    sig = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    sig[0] ^= 1
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(TrustError):
        verify_envelope(open_(canonical.encode(doc)), KEY.public, what="doc")


def test_signature_by_another_key_is_refused() -> None:
    env = open_(OTHER.sign({"version": 1}))
    with pytest.raises(TrustError, match="not signed by the pinned"):
        verify_envelope(env, KEY.public, what="doc")


def test_signature_relabelled_with_the_pinned_keyid_is_refused() -> None:
    doc = canonical.decode(OTHER.sign({"version": 1}), what="doc", max_bytes=1 << 20)
    doc["signatures"][0]["keyid"] = KEY.public.keyid
    with pytest.raises(TrustError):
        verify_envelope(open_(canonical.encode(doc)), KEY.public, what="doc")


def test_second_valid_signature_is_enough() -> None:
    first = canonical.decode(OTHER.sign({"v": 1}), what="doc", max_bytes=1 << 20)
    second = canonical.decode(KEY.sign({"v": 1}), what="doc", max_bytes=1 << 20)
    doc = {"signatures": first["signatures"] + second["signatures"], "signed": {"v": 1}}
    verify_envelope(open_(canonical.encode(doc)), KEY.public, what="doc")


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"signed": {}},
        {"signatures": [], "signed": {}},
        {"signatures": [{"keyid": "k", "sig": ""}] * 9, "signed": {}},
        {"signatures": [{"keyid": "k", "sig": ""}], "signed": [], "extra": 1},
        {"signatures": [{"keyid": "k", "sig": ""}], "signed": []},
        {"signatures": {"keyid": "k"}, "signed": {}},
        {"signatures": ["sig"], "signed": {}},
        {"signatures": [{"keyid": 5, "sig": ""}], "signed": {}},
        {"signatures": [{"keyid": "k", "sig": "%%%"}], "signed": {}},
        {"signatures": [{"keyid": "k"}], "signed": {}},
    ],
)
def test_malformed_envelopes_are_refused(doc: object) -> None:
    with pytest.raises(FormatError):
        open_(canonical.encode(doc))


def test_non_canonical_envelope_is_refused() -> None:
    data = KEY.sign({"a": 1})
    with pytest.raises(FormatError):
        open_(data.replace(b'"signed":', b'"signed": '))


# -- index ---------------------------------------------------------------------------------
def test_a_line_index_round_trips() -> None:
    data = KEY.sign(index_doc())
    env, index = parse_index(data)
    assert index.line == IndexEntry("alpha", "uk", 4, mid(2), 2000, "Альфа", (3, 1), (2,))
    assert index.serial == 5 and index.publisher == KEY.public
    assert index.expires - index.issued == timedelta(days=60)
    assert index.entry("alpha", "uk") == index.line
    assert index.entry("zeta", "uk") is None
    removed = replace(index.line, removed=True)
    assert IndexEntry.from_json(removed.to_json()) == removed
    assert ReleaseIndex.from_signed(index.to_signed()) == index
    verify_envelope(env, KEY.public, what="index")


def entry_doc(**changes: Any) -> dict[str, Any]:
    doc = IndexEntry("b", "en", 1, mid(1), 10, "B").to_json()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "changes",
    [
        {"_type": "manifest"},
        {"format": 1},  # one index of every line: before per-line indexes
        {"format": None},
        {"serial": -1},
        {"serial": "5"},
        {"serial": True},
        {"expires": "soon"},
        {"issued": None},
        {"publisher": {**KEY.public.to_json(), "keyid": OTHER.public.keyid}},
        {"publisher": None},
        {"entries": None},
        {"entries": [entry_doc(), entry_doc()]},  # one line per index
        {"entries": [entry_doc(), entry_doc(bundle="c")]},
        {"entries": []},
        {"entries": [entry_doc(withdrawn=[1])]},  # the served version itself
        {"entries": [entry_doc(version=3, withdrawn=[1, 2])]},  # not newest first
        {"entries": [entry_doc(version=3, withdrawn=[2, 2])]},
        {"entries": [entry_doc(withdrawn="2")]},
        {"entries": [entry_doc(removed="yes")]},
        {"entries": [entry_doc(bundle="../x")]},
        {"entries": [entry_doc(bundle=7)]},
        {"entries": [entry_doc(locale="EN")]},
        {"entries": [entry_doc(version=0)]},
        {"entries": [entry_doc(version="1")]},
        {"entries": [entry_doc(size=0)]},
        {"entries": [entry_doc(size=64 * 1024 * 1024 + 1)]},
        {"entries": [entry_doc(manifest="ABC")]},
        {"entries": [entry_doc(title="t" * 501)]},
        {"entries": [entry_doc(title=5)]},
        {"entries": ["b/en"]},
    ],
)
def test_malformed_indexes_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        parse_index(KEY.sign(index_doc(**changes)))


def test_index_size_limit() -> None:
    with pytest.raises(FormatError, match="limit"):
        parse_index(b" " * (MAX_INDEX_BYTES + 1))
