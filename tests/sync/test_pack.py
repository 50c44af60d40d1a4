"""Pack streams: exact format, incremental parsing, and refusal of broken streams."""

from __future__ import annotations

import hashlib
import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.content.chunking import chunk_id
from satchel.content.errors import FormatError, IntegrityError, TransportError, TruncatedError
from satchel.content.objects import encode_object
from satchel.sync.pack import (
    END_ID,
    HEAD_SIZE,
    MAGIC,
    MAX_FRAME,
    FrameHead,
    PackFrame,
    PackReader,
    frame,
    pack_bytes,
    read_pack,
    trailer,
    write_pack,
)
from satchel.sync.receive import receive_frames
from satchel.sync.store import MemoryChunkStore


def cid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


ITEMS = [(cid(1), b"\x00first"), (cid(2), b""), (cid(3), b"\x01" + bytes(300))]
PACK = pack_bytes(ITEMS)


def read_all(pieces: list[bytes]) -> list[tuple[str, bytes]]:
    reader = PackReader()
    out: list[PackFrame] = []
    for piece in pieces:
        out += reader.feed(piece)
    reader.close()
    return [(f.chunk_id, f.obj) for f in out]


def test_byte_format_is_exact() -> None:
    assert MAGIC == b"SATPACK\x01" and HEAD_SIZE == 36
    assert frame(cid(1), b"abc") == bytes.fromhex(cid(1)) + b"\x00\x00\x00\x03abc"
    assert trailer(2) == bytes(32) + b"\x00\x00\x00\x02"
    assert pack_bytes([]) == MAGIC + bytes(32) + bytes(4)
    assert MAGIC + b"".join(frame(c, o) for c, o in ITEMS) + trailer(3) == PACK
    assert b"".join(write_pack(ITEMS)) == PACK


def test_round_trip_in_one_piece_and_byte_by_byte() -> None:
    assert read_all([PACK]) == ITEMS
    assert read_all([PACK[i : i + 1] for i in range(len(PACK))]) == ITEMS
    assert [(f.chunk_id, f.obj) for f in read_pack([PACK])] == ITEMS


objects = st.lists(st.tuples(st.integers(0, 10**6).map(cid), st.binary(max_size=600)), max_size=8)


@settings(max_examples=80)
@given(objects, st.lists(st.integers(0, 5000), max_size=20))
def test_round_trip_under_any_split(items: list[tuple[str, bytes]], cuts: list[int]) -> None:
    data = pack_bytes(items)
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    reader = PackReader()
    got: list[PackFrame] = []
    for piece in pieces:
        got += reader.feed(piece)
    reader.close()
    assert reader.done and reader.frames == len(items)
    assert reader.bytes_read == len(data)
    assert [(f.chunk_id, f.obj) for f in got] == items


def test_truncation_is_a_resumable_transport_error() -> None:
    # A cut link, not bad content: the caller may retry, and keeps the complete frames.
    assert issubclass(TruncatedError, TransportError)
    assert not issubclass(TruncatedError, FormatError)
    with pytest.raises(TruncatedError):
        list(read_pack([PACK[:-1]]))


def test_truncated_at_every_offset_is_detected() -> None:
    for cut in range(len(PACK)):
        reader = PackReader()
        got = reader.feed(PACK[:cut])
        # What arrived before the cut is a prefix of the real frames, never a wrong one.
        assert [(f.chunk_id, f.obj) for f in got] == ITEMS[: len(got)]
        assert not reader.done
        with pytest.raises(TruncatedError, match="cut short"):
            reader.close()
    reader = PackReader()
    reader.feed(PACK)
    reader.close()


@pytest.mark.parametrize(
    "data",
    [b"SATPACK\x02", b"PK\x03\x04", b"HTTP/1.1 500", b"\x00" * 8, b"satpack\x01", b"X"],
)
def test_bad_magic_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError, match="magic"):
        PackReader().feed(data + PACK[8:])


def test_bad_magic_is_refused_as_soon_as_it_shows() -> None:
    reader = PackReader()
    assert reader.feed(b"SAT") == []
    with pytest.raises(FormatError, match="magic"):
        reader.feed(b"X")


@pytest.mark.parametrize("count", [0, 2, 4, 2**32 - 1])
def test_trailer_count_mismatch_is_refused(count: int) -> None:
    data = MAGIC + b"".join(frame(c, o) for c, o in ITEMS) + trailer(count)
    with pytest.raises(FormatError, match="trailer"):
        read_all([data])


@pytest.mark.parametrize("extra", [b"\x00", b"more", trailer(3), frame(cid(9), b"x")])
def test_data_after_trailer_is_refused(extra: bytes) -> None:
    with pytest.raises(FormatError, match="after its trailer"):
        read_all([PACK + extra])
    reader = PackReader()
    reader.feed(PACK)
    with pytest.raises(FormatError, match="after its trailer"):
        reader.feed(extra)


def test_empty_feed_after_trailer_is_fine() -> None:
    reader = PackReader()
    reader.feed(PACK)
    assert reader.feed(b"") == []
    reader.close()


def test_oversized_frame_is_refused_from_its_header_alone() -> None:
    header = MAGIC + struct.pack(">32sI", bytes.fromhex(cid(1)), MAX_FRAME + 1)
    reader = PackReader()
    with pytest.raises(FormatError, match="exceeds"):
        reader.feed(header)  # no body bytes needed to refuse it
    small = PackReader(max_frame=100)
    with pytest.raises(FormatError, match="exceeds"):
        small.feed(MAGIC + struct.pack(">32sI", bytes.fromhex(cid(1)), 101) + b"x" * 10)
    ok = PackReader(max_frame=100)
    ok.feed(MAGIC + frame(cid(1), b"y" * 100) + trailer(1))
    ok.close()


