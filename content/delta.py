"""Delta encodings: a chunk or manifest as zstd against bytes the receiver already has.

Two transfer encodings, never stored as they are (a receiver decodes, verifies the SHA-256,
then keeps an ordinary stored object):

- ``0x03`` DELTA_RANGE: ``file:u32 offset:u64 length:u32`` then one zstd frame compressed
  with a raw-content dictionary made of those bytes of file number ``file`` of the *base*
  manifest (the version the receiver holds, named in the request). Up to
  :data:`MAX_REFERENCE` bytes, so a re-packed zip or an edited 300 KB module is one window.
- ``0x04`` DELTA_OF: ``ref:32`` then one zstd frame whose raw-content dictionary is the
  uncompressed bytes of object (or manifest) ``ref``. Manifests travel this way.

A one-word fix costs the edit plus a few dozen bytes, not a 32 KiB chunk. Decoding is bounded
exactly like stored objects: declared size = expected size, window <= 8 MiB; except a manifest
delta a client asked for with ``long`` (:func:`encode_manifest_delta`), whose window may span
the manifest it replaces (at most :data:`LONG_WINDOW`: a decoder holds both anyway).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import zstandard

from .errors import FormatError
from .objects import MAX_WINDOW, check_frame, decompress_checked

DELTA_RANGE = 0x03
DELTA_OF = 0x04
MAX_REFERENCE = 1024 * 1024
_RANGE = struct.Struct(">IQI")
DELTA_LEVEL = 19
# A manifest delta whose reference is too large for an 8 MiB window (over ~45,000 files) is
# made at this level with a window spanning reference and manifest: 100,000 files, one changed,
# 1,858 bytes in 0.4 s of CPU, against 2.4 MB in 17 s at level 19 in an 8 MiB window.
LONG_DELTA_LEVEL = 12
LONG_WINDOW = 2 * 64 * 1024 * 1024  # twice the largest manifest (MAX_MANIFEST_BYTES)


@dataclass(frozen=True, slots=True)
class RangeRef:
    """Bytes ``[offset, offset + length)`` of file number ``file`` of the base manifest."""

    file: int
    offset: int
    length: int


def compress_against(data: bytes, reference: bytes, level: int = DELTA_LEVEL) -> bytes:
    """One zstd frame of ``data`` with ``reference`` as a raw-content dictionary."""
    zdict = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(
        level=level,
        dict_data=zdict,
        write_content_size=True,
        write_checksum=False,
        write_dict_id=False,
    ).compress(data)


def encode_range_delta(
    data: bytes, ref: RangeRef, reference: bytes, level: int = DELTA_LEVEL
) -> bytes:
    if len(reference) != ref.length or ref.length > MAX_REFERENCE:
        raise FormatError("delta reference has the wrong length")
    return (
        bytes([DELTA_RANGE])
        + _RANGE.pack(ref.file, ref.offset, ref.length)
        + compress_against(data, reference, level)
    )


def encode_object_delta(
    data: bytes, ref_id: str, reference: bytes, level: int = DELTA_LEVEL
) -> bytes:
    return bytes([DELTA_OF]) + bytes.fromhex(ref_id) + compress_against(data, reference, level)


def encode_manifest_delta(data: bytes, ref_id: str, reference: bytes, *, long: bool) -> bytes:
    """A manifest as a delta (0x04) against the manifest ``ref_id`` the client holds.

    Within :data:`MAX_WINDOW` this is :func:`encode_object_delta` at level 19. A larger pair,
    for a client that decodes ``long`` windows, is made at :data:`LONG_DELTA_LEVEL` with a
    window over both; without ``long``, as before (level 19 reaching the last 8 MiB only)."""
    if len(reference) + len(data) <= MAX_WINDOW or not long:
        return encode_object_delta(data, ref_id, reference)
    window_log = max(10, (len(reference) + len(data) - 1).bit_length())
    zdict = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        LONG_DELTA_LEVEL,
        window_log=window_log,
        write_content_size=True,
        write_checksum=False,
        write_dict_id=False,
    )
    frame = zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(data)
    return bytes([DELTA_OF]) + bytes.fromhex(ref_id) + frame


def range_ref(obj: bytes | memoryview) -> RangeRef:
    """The reference a DELTA_RANGE object names (checked against the limits)."""
    if len(obj) < 1 + _RANGE.size or obj[0] != DELTA_RANGE:
        raise FormatError("not a range delta")
    file, offset, length = _RANGE.unpack_from(obj, 1)
    if not 0 < length <= MAX_REFERENCE:
        raise FormatError(f"delta reference of {length:,} bytes is outside 1..{MAX_REFERENCE:,}")
    return RangeRef(file, offset, length)


def object_ref(obj: bytes | memoryview) -> str:
    if len(obj) < 33 or obj[0] != DELTA_OF:
        raise FormatError("not an object delta")
    return bytes(memoryview(obj)[1:33]).hex()


def decode_delta(
    obj: bytes | memoryview,
    reference: bytes,
    expected_length: int,
    *,
    max_window: int = MAX_WINDOW,
) -> bytes:
    """Undo a delta given the reference bytes; exactly ``expected_length`` bytes or an error.
    ``max_window``: :data:`LONG_WINDOW` for a manifest delta asked for with ``long``."""
    if len(obj) == 0 or obj[0] not in (DELTA_RANGE, DELTA_OF):
        raise FormatError("not a delta object")
    frame = memoryview(obj)[1 + _RANGE.size :] if obj[0] == DELTA_RANGE else memoryview(obj)[33:]
    if len(reference) > MAX_REFERENCE and obj[0] == DELTA_RANGE:
        raise FormatError("delta reference is too large")
    if obj[0] == DELTA_RANGE:
        max_window = MAX_WINDOW  # a chunk's delta: never long
    check_frame(frame, expected_length, "delta", max_window)
    try:
        zdict = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    except zstandard.ZstdError as exc:
        raise FormatError(f"delta reference is unusable ({exc})") from None
    return decompress_checked(
        frame, expected_length, zdict, "delta against its reference", max_window
    )
