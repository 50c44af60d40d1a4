"""Planning: what a store lacks, and the want bitmap that names it."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import FormatError
from satchel.sync.plan import decode_want, encode_want, missing
from satchel.sync.store import MemoryChunkStore


def cid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def distinct(n: int) -> list[tuple[str, int]]:
    return [(cid(i), i + 1) for i in range(n)]


def test_bits_are_msb_first() -> None:
    d = distinct(10)
    assert encode_want(d, {cid(0)}) == b"\x80\x00"
    assert encode_want(d, {cid(7), cid(8)}) == b"\x01\x80"
    assert encode_want(d, {cid(9)}) == b"\x00\x40"
    assert encode_want(d, set()) == b"\x00\x00"
    assert encode_want([], set()) == b""
    assert decode_want(d, b"\x01\x80") == [(cid(7), 8), (cid(8), 9)]


def test_unknown_ids_are_ignored_when_encoding() -> None:
    assert encode_want(distinct(3), {cid(99)}) == b"\x00"


@given(
    st.integers(0, 200).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, max(n - 1, 0))))
    )
)
def test_round_trip(case: tuple[int, set[int]]) -> None:
    n, picks = case
    d = distinct(n)
    wanted = {cid(i) for i in picks if i < n}
    bitmap = encode_want(d, wanted)
    assert len(bitmap) == (n + 7) // 8
    assert decode_want(d, bitmap) == [item for item in d if item[0] in wanted]


@pytest.mark.parametrize("bitmap", [b"", b"\x00\x00\x00", b"\x00"])
def test_wrong_size_is_refused(bitmap: bytes) -> None:
    with pytest.raises(FormatError, match="bytes"):
        decode_want(distinct(10), bitmap)


@pytest.mark.parametrize("last", [0x20, 0x01, 0x3F])
def test_stray_bits_past_the_end_are_refused(last: int) -> None:
    with pytest.raises(FormatError, match="past the last"):
        decode_want(distinct(10), bytes([0xFF, 0xC0 | last]))
    decode_want(distinct(10), b"\xff\xc0")
    decode_want(distinct(16), b"\xff\xff")


def test_missing_keeps_manifest_order() -> None:
    store = MemoryChunkStore()
    d = distinct(6)
    for i in (0, 2, 3):
        store.put(cid(i), b"\x00")
    assert missing(d, store) == [d[1], d[4], d[5]]
    assert missing([], store) == []
