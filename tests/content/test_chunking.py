"""FastCDC 2020 chunking: golden vectors, pinned parameters, and content-defined cut points."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from satchel.content.chunking import DEFAULT_PARAMS, Chunker, ChunkerParams, Cut, chunk_id
from satchel.content.errors import FormatError

from harness.paths import FASTCDC_DIR

ABSENT = "../shared/testdata/fastcdc not present (it ships beside the repo in CI)"


def _vector_sets() -> list[Any]:
    path = FASTCDC_DIR / "vectors.json"
    if not path.is_file():
        return [pytest.param(None, id="absent")]
    doc = json.loads(path.read_text("utf-8"))
    return [
        pytest.param(vset, id=vset["id"])
        for vset in doc["vector_sets"]
        if vset["variant"] == "fastcdc2020"
    ]


@pytest.fixture(scope="module")
def image() -> bytes:
    path = FASTCDC_DIR / "SekienAkashita.jpg"
    if not path.is_file():
        pytest.skip(ABSENT)
    data = path.read_bytes()
    meta = json.loads((FASTCDC_DIR / "vectors.json").read_text("utf-8"))["image"]
    assert len(data) == meta["size"]
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    return data


def test_vectors_include_fastcdc2020_sets() -> None:
    sets = _vector_sets()
    if sets[0].values[0] is None:
        pytest.skip(ABSENT)
    assert len(sets) >= 5


@pytest.mark.parametrize("vset", _vector_sets())
def test_golden_vectors(vset: dict[str, Any] | None, image: bytes, tmp_path: Path) -> None:
    if vset is None:
        pytest.skip(ABSENT)
    params = ChunkerParams(
        min_size=vset["min"],
        avg_size=vset["avg"],
        max_size=vset["max"],
        normalization=vset["normalization"],
        seed=vset["seed"],
    )
    chunker = Chunker(params)
    expected = [(c["offset"], c["length"], c["sha256"]) for c in vset["chunks"]]
    got = [(c.offset, c.length, c.chunk_id) for c in chunker.cut_bytes(image)]
    assert got == expected
    # The file path (memory-mapped) must cut exactly like the buffer path.
    copy = tmp_path / "image.jpg"
    copy.write_bytes(image)
    assert [(c.offset, c.length, c.chunk_id) for c in chunker.cut_file(copy)] == expected


def test_chunk_id_is_lowercase_hex_sha256() -> None:
    assert chunk_id(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert chunk_id(memoryview(b"abc")) == chunk_id(bytearray(b"abc"))


def test_empty_input_has_no_chunks(tmp_path: Path) -> None:
    assert Chunker().cut_bytes(b"") == []
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert list(Chunker().cut_file(empty)) == []


def test_short_input_is_one_chunk() -> None:
    assert Chunker().cut_bytes(b"hello") == [Cut(0, 5, chunk_id(b"hello"))]


# -- parameters ----------------------------------------------------------------------------
def test_defaults_are_pinned() -> None:
    assert DEFAULT_PARAMS.to_json() == {
        "algorithm": "fastcdc2020",
        "min": 8192,
        "avg": 32768,
        "max": 131072,
        "normalization": 1,
        "seed": 0,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"avg_size": 3000},  # not a power of two
        {"avg_size": 128, "min_size": 64, "max_size": 1024},  # below 256
        {"avg_size": 8 * 1024 * 1024, "max_size": 16 * 1024 * 1024},  # above 4 MiB
        {"min_size": 40 * 1024},  # min > avg
        {"max_size": 16 * 1024},  # max < avg
        {"min_size": 32, "avg_size": 256, "max_size": 1024},  # min < 64
        {"min_size": 64, "avg_size": 256, "max_size": 512},  # max < 1024
        {"max_size": 32 * 1024 * 1024},  # max > 16 MiB
        {"normalization": 4},
        {"normalization": -1},
        {"seed": -1},
        {"seed": 2**64},
        {"algorithm": "fastcdc2016"},
    ],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        ChunkerParams(**kwargs)


# Found by this suite as a bug (seeds >= 2**63 passed validation, then pyfastcdc raised
# OverflowError); fixed since by refusing them up front.
@pytest.mark.parametrize("seed", [2**63, 2**64 - 1])
def test_every_accepted_seed_can_chunk(seed: int) -> None:
    try:
        params = ChunkerParams(min_size=256, avg_size=1024, max_size=4096, seed=seed)
    except FormatError:
        return  # refusing the seed up front would be fine too
    cuts = Chunker(params).cut_bytes(bytes(5000))
    assert sum(c.length for c in cuts) == 5000


def test_params_json_round_trip() -> None:
    params = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384, normalization=3, seed=7)
    assert ChunkerParams.from_json(params.to_json()) == params


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"algorithm": "fastcdc2020", "min": 1, "avg": 2, "max": 3, "normalization": 1},
        {**DEFAULT_PARAMS.to_json(), "avg": "32768"},
        {**DEFAULT_PARAMS.to_json(), "seed": True},
        {**DEFAULT_PARAMS.to_json(), "algorithm": 1},
        {**DEFAULT_PARAMS.to_json(), "algorithm": "rabin"},
        {**DEFAULT_PARAMS.to_json(), "avg": 30000},
    ],
)
def test_params_from_bad_json_are_refused(raw: object) -> None:
    with pytest.raises(FormatError):
        ChunkerParams.from_json(raw)


# -- properties ----------------------------------------------------------------------------
SMALL = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)


@settings(max_examples=60)
@given(st.binary(max_size=40_000), st.sampled_from([0, 1, 2, 3]), st.integers(0, 2**63 - 1))
def test_chunks_tile_the_input(data: bytes, nc: int, seed: int) -> None:
    params = ChunkerParams(min_size=256, avg_size=1024, max_size=4096, normalization=nc, seed=seed)  # type: ignore[arg-type]
    cuts = Chunker(params).cut_bytes(data)
    assert b"".join(data[c.offset : c.offset + c.length] for c in cuts) == data
    offset = 0
    for i, c in enumerate(cuts):
        assert c.offset == offset
        assert c.chunk_id == hashlib.sha256(data[c.offset : c.offset + c.length]).hexdigest()
        assert c.length <= params.max_size
        if i < len(cuts) - 1:
            assert c.length >= params.min_size
        offset += c.length
    assert offset == len(data)


def test_cut_file_matches_cut_bytes(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(300_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    chunker = Chunker(SMALL)
    assert list(chunker.cut_file(path)) == chunker.cut_bytes(data)


EDIT_PARAMS = ChunkerParams(min_size=2048, avg_size=8192, max_size=32768)
EDIT_CHUNKER = Chunker(EDIT_PARAMS)
BASE = random.Random(1234).randbytes(1 << 20)
BASE_CUTS = EDIT_CHUNKER.cut_bytes(BASE)


@settings(max_examples=40)
@given(
    position=st.integers(0, len(BASE)),
    kind=st.sampled_from(["replace", "insert", "delete"]),
    patch=st.binary(min_size=1, max_size=16),
)
@example(position=len(BASE), kind="insert", patch=b"x")  # after the last, EOF-cut chunk
@example(position=0, kind="delete", patch=b"x")
def test_local_edit_changes_only_nearby_chunks(position: int, kind: str, patch: bytes) -> None:
    if kind == "replace":
        edited = BASE[:position] + patch + BASE[position + len(patch) :]
        old_end = min(position + len(patch), len(BASE))
    elif kind == "insert":
        edited = BASE[:position] + patch + BASE[position:]
        old_end = position
    else:
        edited = BASE[:position] + BASE[position + len(patch) :]
        old_end = min(position + len(patch), len(BASE))
    delta = len(edited) - len(BASE)
    cuts = EDIT_CHUNKER.cut_bytes(edited)

    # 1. Every chunk that ends before the edit is untouched (same offset, length and id),
    #    except the last one, which ended only because the input did.
    before = [c for c in BASE_CUTS[:-1] if c.offset + c.length <= position]
    assert cuts[: len(before)] == before

    # 2. After the edit the cut points resynchronise: from some cut on, every chunk is an
    #    original chunk shifted by the size change. It happens within a few max-size chunks.
    shifted = {
        Cut(c.offset + delta, c.length, c.chunk_id) for c in BASE_CUTS if c.offset >= old_end
    }
    tail = cuts[len(before) :]
    first_same = next((i for i, c in enumerate(tail) if c in shifted), len(tail))
    assert all(c in shifted for c in tail[first_same:])
    resync_at = tail[first_same].offset if first_same < len(tail) else len(edited)
    assert resync_at - position <= 4 * EDIT_PARAMS.max_size or resync_at == len(edited)

    # 3. So only a handful of chunk ids are new.
    old_ids = {c.chunk_id for c in BASE_CUTS}
    assert sum(c.chunk_id not in old_ids for c in cuts) <= 8
