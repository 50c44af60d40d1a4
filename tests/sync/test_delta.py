"""Delta encodings (content.delta) and deltas against a held version (sync.delta, receive).

Round trips of DELTA_RANGE (0x03) and DELTA_OF (0x04), refusal of hostile deltas before
anything large is allocated, where references are taken from, how they are read back out of
a chunk store, and what a pack of deltas looks like on both sides.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st
from satchel.content.chunking import Chunker, chunk_id
from satchel.content.delta import (
    DELTA_OF,
    DELTA_RANGE,
    LONG_WINDOW,
    MAX_REFERENCE,
    RangeRef,
    decode_delta,
    encode_manifest_delta,
    encode_object_delta,
    encode_range_delta,
    object_ref,
    range_ref,
)
from satchel.content.errors import FormatError, IntegrityError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import (
    MAX_OBJECT_LENGTH,
    MAX_WINDOW,
    RAW,
    ZSTD,
    ZSTD_DICT,
    DictLookup,
    encode_object,
    train_dictionary,
    verify_object,
)
from satchel.sync.delta import (
    FileReader,
    choose_reference,
    delta_objects,
    path_index,
    static_pack,
    undo_range_delta,
)
from satchel.sync.pack import PackFrame
from satchel.sync.receive import receive_frames
from satchel.sync.store import MemoryChunkStore, store_lookup

from harness.repo import FAST_LEVEL, SMALL_CHUNKER, split_pack, text_bytes
from harness.zstd_forge import ZSTD_MAGIC, forge_content_size

RANGE_HEADER = 1 + 4 + 8 + 4  # format byte, file:u32, offset:u64, length:u32
OF_HEADER = 1 + 32  # format byte, ref:32
MIB = 1024 * 1024

RNG = random.Random(20240508)
OLD_TEXT = text_bytes(RNG, 60_000)
NOISE = RNG.randbytes(30_000)


def edited(data: bytes, at: int, remove: int, insert: bytes) -> bytes:
    at = min(at, len(data))
    return data[:at] + insert + data[at + remove :]


# One small edit in the middle of the text: the new version of OLD_TEXT.
NEW_TEXT = edited(OLD_TEXT, 31_000, 5, b"errata")
REF_ID = chunk_id(OLD_TEXT)


Make = Callable[..., bytes]


def range_delta_of(new: bytes = NEW_TEXT, old: bytes = OLD_TEXT, level: int = 3) -> bytes:
    return encode_range_delta(new, RangeRef(0, 0, len(old)), old, level)


def object_delta_of(new: bytes = NEW_TEXT, old: bytes = OLD_TEXT, level: int = 3) -> bytes:
    return encode_object_delta(new, chunk_id(old), old, level)


def header_size(obj: bytes) -> int:
    return RANGE_HEADER if obj[0] == DELTA_RANGE else OF_HEADER


def forbid_decompression(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to decompress fail the test: the checks must come first."""

    class NoDecompressor:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("decompression was attempted")

    monkeypatch.setattr(zstandard, "ZstdDecompressor", NoDecompressor)


def with_frame(obj: bytes, frame: bytes) -> bytes:
    return obj[: header_size(obj)] + frame


# -- manifests and stores built from generated files ---------------------------------------
def build(
    files: dict[str, bytes],
    store: MemoryChunkStore,
    *,
    dictionary: tuple[str, bytes] | None = None,
    chunker: Chunker = SMALL_CHUNKER,
    version: int = 1,
) -> Manifest:
    """A manifest of ``files`` whose objects (and dictionary) are put in ``store``."""
    entries = []
    for path, data in sorted(files.items()):
        cuts = chunker.cut_bytes(data)
        for c in cuts:
            piece = data[c.offset : c.offset + c.length]
            store.put(c.chunk_id, encode_object(piece, level=FAST_LEVEL, dictionary=dictionary))
        entries.append(
            FileEntry(
                path=path,
                size=len(data),
                mode=0o644,
                media_type="application/octet-stream",
                chunks=tuple((c.chunk_id, c.length) for c in cuts),
            )
        )
    dictionaries: tuple[tuple[str, int], ...] = ()
    if dictionary is not None:
        store.put(dictionary[0], encode_object(dictionary[1], level=FAST_LEVEL))
        dictionaries = ((dictionary[0], len(dictionary[1])),)
    return Manifest(
        bundle="course",
        locale="en",
        version=version,
        parent_version=None if version == 1 else version - 1,
        created=datetime(2024, 5, 8, tzinfo=UTC),
        title="Course",
        chunker=chunker.params,
        files=tuple(entries),
        dictionaries=dictionaries,
    )


