"""Manifests: the signed file list of one version, parsed strictly."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content import canonical
from satchel.content.chunking import ChunkerParams
from satchel.content.errors import FormatError, UnsafePathError
from satchel.content.manifest import (
    MAX_DICTIONARIES,
    FileEntry,
    Manifest,
    ManifestDraft,
    check_chunk_id,
    distinct_chunks,
    iter_chunk_refs,
    parse_manifest,
)
from satchel.content.objects import MAX_DICTIONARY
from satchel.content.signing import SigningKey

PARAMS = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)
CREATED = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def cid(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def entry(path: str, *lengths: int, mode: int = 0o644, media_type: str = "text/plain") -> FileEntry:
    return FileEntry(
        path=path,
        size=sum(lengths),
        mode=mode,
        media_type=media_type,
        chunks=tuple((cid(f"{path}:{i}"), n) for i, n in enumerate(lengths)),
    )


def manifest(files: list[FileEntry] | None = None, **changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "bundle": "intro-stats",
        "locale": "pt-BR",
        "version": 3,
        "parent_version": 2,
        "created": CREATED,
        "title": "Introdução",
        "chunker": PARAMS,
        "files": tuple(
            files if files is not None else [entry("a.md", 100, 200), entry("b/c.png", 7)]
        ),
        "dictionaries": ((cid("dict"), 1000),),
    }
    fields.update(changes)
    return Manifest(**fields)


def signed(**changes: Any) -> dict[str, Any]:
    doc = manifest().to_signed()
    doc.update(changes)
    return doc


def reparse(doc: dict[str, Any]) -> Manifest:
    return Manifest.from_signed(
        canonical.decode(canonical.encode(doc), what="m", max_bytes=1 << 24)
    )


# -- round trips ---------------------------------------------------------------------------
def test_signed_form_matches_the_documented_shape() -> None:
    doc = manifest().to_signed()
    assert doc["_type"] == "manifest" and doc["format"] == 1
    assert doc["created"] == "2026-11-23T10:00:00Z"
    assert doc["chunker"] == PARAMS.to_json()
    assert doc["dictionaries"] == [[cid("dict"), 1000]]
    assert doc["files"][0] == {
        "path": "a.md",
        "size": 300,
        "mode": 0o644,
        "media_type": "text/plain",
        "chunks": [[cid("a.md:0"), 100], [cid("a.md:1"), 200]],
    }


component = st.text(alphabet="abcxyz019-_.é", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
# A chunk id always comes with the same length (the parser refuses anything else).
chunk_refs = st.lists(
    st.integers(0, 30).map(lambda n: (cid(n), 1 + (n * 977) % PARAMS.max_size)), max_size=4
)


@st.composite
def file_lists(draw: st.DrawFn) -> list[FileEntry]:
    paths = draw(st.lists(st.lists(component, min_size=1, max_size=3).map("/".join), max_size=8))
    chosen: list[str] = []
    for p in sorted(set(paths)):
        key = p.casefold()
        if any(
            key == q.casefold()
            or key.startswith(q.casefold() + "/")
            or q.casefold().startswith(key + "/")
            for q in chosen
        ):
            continue
        chosen.append(p)
    files = []
    for p in chosen:
        refs = draw(chunk_refs)
        files.append(
            FileEntry(
                path=p,
                size=sum(n for _, n in refs),
                mode=draw(st.sampled_from([0o644, 0o755])),
                media_type=draw(
                    st.sampled_from(["text/html", "image/png", "application/octet-stream"])
                ),
                chunks=tuple(refs),
            )
        )
    return files


@given(
    files=file_lists(),
    version=st.integers(1, 10**6),
    title=st.text(max_size=40),
    dicts=st.lists(
        st.tuples(st.integers(100, 200).map(cid), st.integers(1, MAX_DICTIONARY)),
        max_size=MAX_DICTIONARIES,
        unique_by=lambda d: d[0],  # one id, one entry (a repeated dictionary is refused)
    ),
    seconds=st.integers(0, 2**31),
)
def test_to_signed_from_signed_round_trip(
    files: list[FileEntry], version: int, title: str, dicts: list[tuple[str, int]], seconds: int
) -> None:
    original = Manifest(
        bundle="b",
        locale="en",
        version=version,
        parent_version=version - 1 if version > 1 else None,
        created=datetime.fromtimestamp(seconds, UTC),
        title=title,
        chunker=PARAMS,
        files=tuple(files),
        dictionaries=tuple(dicts),
    )
    again = reparse(original.to_signed())
    assert again == original
    assert again.to_signed() == original.to_signed()
    assert again.size == sum(f.size for f in files)


def test_signed_envelope_round_trip_and_id() -> None:
    key = SigningKey.generate()
    m = manifest()
    data = key.sign(m.to_signed())
    env, parsed = parse_manifest(data)
    assert parsed == m
    assert env.doc_id == hashlib.sha256(data).hexdigest()


def test_unknown_top_level_fields_are_kept_for_newer_writers() -> None:
    doc = signed(license="CC-BY-4.0", extra_meta={"x": 1})
    parsed = reparse(doc)
    assert parsed.extra == {"license": "CC-BY-4.0", "extra_meta": {"x": 1}}
    assert parsed.to_signed() == doc


def test_draft_round_trip() -> None:
    draft = ManifestDraft(title="T", chunker=PARAMS, files=(entry("a", 5), entry("b", 1, 2)))
    assert (
        ManifestDraft.from_json(
            canonical.decode(canonical.encode(draft.to_json()), what="d", max_bytes=1 << 20)
        )
        == draft
    )


# -- hostile manifests ---------------------------------------------------------------------
def file_doc(**changes: Any) -> dict[str, Any]:
    doc = entry("x.txt", 10, 20).to_json()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "changes",
    [
        {"_type": "index"},
        {"_type": None},
        {"format": 2},
        {"format": "1"},
        {"version": 0},
        {"version": "3"},
        {"version": True},
        {"parent_version": 3},
        {"parent_version": 0},
        {"parent_version": "2"},
        {"bundle": "Intro Stats"},
        {"bundle": "../x"},
        {"bundle": 5},
        {"locale": "english"},
        {"created": "2026-11-23 10:00:00"},
        {"created": "2026-11-23T10:00:00+01:00"},
        {"created": 1700000000},
        {"created": "2026-1-23T10:00:00Z"},  # another spelling of a valid time
        {"created": "2026-11-23T10:00:00.5Z"},
        {"created": " 2026-11-23T10:00:00Z"},
        {"title": "t" * 501},
        {"title": None},
        {"chunker": {**PARAMS.to_json(), "avg": 1000}},
        {"chunker": None},
        {"files": {"a": 1}},
        {"files": [file_doc(path="b"), file_doc(path="a")]},  # not sorted
        {"files": [file_doc(size=31)]},  # chunk lengths add up to 30
        {"files": [file_doc(size=-1)]},
        {"files": [file_doc(mode=0o120777)]},  # symlink
        {"files": [file_doc(mode=0o40755)]},  # directory
        {"files": [file_doc(mode=0o100644)]},  # st_mode with type bits
        {"files": [file_doc(mode=0o777)]},
        {"files": [file_doc(mode=0o4755)]},  # setuid
        {"files": [file_doc(mode="0644")]},
        {"files": [file_doc(media_type="Text/HTML")]},
        {"files": [file_doc(media_type="text")]},
        {"files": [file_doc(media_type=None)]},
        {"files": [file_doc(chunks=[[cid(1).upper(), 30]], size=30)]},
        {"files": [file_doc(chunks=[[cid(1)[:63], 30]], size=30)]},
        {"files": [file_doc(chunks=[["z" * 64, 30]], size=30)]},
        {"files": [file_doc(chunks=[[cid(1), 0]], size=0)]},
        {"files": [file_doc(chunks=[[cid(1), PARAMS.max_size + 1]], size=PARAMS.max_size + 1)]},
        {"files": [file_doc(chunks=[[cid(1), 30, 0]], size=30)]},
        {"files": [file_doc(chunks=[{"id": cid(1), "length": 30}], size=30)]},
        {"files": [file_doc(chunks=None)]},
        {"files": [file_doc(path=None)]},
        {"files": ["x.txt"]},
        {  # one chunk id, two lengths: a client could not size the object it receives
            "files": [
                file_doc(path="a", chunks=[[cid(1), 30]], size=30),
                file_doc(path="b", chunks=[[cid(1), 31]], size=31),
            ]
        },
        {"dictionaries": [[cid(n), 10] for n in range(MAX_DICTIONARIES + 1)]},
        {"dictionaries": [[cid(1), MAX_DICTIONARY + 1]]},
        {"dictionaries": [[cid(1), 0]]},
        {"dictionaries": [["ab" * 31, 10]]},
        {"dictionaries": None},
    ],
)
def test_malformed_manifests_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        reparse(signed(**changes))


@pytest.mark.parametrize(
    "paths",
    [
        ["../escape"],
        ["/etc/passwd"],
        ["a\\b"],
        ["a/./b"],
        ["ok", "ok"],
        ["Readme.md", "README.md"],
        ["a", "a/b"],
        ["cafe\u0301"],
        ["a\x00b"],
    ],
)
def test_unsafe_file_lists_are_refused(paths: list[str]) -> None:
    files = [file_doc(path=p) for p in sorted(paths)]
    with pytest.raises(UnsafePathError):
        reparse(signed(files=files))


def test_missing_fields_are_refused() -> None:
    for key in (
        "bundle",
        "locale",
        "version",
        "created",
        "title",
        "chunker",
        "files",
        "dictionaries",
    ):
        doc = signed()
        del doc[key]
        with pytest.raises(FormatError):
            reparse(doc)


@pytest.mark.parametrize("value", [None, 5, "", "A" * 64, "g" * 64, "a" * 65, " " + "a" * 63])
def test_check_chunk_id(value: object) -> None:
    with pytest.raises(FormatError):
        check_chunk_id(value)
    assert check_chunk_id("a" * 64) == "a" * 64


# -- chunk order ---------------------------------------------------------------------------
def test_distinct_chunks_lists_dictionaries_first_then_first_appearance() -> None:
    a = FileEntry("a", 30, 0o644, "text/plain", ((cid(1), 10), (cid(2), 10), (cid(1), 10)))
    b = FileEntry("b", 20, 0o644, "text/plain", ((cid(3), 10), (cid(2), 10)))
    m = manifest([a, b], dictionaries=((cid("d"), 5), (cid(3), 10)))
    assert m.distinct_chunks() == [(cid("d"), 5), (cid(3), 10), (cid(1), 10), (cid(2), 10)]
    assert distinct_chunks((a, b)) == [(cid(1), 10), (cid(2), 10), (cid(3), 10)]
    assert [(e.path, off, c) for e, off, c, _ in iter_chunk_refs((a, b))] == [
        ("a", 0, cid(1)),
        ("a", 10, cid(2)),
        ("a", 20, cid(1)),
        ("b", 0, cid(3)),
        ("b", 10, cid(2)),
    ]


def test_file_lookup() -> None:
    m = manifest()
    assert m.file("b/c.png").size == 7
    with pytest.raises(KeyError):
        m.file("nope")


def test_an_id_listed_as_dictionary_and_chunk_with_other_lengths_is_refused() -> None:
    from satchel.content.manifest import _check_lengths

    entry = FileEntry(
        path="a", size=3, mode=0o644, media_type="text/plain", chunks=(("a" * 64, 3),)
    )
    with pytest.raises(FormatError, match="two different lengths"):
        _check_lengths((("a" * 64, 4),), (entry,))
    with pytest.raises(FormatError, match="listed twice"):
        _check_lengths((("b" * 64, 4), ("b" * 64, 4)), (entry,))
    assert _check_lengths((("b" * 64, 4),), (entry,)) == (("b" * 64, 4),)