def test_huge_length_never_buffers_the_body() -> None:
    reader = PackReader()
    reader.feed(MAGIC + bytes.fromhex(cid(1))[:10])
    with pytest.raises(FormatError):
        reader.feed(bytes.fromhex(cid(1))[10:] + b"\xff\xff\xff\xff" + b"z" * 1000)


def test_end_id_is_reserved_for_the_trailer() -> None:
    assert bytes(32) == END_ID
    data = MAGIC + frame(cid(1), b"a") + END_ID + struct.pack(">I", 5) + b"x" * 5 + trailer(2)
    with pytest.raises(FormatError):
        read_all([data])


# -- receiving -----------------------------------------------------------------------------
def frames_of(items: list[tuple[str, bytes]]) -> list[PackFrame]:
    return [PackFrame(c, o) for c, o in items]


DATA = [b"alpha " * 50, b"beta " * 70, bytes(range(256))]
GOOD = [(chunk_id(d), encode_object(d, level=3)) for d in DATA]
EXPECTED = {chunk_id(d): len(d) for d in DATA}


def test_receive_verifies_and_stores_each_frame() -> None:
    store = MemoryChunkStore()
    seen: list[tuple[int, int]] = []
    n = receive_frames(frames_of(GOOD), EXPECTED, store, progress=lambda a, b: seen.append((a, b)))
    assert n == 3 and set(store) == set(EXPECTED)
    assert seen[-1] == (3, sum(len(o) for _, o in GOOD))


def test_receive_refuses_unrequested_chunks_and_keeps_earlier_ones() -> None:
    store = MemoryChunkStore()
    stray = (chunk_id(b"stray"), encode_object(b"stray"))
    with pytest.raises(IntegrityError, match="not asked"):
        receive_frames(frames_of([GOOD[0], stray, GOOD[1]]), EXPECTED, store)
    assert set(store) == {GOOD[0][0]}


def test_receive_refuses_a_frame_under_the_wrong_id() -> None:
    store = MemoryChunkStore()
    swapped = [(GOOD[0][0], GOOD[1][1])]
    with pytest.raises((IntegrityError, FormatError)):
        receive_frames(frames_of(swapped), EXPECTED, store)
    assert list(store) == []


def test_receive_refuses_a_dictionary_object_before_its_dictionary() -> None:
    dict_id = chunk_id(b"dict")
    obj = bytes([2]) + bytes.fromhex(dict_id) + b"\x28\xb5\x2f\xfd"
    store = MemoryChunkStore()
    with pytest.raises(FormatError, match="before its dictionary"):
        receive_frames(frames_of([(GOOD[0][0], obj)]), EXPECTED, store, dictionaries={dict_id: 10})
    assert list(store) == []


def test_receive_refuses_a_dictionary_the_manifest_does_not_list() -> None:
    dict_id = chunk_id(b"dict")
    store = MemoryChunkStore()
    store.put(dict_id, b"\x00dict")
    frame_ = zstandard.ZstdCompressor(write_content_size=True).compress(DATA[0])
    obj = bytes([2]) + bytes.fromhex(dict_id) + frame_
    with pytest.raises(FormatError, match="manifest lacks"):
        receive_frames(frames_of([(GOOD[0][0], obj)]), EXPECTED, store, dictionaries={})
    assert not store.has(GOOD[0][0])


# -- heads only: a reader that seeks past the objects (USB pack files) -----------------------
def heads_of(pieces: list[bytes], *, seek: bool) -> list[FrameHead]:
    """Feed ``pieces``; with ``seek`` the reader is told of skipped bytes instead of fed them."""
    reader = PackReader()
    data = b"".join(pieces)
    pos, out = 0, []
    cuts = [len(p) for p in pieces]
    while pos < len(data):
        if seek and reader.to_skip:
            step = reader.to_skip
            reader.skip(step)
            pos += step
            continue
        n = cuts.pop(0) if cuts else len(data) - pos
        out += reader.feed_heads(data[pos : pos + n])
        pos += n
    reader.close()
    return out


@given(objects, st.lists(st.integers(1, 700), max_size=20), st.booleans())
def test_heads_give_each_objects_place_under_any_split(
    items: list[tuple[str, bytes]], cuts: list[int], seek: bool
) -> None:
    data = pack_bytes(items)
    pieces, at = [], 0
    for c in cuts:
        pieces.append(data[at : at + c])
        at += c
    pieces.append(data[at:])
    heads = heads_of([p for p in pieces if p], seek=seek)
    assert [(h.chunk_id, data[h.offset : h.offset + h.length]) for h in heads] == items


def test_heads_truncated_at_every_offset_are_detected() -> None:
    for cut in range(len(PACK)):
        reader = PackReader()
        reader.feed_heads(PACK[:cut])
        assert not reader.done
        with pytest.raises(TruncatedError, match="cut short"):
            reader.close()


def test_heads_refuse_what_frames_refuse() -> None:
    with pytest.raises(FormatError, match="exceeds"):
        PackReader().feed_heads(MAGIC + struct.pack(">32sI", bytes.fromhex(cid(1)), MAX_FRAME + 1))
    with pytest.raises(FormatError, match="trailer counts"):
        PackReader().feed_heads(MAGIC + frame(cid(1), b"x") + trailer(2))
    with pytest.raises(FormatError, match="after its trailer"):
        PackReader().feed_heads(PACK + b"x")
    with pytest.raises(FormatError, match="magic"):
        PackReader().feed_heads(b"PK\x03\x04")
    reader = PackReader()
    reader.feed_heads(MAGIC + frame(cid(1), b"\x00" * 100)[:HEAD_SIZE])
    assert reader.to_skip == 100
    with pytest.raises(ValueError):
        reader.skip(101)