def lookup_for(store: MemoryChunkStore, *manifests: Manifest) -> DictLookup:
    listed: dict[str, int] = {}
    for m in manifests:
        listed.update(m.dictionaries)
    return store_lookup(store, listed)


def reader_for(manifest: Manifest, store: MemoryChunkStore) -> FileReader:
    return FileReader(manifest, store, lookup_for(store, manifest))


def sized_manifest(sizes: dict[str, int]) -> Manifest:
    """A manifest whose files only have sizes (enough for choose_reference)."""
    entries = tuple(
        FileEntry(path, size, 0o644, "application/octet-stream", ((chunk_id(path.encode()), size),))
        if size
        else FileEntry(path, 0, 0o644, "application/octet-stream", ())
        for path, size in sizes.items()
    )
    return Manifest(
        bundle="course",
        locale="en",
        version=1,
        parent_version=None,
        created=datetime(2024, 5, 8, tzinfo=UTC),
        title="",
        chunker=SMALL_CHUNKER.params,
        files=entries,
    )


# One vocabulary for the dictionary's training text and the files that use it.
DICT_CORPUS = text_bytes(random.Random(5), 300_000)


@pytest.fixture(scope="module")
def dictionary() -> tuple[str, bytes]:
    samples = [DICT_CORPUS[i : i + 4_000] for i in range(0, 200_000, 4_000)]
    trained = train_dictionary(samples, 8192)
    assert trained is not None
    return chunk_id(trained), trained


# -- round trips ---------------------------------------------------------------------------
edits = st.lists(
    st.tuples(st.integers(0, 5_000), st.integers(0, 40), st.binary(max_size=40)), max_size=5
)
olds = st.one_of(
    st.binary(min_size=1, max_size=4_000),
    st.text("abc de\n<>", min_size=1, max_size=4_000).map(str.encode),
    st.integers(0, 2**32).map(lambda seed: text_bytes(random.Random(seed), 20_000)),
)


def apply_edits(old: bytes, changes: list[tuple[int, int, bytes]]) -> bytes:
    new = old
    for at, remove, insert in changes:
        new = edited(new, at, remove, insert)
    return new


@settings(max_examples=60)
@given(old=olds, changes=edits, file=st.integers(0, 2**32 - 1), cut=st.integers(0, 4_000))
@example(old=b"x", changes=[], file=0, cut=0)
@example(old=b"\x37\xa4\x30\xec" + bytes(300), changes=[(10, 1, b"z")], file=0, cut=0)
def test_range_delta_round_trips(
    old: bytes, changes: list[tuple[int, int, bytes]], file: int, cut: int
) -> None:
    # The reference is a window of the old file, as choose_reference takes for large files.
    offset = min(cut, len(old) - 1)
    reference = old[offset:]
    new = apply_edits(old, changes)
    ref = RangeRef(file, offset, len(reference))
    obj = encode_range_delta(new, ref, reference)
    assert obj[0] == DELTA_RANGE
    assert range_ref(obj) == ref
    assert decode_delta(obj, reference, len(new)) == new


@settings(max_examples=60)
@given(old=olds, changes=edits)
@example(old=b"\x37\xa4\x30\xec" + bytes(300), changes=[(10, 1, b"z")])  # dictionary magic
def test_object_delta_round_trips(old: bytes, changes: list[tuple[int, int, bytes]]) -> None:
    new = apply_edits(old, changes)
    obj = encode_object_delta(new, chunk_id(old), old)
    assert obj[0] == DELTA_OF
    assert object_ref(obj) == chunk_id(old)
    assert decode_delta(obj, old, len(new)) == new


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
def test_small_edit_costs_the_edit_not_the_chunk(make: Make) -> None:
    obj = make(level=19)
    stored = encode_object(NEW_TEXT)
    assert len(obj) < 100 < len(stored) // 50
    assert decode_delta(obj, OLD_TEXT, len(NEW_TEXT)) == NEW_TEXT


