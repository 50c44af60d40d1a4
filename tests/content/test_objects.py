"""Stored objects: encoding choice, bounded decoding, and refusal of forged frames."""

from __future__ import annotations

import random
import struct

import pytest
import zstandard
from satchel.content import objects
from satchel.content.chunking import chunk_id
from satchel.content.errors import FormatError, IntegrityError, NotFoundError
from satchel.content.objects import (
    MAX_OBJECT_LENGTH,
    MAX_WINDOW,
    RAW,
    ZSTD,
    ZSTD_DICT,
    declared_length,
    decode_object,
    encode_object,
    identify_object,
    looks_compressible,
    object_dictionary,
    object_format,
    train_dictionary,
    verify_object,
)

from harness.repo import text_bytes
from harness.zstd_forge import ZSTD_MAGIC, forge_content_size

RNG = random.Random(11)
CORPUS = text_bytes(RNG, 660_000)  # one vocabulary: a dictionary trained on it helps TEXT
TEXT = CORPUS[-20_000:]
NOISE = RNG.randbytes(5_000)


def trained_on(corpus: bytes) -> tuple[str, bytes]:
    samples = [corpus[i : i + 8_000] for i in range(0, 640_000, 8_000)]
    trained = train_dictionary(samples, size=16 * 1024)
    assert trained is not None
    return chunk_id(trained), trained


@pytest.fixture(scope="module")
def dictionary() -> tuple[str, bytes]:
    return trained_on(CORPUS)


def plain_zstd(data: bytes, level: int = 3) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def forbid_decompression(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to decompress fail the test: the check must come first."""

    class NoDecompressor:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("decompression was attempted")

    monkeypatch.setattr(objects.zstandard, "ZstdDecompressor", NoDecompressor)


# -- encoding ------------------------------------------------------------------------------
def test_incompressible_data_is_stored_raw() -> None:
    obj = encode_object(NOISE)
    assert obj == bytes([RAW]) + NOISE
    assert verify_object(obj, chunk_id(NOISE), len(NOISE)) == NOISE


def test_text_is_stored_as_zstd_with_declared_size() -> None:
    obj = encode_object(TEXT, level=3)
    assert object_format(obj) == ZSTD and len(obj) < len(TEXT) / 2
    assert declared_length(obj) == len(TEXT)
    assert verify_object(obj, chunk_id(TEXT), len(TEXT)) == TEXT
    assert identify_object(obj, len(TEXT)) == (chunk_id(TEXT), len(TEXT))


def test_empty_chunk_round_trips() -> None:
    obj = encode_object(b"")
    assert decode_object(obj, 0) == b""


def test_dictionary_objects_name_their_dictionary(dictionary: tuple[str, bytes]) -> None:
    did, dbytes = dictionary
    obj = encode_object(TEXT, level=3, dictionary=dictionary)
    assert object_format(obj) == ZSTD_DICT
    assert object_dictionary(obj) == did
    assert len(obj) < len(encode_object(TEXT, level=3))
    lookups: list[str] = []

    def lookup(wanted: str) -> bytes:
        lookups.append(wanted)
        return dbytes

    assert verify_object(obj, chunk_id(TEXT), len(TEXT), lookup) == TEXT
    assert lookups == [did]


@pytest.mark.parametrize("level", [3, objects.DEFAULT_LEVEL])
def test_encoding_picks_the_smallest_form_even_with_an_unhelpful_dictionary(level: int) -> None:
    unhelpful = trained_on(text_bytes(random.Random(99), 660_000))  # another vocabulary
    with_dict = encode_object(TEXT, level=level, dictionary=unhelpful)
    plain = encode_object(TEXT, level=level)
    assert len(with_dict) <= len(plain)


def test_media_does_not_use_the_dictionary(dictionary: tuple[str, bytes]) -> None:
    assert object_format(encode_object(NOISE, dictionary=dictionary)) == RAW


def test_looks_compressible() -> None:
    assert looks_compressible(TEXT)
    assert not looks_compressible(NOISE)
    assert not looks_compressible(b"a" * 63)  # too short to judge


# -- the probe: which chunks meet which level ---------------------------------------------
def compressor_levels(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the level of every compressor encode_object asks for."""
    asked: list[int] = []
    real = objects._compressor

    def spy(level: int, dict_id: str | None, dict_bytes: bytes | None) -> zstandard.ZstdCompressor:
        asked.append(level)
        return real(level, dict_id, dict_bytes)

    monkeypatch.setattr(objects, "_compressor", spy)
    return asked


def slightly_compressible(rng: random.Random, n: int) -> bytes:
    """Like PNG data: noise with a few short repeats that level 1 misses and higher levels find
    (about 2% saved)."""
    out = bytearray()
    while len(out) < n:
        out += rng.randbytes(1000)
        start = rng.randrange(len(out) - 32)
        out += out[start : start + 32]
    return bytes(out[:n])


def test_media_chunks_never_meet_the_high_level(monkeypatch: pytest.MonkeyPatch) -> None:
    noise = random.Random(5).randbytes(128 * 1024)  # video, JPEG
    asked = compressor_levels(monkeypatch)
    assert encode_object(noise) == bytes([RAW]) + noise
    assert asked == [objects.PROBE_LEVEL, objects.MEDIA_LEVEL]


def test_slightly_compressible_chunks_get_the_media_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = slightly_compressible(random.Random(6), 64 * 1024)
    assert len(plain_zstd(data, 1)) >= len(data) * (1 - objects.MEDIA_SAVING)  # the case meant
    asked = compressor_levels(monkeypatch)
    obj = encode_object(data)
    assert asked == [objects.PROBE_LEVEL, objects.MEDIA_LEVEL]
    assert object_format(obj) == ZSTD and len(obj) < len(data) * 0.99  # the repeats were found
    assert verify_object(obj, chunk_id(data), len(data)) == data


def test_text_still_gets_the_high_level_bytes(dictionary: tuple[str, bytes]) -> None:
    """The probe changes nothing for text: the same bytes as level 19 (small updates and first
    downloads of lessons stay as small as before)."""
    assert encode_object(TEXT) == bytes([ZSTD]) + objects._compressor(19, None, None).compress(TEXT)
    did, dbytes = dictionary
    with_dict = objects._compressor(19, did, dbytes).compress(TEXT)
    assert encode_object(TEXT, dictionary=dictionary) == (
        bytes([ZSTD_DICT]) + bytes.fromhex(did) + with_dict
    )


def test_text_with_a_helpful_dictionary_meets_the_high_level_once(
    dictionary: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = compressor_levels(monkeypatch)
    obj = encode_object(TEXT, dictionary=dictionary)
    assert object_format(obj) == ZSTD_DICT
    assert asked.count(objects.DEFAULT_LEVEL) == 1


def test_signed_documents_of_over_a_mebibyte_are_compressed_at_the_large_level() -> None:
    """A 10,000-file manifest or draft is ~1.8 MB: level 12, not 19, on both sides of a publish."""
    assert objects.document_level(1024 * 1024) == objects.DEFAULT_LEVEL
    assert objects.document_level(1024 * 1024 + 1) == objects.LARGE_DOCUMENT_LEVEL == 12
    doc = b"".join(
        b'{"path":"unit-%05d/page.html","chunks":["%064x"]},' % (i, i) for i in range(12_000)
    )
    assert len(doc) > objects.LARGE_DOCUMENT
    obj = encode_object(doc, level=objects.document_level(len(doc)))
    assert verify_object(obj, chunk_id(doc), len(doc)) == doc


def test_train_dictionary_needs_enough_samples() -> None:
    assert train_dictionary([TEXT] * 7) is None
    assert train_dictionary([b"tiny"] * 100) is None


# -- hostile objects -----------------------------------------------------------------------
@pytest.mark.parametrize("obj", [b"\x03abc", b"\xffabc", b"\x7f"])
def test_unknown_format_byte_is_refused(obj: bytes) -> None:
    with pytest.raises(FormatError, match="unknown format"):
        decode_object(obj, 3)
    with pytest.raises(FormatError):
        declared_length(obj)


def test_empty_object_is_refused() -> None:
    with pytest.raises(FormatError, match="empty"):
        decode_object(b"", 0)
    with pytest.raises(FormatError):
        identify_object(b"", 10)


@pytest.mark.parametrize("length", [len(NOISE) - 1, len(NOISE) + 1, 0])
def test_raw_object_of_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(IntegrityError):
        decode_object(bytes([RAW]) + NOISE, length)


def test_hash_mismatch_is_refused() -> None:
    with pytest.raises(IntegrityError, match="hash"):
        verify_object(encode_object(TEXT), chunk_id(TEXT[:-1] + b"?"), len(TEXT))
    with pytest.raises(IntegrityError):
        verify_object(bytes([RAW]) + NOISE, chunk_id(NOISE[::-1]), len(NOISE))


@pytest.mark.parametrize("length", [-1, MAX_OBJECT_LENGTH + 1])
def test_expected_length_outside_limits_is_refused(length: int) -> None:
    with pytest.raises(FormatError):
        decode_object(bytes([RAW]), length)


@pytest.mark.parametrize("keep", [1, 4, 5, 6, 20, -1, -3])
def test_truncated_zstd_is_refused(keep: int) -> None:
    frame = plain_zstd(TEXT)
    obj = bytes([ZSTD]) + frame[:keep]
    with pytest.raises((FormatError, IntegrityError)):
        decode_object(obj, len(TEXT))


def test_corrupt_zstd_body_is_refused() -> None:
    frame = bytearray(plain_zstd(TEXT))
    frame[len(frame) // 2] ^= 0xFF
    with pytest.raises((FormatError, IntegrityError)):
        verify_object(bytes([ZSTD]) + bytes(frame), chunk_id(TEXT), len(TEXT))


def test_data_after_the_frame_is_refused() -> None:
    frame = plain_zstd(TEXT)
    with pytest.raises(FormatError):
        decode_object(bytes([ZSTD]) + frame + b"\x00junk", len(TEXT))
    with pytest.raises(FormatError):
        decode_object(bytes([ZSTD]) + frame + plain_zstd(b"more"), len(TEXT))


def test_frame_without_content_size_is_refused() -> None:
    cobj = zstandard.ZstdCompressor(level=3, write_content_size=False).compressobj()
    frame = cobj.compress(TEXT) + cobj.flush()
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    with pytest.raises((FormatError, IntegrityError)):
        decode_object(bytes([ZSTD]) + frame, len(TEXT))
    with pytest.raises(FormatError, match="content size"):
        identify_object(bytes([ZSTD]) + frame, MAX_OBJECT_LENGTH)


@pytest.mark.parametrize("declared", [MAX_OBJECT_LENGTH + 1, 2**40, 2**62])
def test_huge_declared_size_is_refused_before_decompressing(
    declared: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    forged = bytes([ZSTD]) + forge_content_size(plain_zstd(TEXT), declared)
    assert declared_length(forged) == declared
    forbid_decompression(monkeypatch)
    with pytest.raises(IntegrityError, match="declares"):
        decode_object(forged, len(TEXT))  # the manifest says 20,000 bytes
    with pytest.raises(FormatError, match="over"):
        identify_object(forged, MAX_OBJECT_LENGTH)
    with pytest.raises(FormatError):
        decode_object(forged, declared)  # even if the manifest were in on it


def test_declared_size_unlike_the_manifest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    forged = bytes([ZSTD]) + forge_content_size(plain_zstd(TEXT), len(TEXT) + 1)
    forbid_decompression(monkeypatch)
    with pytest.raises(IntegrityError):
        decode_object(forged, len(TEXT))


def test_honest_frame_with_window_over_8_mib_is_refused() -> None:
    data = bytes(9 * 1024 * 1024)
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=24, write_content_size=1)
    frame = zstandard.ZstdCompressor(compression_params=params).compress(data)
    assert zstandard.get_frame_parameters(frame).window_size > MAX_WINDOW
    with pytest.raises(FormatError, match="window"):
        decode_object(bytes([ZSTD]) + frame, len(data))


def test_forged_window_descriptor_over_8_mib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A streamed frame (no content size, 16 MiB window), then a header that declares the
    # right content size but keeps the 16 MiB window: only the window check can refuse it.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=24)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    streamed = cobj.compress(TEXT) + cobj.flush()
    assert streamed[4] == 0x00  # no FCS field, not single segment, window descriptor next
    window_descriptor = streamed[5]
    forged = (
        ZSTD_MAGIC
        + bytes([0x80, window_descriptor])  # FCS field of 4 bytes, window descriptor present
        + struct.pack("<I", len(TEXT))
        + streamed[6:]
    )
    fp = zstandard.get_frame_parameters(forged)
    assert (fp.content_size, fp.window_size) == (len(TEXT), 16 * 1024 * 1024)
    forbid_decompression(monkeypatch)
    with pytest.raises(FormatError, match="window"):
        decode_object(bytes([ZSTD]) + forged, len(TEXT))


def test_dictionary_object_without_a_lookup_is_refused(dictionary: tuple[str, bytes]) -> None:
    obj = encode_object(TEXT, level=3, dictionary=dictionary)
    with pytest.raises(FormatError, match="dictionary"):
        decode_object(obj, len(TEXT))


def test_dictionary_object_whose_dictionary_is_missing(dictionary: tuple[str, bytes]) -> None:
    obj = encode_object(TEXT, level=3, dictionary=dictionary)

    def lookup(did: str) -> bytes:
        raise NotFoundError(f"no dictionary {did}")

    with pytest.raises(NotFoundError):
        decode_object(obj, len(TEXT), lookup)


def test_dictionary_with_wrong_bytes_is_refused(dictionary: tuple[str, bytes]) -> None:
    _did, dbytes = dictionary
    fake_id = chunk_id(b"another dictionary")
    obj = (
        bytes([ZSTD_DICT])
        + bytes.fromhex(fake_id)
        + encode_object(TEXT, level=3, dictionary=dictionary)[33:]
    )
    with pytest.raises(IntegrityError, match="dictionary"):
        decode_object(obj, len(TEXT), lambda _id: dbytes)


def test_dictionary_that_zstd_cannot_load_is_a_format_error() -> None:
    # Starts with zstd's dictionary magic, so it claims to be a trained dictionary, but its
    # tables are garbage: the upload or pack that names it is bad content, not a crash.
    broken = b"\x37\xa4\x30\xec" + bytes(range(256)) * 4
    frame = plain_zstd(TEXT)
    obj = bytes([ZSTD_DICT]) + bytes.fromhex(chunk_id(broken)) + frame
    with pytest.raises(FormatError):
        decode_object(obj, len(TEXT), lambda _id: broken)


def test_oversized_dictionary_is_refused(dictionary: tuple[str, bytes]) -> None:
    obj = encode_object(TEXT, level=3, dictionary=dictionary)
    with pytest.raises(FormatError, match="dictionary"):
        decode_object(obj, len(TEXT), lambda _id: bytes(objects.MAX_DICTIONARY + 1))


@pytest.mark.parametrize("length", [0, 1, 20, 31])
def test_dictionary_object_shorter_than_its_id_is_refused(length: int) -> None:
    obj = bytes([ZSTD_DICT]) + bytes(length)
    with pytest.raises(FormatError):
        object_dictionary(obj)
    with pytest.raises(FormatError):
        decode_object(obj, 10, lambda _id: b"")


def test_dictionary_object_without_a_frame_is_refused() -> None:
    obj = bytes([ZSTD_DICT]) + bytes(32)
    with pytest.raises(FormatError):
        decode_object(obj, 10, lambda _id: b"")


def test_raw_and_zstd_objects_need_no_dictionary() -> None:
    assert object_dictionary(encode_object(TEXT)) is None
    assert object_dictionary(bytes([RAW]) + NOISE) is None


def test_python_zstandard_does_not_enforce_max_window_size_in_single_pass() -> None:
    """Why decode_object checks the window itself: the library's limit is not applied to
    single-pass decompression of a frame that declares its content size (streaming applies
    it). If a future python-zstandard enforces it, this test says our check became a second
    line of defence rather than the only one."""
    data = bytes(3 * 1024 * 1024)
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=22, write_content_size=1)
    frame = zstandard.ZstdCompressor(compression_params=params).compress(data)
    assert zstandard.get_frame_parameters(frame).window_size > 1024 * 1024
    limited = zstandard.ZstdDecompressor(max_window_size=1024 * 1024)
    assert limited.decompress(frame) == data  # not enforced here
    with pytest.raises(zstandard.ZstdError, match="memory"):
        limited.decompressobj().decompress(frame)  # enforced when streaming