def test_matches_reach_far_back_in_a_1_mib_reference() -> None:
    # The frame's window is the chunk's size, but matches may reach anywhere in the reference.
    reference = random.Random(3).randbytes(MAX_REFERENCE)
    new = edited(reference[900_000:1_000_000], 500, 5, b"HELLO")
    obj = encode_range_delta(new, RangeRef(0, 0, MAX_REFERENCE), reference)
    assert len(obj) < 200
    assert decode_delta(obj, reference, len(new)) == new


def test_empty_new_bytes_round_trip() -> None:
    assert decode_delta(range_delta_of(b""), OLD_TEXT, 0) == b""
    assert decode_delta(object_delta_of(b""), OLD_TEXT, 0) == b""


# -- hostile deltas ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
@pytest.mark.parametrize("wrong", [len(NEW_TEXT) - 1, len(NEW_TEXT) + 1, 0])
def test_wrong_expected_length_is_refused_before_decompressing(
    make: Make, wrong: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = make()
    forbid_decompression(monkeypatch)
    with pytest.raises(IntegrityError, match="declares"):
        decode_delta(obj, OLD_TEXT, wrong)


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
@pytest.mark.parametrize("declared", [MAX_OBJECT_LENGTH + 1, 2**40, 2**62])
def test_huge_declared_size_is_refused_before_decompressing(
    make: Make, declared: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = make()
    forged = with_frame(obj, forge_content_size(obj[header_size(obj) :], declared))
    assert zstandard.get_frame_parameters(forged[header_size(obj) :]).content_size == declared
    forbid_decompression(monkeypatch)
    with pytest.raises(IntegrityError, match="declares"):
        decode_delta(forged, OLD_TEXT, len(NEW_TEXT))
    with pytest.raises(FormatError, match="outside"):
        decode_delta(forged, OLD_TEXT, declared)  # even if the manifest were in on it


def test_declared_maximum_size_is_refused_by_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # A single-segment frame's window is its content size: 64 MiB is allowed as a length but
    # not as a window, so a manifest that agrees with the frame still cannot make us allocate.
    obj = object_delta_of()
    forged = with_frame(obj, forge_content_size(obj[OF_HEADER:], MAX_OBJECT_LENGTH))
    forbid_decompression(monkeypatch)
    with pytest.raises(FormatError, match="window"):
        decode_delta(forged, OLD_TEXT, MAX_OBJECT_LENGTH)


@pytest.mark.parametrize("length", [-1, MAX_OBJECT_LENGTH + 1])
def test_expected_length_outside_limits_is_refused(length: int) -> None:
    with pytest.raises(FormatError, match="outside"):
        decode_delta(range_delta_of(), OLD_TEXT, length)


def test_honest_frame_with_window_over_8_mib_is_refused() -> None:
    data = bytes(9 * MIB)
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=24, write_content_size=1)
    zdict = zstandard.ZstdCompressionDict(OLD_TEXT, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(data)
    obj = bytes([DELTA_OF]) + bytes.fromhex(REF_ID) + frame
    assert zstandard.get_frame_parameters(obj[OF_HEADER:]).window_size > MAX_WINDOW
    with pytest.raises(FormatError, match="window"):
        decode_delta(obj, OLD_TEXT, len(data))


def test_a_large_manifest_delta_spans_its_reference_only_for_a_client_that_asked() -> None:
    # 12 MB of "file entries", one changed: over the 8 MiB a plain window reaches.
    rng = random.Random(7)
    entries = [f'{{"p":"p/{i:06d}","id":"{rng.getrandbits(128):032x}"}},' for i in range(150_000)]
    old = "".join(entries).encode()
    entries[90_000] = entries[90_000].replace('"id":"', '"id":"f')
    new = "".join(entries).encode()
    assert len(old) > MAX_WINDOW
    long = encode_manifest_delta(new, REF_ID, old, long=True)
    assert len(long) < 2_000  # the change, not the half of the manifest past the window
    assert decode_delta(long, old, len(new), max_window=LONG_WINDOW) == new
    with pytest.raises(FormatError, match="window"):  # what a client that did not ask does
        decode_delta(long, old, len(new))
    small = encode_manifest_delta(new[:MIB], REF_ID, old[:MIB], long=True)  # fits: level 19
    assert zstandard.get_frame_parameters(small[OF_HEADER:]).window_size <= MAX_WINDOW


def test_a_range_delta_never_gets_the_long_window() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=24, write_content_size=1)
    zdict = zstandard.ZstdCompressionDict(OLD_TEXT, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    data = bytes(9 * MIB)
    frame = zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(data)
    ref = RangeRef(0, 0, len(OLD_TEXT))
    obj = bytes([DELTA_RANGE]) + struct.pack(">IQI", ref.file, ref.offset, ref.length) + frame
    with pytest.raises(FormatError, match="window"):
        decode_delta(obj, OLD_TEXT, len(data), max_window=LONG_WINDOW)


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
def test_forged_window_descriptor_over_8_mib_is_refused(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A streamed frame with a 16 MiB window, its header rewritten to declare the right size.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=24)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    streamed = cobj.compress(NEW_TEXT) + cobj.flush()
    assert streamed[4] == 0x00  # no FCS field, not single segment, window descriptor next
    frame = ZSTD_MAGIC + bytes([0x80, streamed[5]]) + struct.pack("<I", len(NEW_TEXT))
    frame += streamed[6:]
    fp = zstandard.get_frame_parameters(frame)
    assert (fp.content_size, fp.window_size) == (len(NEW_TEXT), 16 * MIB)
    forbid_decompression(monkeypatch)
    with pytest.raises(FormatError, match="window"):
        decode_delta(with_frame(make(), frame), OLD_TEXT, len(NEW_TEXT))


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
def test_corrupt_frames_are_format_errors(make: Make) -> None:
    obj = make()
    start = header_size(obj)
    frame = obj[start:]
    broken = [
        with_frame(obj, b"\x00" + frame[1:]),  # bad magic
        with_frame(obj, frame[:-3]),  # cut short
        with_frame(obj, frame[: len(frame) // 2]),
        with_frame(obj, frame + b"\x00"),  # data after the frame
        with_frame(obj, frame + frame),  # two frames
        with_frame(obj, b""),  # no frame at all
    ]
    for bad in broken:
        with pytest.raises(FormatError):
            decode_delta(bad, OLD_TEXT, len(NEW_TEXT))


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
def test_flipped_bytes_never_pass_for_the_new_bytes(make: Make) -> None:
    # No zstd checksum is written (the chunk id is the checksum): a flipped byte either breaks
    # decoding or gives other bytes, which the receiver's hash check refuses.
    obj = make()
    start = header_size(obj) + 10  # past the frame header
    decoded = 0
    for pos in range(start, len(obj), max(1, (len(obj) - start) // 25)):
        bad = obj[:pos] + bytes([obj[pos] ^ 0x41]) + obj[pos + 1 :]
        try:
            out = decode_delta(bad, OLD_TEXT, len(NEW_TEXT))
        except FormatError:
            continue
        decoded += 1
        assert out != NEW_TEXT
    # Some flips must get through the decoder to be judged by their bytes, or the loop above
    # checked nothing but the framing.
    assert decoded > 0


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
def test_reference_of_the_wrong_bytes(make: Make) -> None:
    obj = make()
    other = bytes(reversed(OLD_TEXT))  # same length, other bytes
    try:
        out = decode_delta(obj, other, len(NEW_TEXT))
    except FormatError:
        pass
    else:
        assert out != NEW_TEXT and chunk_id(out) != chunk_id(NEW_TEXT)
    with pytest.raises(FormatError, match="reference"):
        decode_delta(obj, OLD_TEXT[:1_000], len(NEW_TEXT))  # too short: offsets point before it


@pytest.mark.parametrize("length", [0, MAX_REFERENCE + 1, 2**32 - 1])
def test_reference_length_outside_limits_in_the_header_is_refused(length: int) -> None:
    obj = range_delta_of()
    forged = obj[:13] + struct.pack(">I", length) + obj[RANGE_HEADER:]
    with pytest.raises(FormatError, match="outside"):
        range_ref(forged)
    with pytest.raises(FormatError):
        undo_range_delta(forged, len(NEW_TEXT), reader_for(sized_manifest({}), MemoryChunkStore()))


def test_range_reference_over_the_limit_is_refused_on_both_sides() -> None:
    big = bytes(MAX_REFERENCE + 1)
    with pytest.raises(FormatError):
        encode_range_delta(NEW_TEXT, RangeRef(0, 0, len(big)), big)
    with pytest.raises(FormatError):
        encode_range_delta(NEW_TEXT, RangeRef(0, 0, len(OLD_TEXT) + 1), OLD_TEXT)
    forged = with_frame(range_delta_of(), encode_object_delta(NEW_TEXT, REF_ID, big)[OF_HEADER:])
    with pytest.raises(FormatError, match="too large"):
        decode_delta(forged, big, len(NEW_TEXT))


@pytest.mark.parametrize("make", [range_delta_of, object_delta_of])
def test_truncated_headers_are_refused(make: Make) -> None:
    obj = make()
    parse = range_ref if obj[0] == DELTA_RANGE else object_ref
    for keep in range(header_size(obj) + 1):
        short = obj[:keep]
        with pytest.raises(FormatError):
            decode_delta(short, OLD_TEXT, len(NEW_TEXT))
        if keep < header_size(obj):
            with pytest.raises(FormatError):
                parse(short)
    assert parse(obj[: header_size(obj)]) == parse(obj)  # a whole header names its reference


@pytest.mark.parametrize("fmt", [RAW, ZSTD, ZSTD_DICT, 0x05, 0xFF])
def test_wrong_format_byte_is_refused(fmt: int) -> None:
    for obj in (range_delta_of(), object_delta_of()):
        with pytest.raises(FormatError, match="not a delta"):
            decode_delta(bytes([fmt]) + obj[1:], OLD_TEXT, len(NEW_TEXT))
    with pytest.raises(FormatError):
        range_ref(bytes([fmt]) + range_delta_of()[1:])
    with pytest.raises(FormatError):
        object_ref(bytes([fmt]) + object_delta_of()[1:])


def test_one_delta_kind_is_not_read_as_the_other() -> None:
    with pytest.raises(FormatError, match="not a range delta"):
        range_ref(object_delta_of())
    with pytest.raises(FormatError, match="not an object delta"):
        object_ref(range_delta_of())


# -- choose_reference ----------------------------------------------------------------------
BASE = sized_manifest(
    {
        "small.html": 40_000,
        "exact.bin": MAX_REFERENCE,
        "big.zip": 5 * MIB,
        "empty.txt": 0,
        "just-over.bin": MAX_REFERENCE + 1,
    }
)
BASE_PATHS = path_index(BASE)


def choose(path: str, offset: int, length: int) -> RangeRef | None:
    return choose_reference(path, offset, length, BASE, BASE_PATHS)


@pytest.mark.parametrize("offset", [0, 30_000, 10 * MIB])
def test_files_up_to_1_mib_are_referenced_whole(offset: int) -> None:
    assert choose("small.html", offset, 8_000) == RangeRef(0, 0, 40_000)
    assert choose("exact.bin", offset, 8_000) == RangeRef(1, 0, MAX_REFERENCE)


def test_larger_files_get_a_1_mib_window_centred_on_the_chunk() -> None:
    assert choose("big.zip", 2 * MIB, 64 * 1024) == RangeRef(2, 2 * MIB + 32 * 1024 - MIB // 2, MIB)
    assert choose("big.zip", 3 * MIB + 1, 1) == RangeRef(2, 3 * MIB + 1 - MIB // 2, MIB)


def test_windows_are_clamped_to_the_file() -> None:
    assert choose("big.zip", 0, 32_768) == RangeRef(2, 0, MIB)
    assert choose("big.zip", 100_000, 32_768) == RangeRef(2, 0, MIB)
    assert choose("big.zip", 5 * MIB - 32_768, 32_768) == RangeRef(2, 4 * MIB, MIB)
    assert choose("big.zip", 9 * MIB, 32_768) == RangeRef(2, 4 * MIB, MIB)  # new file is longer
    assert choose("just-over.bin", 600_000, 20_000) == RangeRef(4, 1, MIB)


def test_no_reference_for_new_paths_and_empty_old_files() -> None:
    assert choose("new.html", 0, 8_000) is None
    assert choose("SMALL.HTML", 0, 8_000) is None
    assert choose("empty.txt", 0, 8_000) is None


@given(
    size=st.integers(MAX_REFERENCE + 1, 64 * MIB),
    offset=st.integers(0, 70 * MIB),
    length=st.integers(1, 128 * 1024),
)
def test_large_file_windows_hold_the_chunk_when_it_fits(
    size: int, offset: int, length: int
) -> None:
    base = sized_manifest({"f": size})
    ref = choose_reference("f", offset, length, base, path_index(base))
    assert ref is not None and ref.file == 0 and ref.length == MAX_REFERENCE
    assert ref.offset >= 0 and ref.offset + ref.length <= size
    if offset + length <= size:
        assert ref.offset <= offset and offset + length <= ref.offset + ref.length


# -- FileReader ----------------------------------------------------------------------------
def reader_files() -> dict[str, bytes]:
    rng = random.Random(7)
    return {
        "a.html": DICT_CORPUS[200_000:250_000],
        "b.bin": rng.randbytes(20_000) + DICT_CORPUS[250_000:270_000],
        "c.txt": b"short",
    }


def boundary_ranges(entry: FileEntry, rng: random.Random) -> list[tuple[int, int]]:
    """(offset, length) pairs that start, end or straddle chunk boundaries, plus random ones."""
    ranges = [(0, entry.size), (0, 1), (entry.size - 1, 1)]
    pos = 0
    for _cid, length in entry.chunks[:-1]:
        pos += length
        ranges += [(pos - 1, 2), (pos, 1), (pos - 1, 1), (max(pos - 3_000, 0), 6_000)]
    for _ in range(30):
        start = rng.randrange(entry.size)
        ranges.append((start, rng.randint(1, entry.size - start)))
    return [(o, min(n, entry.size - o)) for o, n in ranges]


@pytest.mark.parametrize("with_dictionary", [False, True])
def test_file_reader_reads_exact_bytes_across_chunk_boundaries(
    with_dictionary: bool, dictionary: tuple[str, bytes]
) -> None:
    files = reader_files()
    store = MemoryChunkStore()
    manifest = build(files, store, dictionary=dictionary if with_dictionary else None)
    formats = {store.get(cid)[0] for f in manifest.files for cid, _ in f.chunks}
    assert (ZSTD_DICT in formats) == with_dictionary
    assert len(manifest.files[0].chunks) > 5
    reader = reader_for(manifest, store)
    rng = random.Random(1)
    for index, entry in enumerate(manifest.files):
        data = files[entry.path]
        for offset, length in boundary_ranges(entry, rng):
            got = reader.read(RangeRef(index, offset, length))
            assert got == data[offset : offset + length], (entry.path, offset, length)


def test_file_reader_does_not_serve_a_stale_window() -> None:
    files = reader_files()
    store = MemoryChunkStore()
    reader = reader_for(build(files, store), store)
    a, b = RangeRef(0, 100, 5_000), RangeRef(1, 100, 5_000)
    for ref in (a, a, b, a, b, b):
        want = files["a.html" if ref.file == 0 else "b.bin"][100:5_100]
        assert reader.read(ref) == want


def test_file_reader_refuses_files_and_ranges_outside_the_manifest() -> None:
    files = reader_files()
    store = MemoryChunkStore()
    manifest = build(files, store)
    reader = reader_for(manifest, store)
    size = len(files["a.html"])
    for ref in (RangeRef(3, 0, 1), RangeRef(2**32 - 1, 0, 1), RangeRef(-1, 0, 1)):
        with pytest.raises(FormatError, match="fewer"):
            reader.read(ref)
    for ref in (
        RangeRef(0, 0, size + 1),
        RangeRef(0, size, 1),
        RangeRef(0, size - 10, 11),
        RangeRef(0, 2**64 - 1, 1),
        RangeRef(2, 0, 6),
    ):
        with pytest.raises(FormatError, match="past the end"):
            reader.read(ref)
    assert reader.read(RangeRef(0, size - 10, 10)) == files["a.html"][-10:]


# -- delta_objects and static_pack ---------------------------------------------------------
def versions() -> tuple[dict[str, bytes], dict[str, bytes]]:
    rng = random.Random(99)
    old = {
        "unchanged.html": text_bytes(rng, 30_000),
        "edited.html": text_bytes(rng, 60_000),
        "replaced.bin": rng.randbytes(30_000),
        "removed.txt": text_bytes(rng, 5_000),
    }
    new = dict(old)
    del new["removed.txt"]
    new["edited.html"] = edited(edited(old["edited.html"], 40_000, 4, b"fixed"), 9_000, 0, b"!")
    new["replaced.bin"] = rng.randbytes(30_000)  # same path, unrelated random bytes
    new["added.html"] = text_bytes(rng, 12_000)
    return old, new


def server_with_versions() -> tuple[MemoryChunkStore, Manifest, Manifest]:
    old, new = versions()
    store = MemoryChunkStore()
    base = build(old, store)
    return store, base, build(new, store, version=2)


def new_chunks(new: Manifest, base: Manifest) -> list[tuple[str, int]]:
    held = {cid for cid, _ in base.distinct_chunks()}
    return [(cid, n) for cid, n in new.distinct_chunks() if cid not in held]


def chunks_of(manifest: Manifest, path: str) -> set[str]:
    return {cid for cid, _ in manifest.file(path).chunks}


def test_delta_objects_send_deltas_for_small_edits_and_stored_objects_otherwise() -> None:
    old, _ = versions()
    store, base, new = server_with_versions()
    wanted = new_chunks(new, base)
    lookup = lookup_for(store, new, base)
    out = dict(delta_objects(new, base, wanted, store, lookup, level=19))
    assert list(out) == [cid for cid, _ in wanted]
    whole_old_file = RangeRef(path_index(base)["edited.html"], 0, len(old["edited.html"]))
    reader = reader_for(base, store)
    lengths = dict(wanted)
    edited_ids = chunks_of(new, "edited.html") & set(out)
    assert len(edited_ids) >= 2  # two edits far apart
    for cid in edited_ids:
        obj, stored = out[cid], store.get(cid)
        assert obj[0] == DELTA_RANGE and range_ref(obj) == whole_old_file
        assert len(obj) < 100 < len(stored) // 10
        assert chunk_id(undo_range_delta(obj, lengths[cid], reader)) == cid
    # random bytes under an old path: the delta is not smaller, so the stored object goes
    replaced = chunks_of(new, "replaced.bin")
    assert replaced <= set(out)
    for cid in replaced:
        assert out[cid] == store.get(cid) and out[cid][0] == RAW
    # a new path has no reference
    for cid in chunks_of(new, "added.html"):
        assert out[cid] == store.get(cid)


def test_delta_objects_keep_the_stored_object_when_the_delta_is_not_smaller() -> None:
    # Identical sizes but unrelated bytes: every delta would cost more than the raw object.
    store = MemoryChunkStore()
    rng = random.Random(4)
    base = build({"f.bin": rng.randbytes(20_000)}, store)
    new = build({"f.bin": rng.randbytes(20_000)}, store, version=2)
    wanted = new_chunks(new, base)
    out = list(delta_objects(new, base, wanted, store, lookup_for(store, new, base)))
    assert [cid for cid, _ in out] == [cid for cid, _ in wanted]
    assert all(obj == store.get(cid) for cid, obj in out)


def test_static_pack_holds_exactly_the_new_objects() -> None:
    store, base, new = server_with_versions()
    body, count = static_pack(new, base, store, lookup_for(store, new, base))
    frames = split_pack(body)
    ids = [cid for cid, _ in frames]
    expected = {cid for cid, _ in new.distinct_chunks()} - {
        cid for cid, _ in base.distinct_chunks()
    }
    assert len(ids) == len(set(ids)) == count == len(expected)
    assert set(ids) == expected
    assert any(obj[0] == DELTA_RANGE for _, obj in frames)
    assert all(obj[0] in (RAW, ZSTD, DELTA_RANGE) for _, obj in frames)


def test_static_pack_sends_a_new_dictionary_before_the_chunks_that_need_it(
    dictionary: tuple[str, bytes],
) -> None:
    old, new_files = versions()
    store = MemoryChunkStore()
    base = build(old, store)
    new = build(new_files, store, dictionary=dictionary, version=2)
    body, count = static_pack(new, base, store, lookup_for(store, new, base))
    frames = split_pack(body)
    assert frames[0] == (dictionary[0], store.get(dictionary[0]))
    client = client_holding(base, store)
    expected = dict(new_chunks(new, base))
    assert receive(frames, expected, client, base, dictionaries=dict(new.dictionaries)) == count
    for cid, length in expected.items():
        verify_object(client.get(cid), cid, length, lookup_for(client, new))


# -- receive_frames with deltas ------------------------------------------------------------
def client_holding(manifest: Manifest, server: MemoryChunkStore) -> MemoryChunkStore:
    client = MemoryChunkStore()
    for cid, _ in manifest.distinct_chunks():
        client.put(cid, server.get(cid))
    return client


def receive(
    frames: list[tuple[str, bytes]],
    expected: dict[str, int],
    client: MemoryChunkStore,
    base: Manifest | None,
    dictionaries: dict[str, int] | None = None,
) -> int:
    return receive_frames(
        [PackFrame(cid, obj) for cid, obj in frames],
        expected,
        client,
        dictionaries=dictionaries,
        base=None if base is None else reader_for(base, client),
    )


def delta_frames() -> tuple[MemoryChunkStore, Manifest, Manifest, list[tuple[str, bytes]]]:
    store, base, new = server_with_versions()
    body, _count = static_pack(new, base, store, lookup_for(store, new, base))
    return store, base, new, split_pack(body)


def test_range_delta_frames_are_stored_as_ordinary_objects() -> None:
    store, base, new, frames = delta_frames()
    client = client_holding(base, store)
    expected = dict(new_chunks(new, base))
    assert receive(frames, expected, client, base) == len(expected)
    for cid, obj in frames:
        kept = client.get(cid)
        if obj[0] == DELTA_RANGE:
            assert kept[0] in (RAW, ZSTD)
        else:
            assert kept == obj
        verify_object(kept, cid, expected[cid])
    for cid, _ in new.distinct_chunks():
        assert client.has(cid)


def test_range_delta_without_a_base_is_refused() -> None:
    store, base, new, frames = delta_frames()
    deltas = [(cid, obj) for cid, obj in frames if obj[0] == DELTA_RANGE]
    client = client_holding(base, store)
    with pytest.raises(FormatError, match="no base"):
        receive(deltas[:1], dict(new_chunks(new, base)), client, None)
    assert not client.has(deltas[0][0])


def test_range_delta_against_the_wrong_base_is_refused() -> None:
    _store, base, new, frames = delta_frames()
    deltas = [(cid, obj) for cid, obj in frames if obj[0] == DELTA_RANGE]
    # Another version whose files have the same names and sizes but other bytes.
    rng = random.Random(1234)
    other_files = {
        e.path: text_bytes(rng, e.size)
        if e.path.endswith((".html", ".txt"))
        else rng.randbytes(e.size)
        for e in base.files
    }
    client = MemoryChunkStore()
    other = build(other_files, client)
    assert [(f.path, f.size) for f in other.files] == [(f.path, f.size) for f in base.files]
    for cid, obj in deltas:
        with pytest.raises((FormatError, IntegrityError)):
            receive([(cid, obj)], dict(new_chunks(new, base)), client, other)
        assert not client.has(cid)


@pytest.mark.parametrize(
    "header",
    [
        (9, 0, 100),  # no such file in the base
        (0, 2**64 - 1, 100),  # past the end
        (0, 0, 0),  # empty reference
        (0, 0, MAX_REFERENCE + 1),  # too long
    ],
)
def test_range_delta_with_a_forged_header_is_refused(header: tuple[int, int, int]) -> None:
    store, base, new, frames = delta_frames()
    cid, obj = next((cid, obj) for cid, obj in frames if obj[0] == DELTA_RANGE)
    forged = bytes([DELTA_RANGE]) + struct.pack(">IQI", *header) + obj[RANGE_HEADER:]
    client = client_holding(base, store)
    with pytest.raises(FormatError):
        receive([(cid, forged)], dict(new_chunks(new, base)), client, base)
    assert not client.has(cid)


def test_object_delta_frames_are_not_accepted_in_packs() -> None:
    store, base, new, _frames = delta_frames()
    cid, length = new_chunks(new, base)[0]
    data = verify_object(store.get(cid), cid, length)
    forged = encode_object_delta(data, cid, data)
    client = client_holding(base, store)
    with pytest.raises(FormatError):
        receive([(cid, forged)], {cid: length}, client, base)
