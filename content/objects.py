"""Stored objects: how a chunk (or manifest, or dictionary) is kept on disk and sent on the wire.

An object is one format byte followed by a payload:

- ``0x00`` RAW: the payload is the chunk's bytes as they are (JPEG, MP4...).
- ``0x01`` ZSTD: the payload is one zstd frame that declares its content size.
- ``0x02`` ZSTD_DICT: 32 bytes naming a dictionary (SHA-256 of the dictionary's bytes, itself
  stored as an ordinary object), then one zstd frame compressed with that dictionary.

Compression happens once, at publish time; servers and relays store and send objects as
they are. Decoding is bounded: the frame's declared size must equal the length the signed
manifest promised, and its window may not exceed :data:`MAX_WINDOW`, so a forged frame cannot
make a reader allocate more than the manifest allows (python-zstandard does not enforce
``max_window_size`` for single-pass frames that carry a content size, so we check first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import zstandard
from cachetools import LRUCache

from .chunking import chunk_id
from .errors import FormatError, IntegrityError

RAW = 0x00
ZSTD = 0x01
ZSTD_DICT = 0x02
FORMATS = {RAW: "raw", ZSTD: "zstd", ZSTD_DICT: "zstd+dict"}

DEFAULT_LEVEL = 19
PROBE_LEVEL = 1  # the cheap look every chunk gets before any costly level
MEDIA_LEVEL = 9  # for chunks the probe shrinks by less than MEDIA_SAVING
MEDIA_SAVING = 0.03
TEXT_LIKE = 0.6  # the probe shrinks text-like chunks below this share: dictionary food
MAX_WINDOW = 8 * 1024 * 1024
MAX_OBJECT_LENGTH = 64 * 1024 * 1024
MAX_DICTIONARY = 1024 * 1024
DICTIONARY_MAGIC = b"\x37\xa4\x30\xec"  # zstd's magic for a full (trained) dictionary

OBJECT_MEDIA_TYPE = "application/vnd.satchel.object"
"""Content type of a request body that is one stored object (e.g. a compressed draft)."""

DictLookup = Callable[[str], bytes]
"""Returns the bytes of the dictionary with the given id, or raises NotFoundError."""

_local = threading.local()
_dict_lock = threading.Lock()
_dicts: LRUCache[tuple[str, int], zstandard.ZstdCompressionDict] = LRUCache(16)


def _compressor(
    level: int, dict_id: str | None, dict_bytes: bytes | None
) -> zstandard.ZstdCompressor:
    # Contexts are costly to build and not safe to share between threads: one per thread.
    cache: dict[tuple[int, str | None], zstandard.ZstdCompressor] | None = getattr(
        _local, "compressors", None
    )
    if cache is None:
        cache = _local.compressors = {}
    key = (level, dict_id)
    comp = cache.get(key)
    if comp is None:
        if len(cache) > 8:
            cache.clear()
        zdict = _zdict(dict_id, dict_bytes, level) if dict_id and dict_bytes else None
        comp = cache[key] = zstandard.ZstdCompressor(
            level=level,
            dict_data=zdict,
            write_content_size=True,
            write_checksum=False,
            write_dict_id=False,
        )
    return comp


def _zdict(dict_id: str, data: bytes, level: int) -> zstandard.ZstdCompressionDict:
    # Dictionaries are content-addressed, so a cache keyed by id can never serve wrong bytes.
    key = (dict_id, level)
    with _dict_lock:
        zd = _dicts.get(key)
    if zd is not None:
        return zd
    if chunk_id(data) != dict_id:
        raise IntegrityError(f"dictionary {dict_id[:16]}... does not match its id")
    try:
        zd = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        zd.precompute_compress(level=level)
    except zstandard.ZstdError:
        raise FormatError(f"object {dict_id[:16]}... is not a valid zstd dictionary") from None
    with _dict_lock:
        _dicts[key] = zd
    return zd


def train_dictionary(samples: list[bytes], size: int = 112 * 1024) -> bytes | None:
    """Train a zstd dictionary on text-like chunks, or None when there is too little to learn.

    Fixed cover parameters (k=512, d=6) train in well under a second on a course's text and
    were within 1% of zstd's slow parameter search on the corpus (bench/chunk_params.py).
    """
    total = sum(len(s) for s in samples)
    if len(samples) < 8 or total < 4 * size:
        return None
    try:
        pool: list[bytes | bytearray | memoryview] = list(samples)
        return zstandard.train_dictionary(size, pool, k=512, d=6).as_bytes()
    except zstandard.ZstdError:
        return None


def looks_compressible(data: bytes, threshold: float = TEXT_LIKE) -> bool:
    """True for text-like data (level-1 zstd shrinks it below ``threshold``): dictionary food."""
    return len(data) >= 64 and len(_quick(data)) < len(data) * threshold


def _quick(data: bytes) -> bytes:
    return _compressor(PROBE_LEVEL, None, None).compress(data)


# Signed documents over this size (a manifest, a publish's draft) are compressed at
# LARGE_DOCUMENT_LEVEL: a 100,000-file manifest (17 MB, mostly hex ids) took 17.5 s at level
# 19 for 4.51 MB, and takes 1.25 s at level 12 for 5.06 MB (12% more); a 10,000-file one
# (1.8 MB) 0.7 s for 448 KB against 0.06 s for 494 KB. That is paid on the teacher's laptop
# for its draft and on the server for the manifest at every publish, a one-file publish
# included; the extra bytes only by a laptop's first sync (later ones get a delta), next to
# the course's own: 494 KB beside 24 MB of pages. Courses under ~5,500 files stay at 19.
LARGE_DOCUMENT = 1024 * 1024
LARGE_DOCUMENT_LEVEL = 12


def document_level(size: int) -> int:
    """The zstd level for a signed document (manifest or draft) of ``size`` bytes."""
    return DEFAULT_LEVEL if size <= LARGE_DOCUMENT else LARGE_DOCUMENT_LEVEL


def encode_object(
    data: bytes | memoryview,
    *,
    level: int = DEFAULT_LEVEL,
    dictionary: tuple[str, bytes] | None = None,
) -> bytes:
    """Encode chunk bytes as a stored object: the smallest of raw, zstd, and zstd+dictionary.

    A level-1 probe of the whole chunk (GB/s on media, hundreds of MB/s on text) decides
    what the chunk is worth. When it saves under :data:`MEDIA_SAVING` (video, JPEG, PNG,
    images inside PDFs), :data:`MEDIA_LEVEL` is tried instead of ``level``: zstd skips
    incompressible blocks at GB/s up to level 9 but at 16 MB/s at level 19; level 1 alone
    would miss repeats that higher levels find in PNG data. On intro-stats v2 this stores
    0.4% more bytes than level 19 everywhere (see decisions.md). Anything else gets
    ``level``. Text-like chunks (the probe shrinks them below 60%) try the dictionary, and
    the costly level runs once: with the dictionary, plus plain only when the dictionary
    does not help at the probe's level.
    """
    raw = bytes(data)
    best = bytes([RAW]) + raw
    probe = _quick(raw)
    if len(probe) + 1 < len(best):
        best = bytes([ZSTD]) + probe
    if len(probe) >= len(raw) * (1 - MEDIA_SAVING):
        level = min(level, MEDIA_LEVEL)
    plain_too = True
    if dictionary is not None and len(raw) >= 64 and len(probe) < len(raw) * TEXT_LIKE:
        dict_id, dict_bytes = dictionary
        # The costly level runs once: with the dictionary when it helps at the probe's level
        # (on the corpus and generated lessons it then always won at level 19 too), and
        # plain as well only when it does not.
        plain_too = len(_compressor(PROBE_LEVEL, dict_id, dict_bytes).compress(raw)) > len(probe)
        packed = _compressor(level, dict_id, dict_bytes).compress(raw)
        if len(packed) + 33 < len(best):
            best = bytes([ZSTD_DICT]) + bytes.fromhex(dict_id) + packed
    if plain_too and level > PROBE_LEVEL:
        plain = _compressor(level, None, None).compress(raw)
        if len(plain) + 1 < len(best):
            best = bytes([ZSTD]) + plain
    return best


def object_format(obj: bytes | memoryview) -> int:
    """The format byte of a stored object, checked to be one this version understands."""
    if len(obj) == 0:
        raise FormatError("stored object is empty (no format byte)")
    fmt = obj[0]
    if fmt not in FORMATS:
        raise FormatError(f"stored object has unknown format byte 0x{fmt:02x}; update satchel")
    return fmt


def object_dictionary(obj: bytes | memoryview) -> str | None:
    """The id of the dictionary an object needs, if any."""
    if object_format(obj) != ZSTD_DICT:
        return None
    if len(obj) < 33:
        raise FormatError("zstd+dict object is shorter than its dictionary id")
    return bytes(memoryview(obj)[1:33]).hex()


def _frame(obj: bytes | memoryview) -> memoryview:
    return memoryview(obj)[33:] if obj[0] == ZSTD_DICT else memoryview(obj)[1:]


def declared_length(obj: bytes | memoryview) -> int:
    """The uncompressed length an object declares (frame header), without decompressing."""
    fmt = object_format(obj)
    if fmt == RAW:
        return len(obj) - 1
    object_dictionary(obj)
    try:
        size = zstandard.get_frame_parameters(_frame(obj)).content_size
    except zstandard.ZstdError as exc:
        raise FormatError(f"zstd object has a corrupt frame header ({exc})") from None
    if size >= zstandard.CONTENTSIZE_ERROR:
        raise FormatError("zstd object does not declare its content size")
    return int(size)


def decode_object(
    obj: bytes | memoryview, expected_length: int, dictionaries: DictLookup | None = None
) -> bytes:
    """Return the uncompressed bytes of ``obj``, which must be exactly ``expected_length`` long."""
    if not 0 <= expected_length <= MAX_OBJECT_LENGTH:
        raise FormatError(f"object length {expected_length} is outside 0..{MAX_OBJECT_LENGTH}")
    fmt = object_format(obj)
    if fmt == RAW:
        if len(obj) - 1 != expected_length:
            raise IntegrityError(f"raw object is {len(obj) - 1} bytes, expected {expected_length}")
        return bytes(memoryview(obj)[1:])
    dict_id = object_dictionary(obj)
    frame = _frame(obj)
    check_frame(frame, expected_length, "zstd object")
    zdict = None
    if dict_id is not None:
        if dictionaries is None:
            raise FormatError("object needs a dictionary but none can be looked up here")
        data = dictionaries(dict_id)
        if len(data) > MAX_DICTIONARY:
            raise FormatError(f"dictionary {dict_id[:16]}... is over {MAX_DICTIONARY} bytes")
        zdict = _zdict(dict_id, data, DEFAULT_LEVEL)
    return decompress_checked(frame, expected_length, zdict, "zstd object")


def check_frame(
    frame: bytes | memoryview, expected_length: int, what: str, max_window: int = MAX_WINDOW
) -> None:
    """Refuse a frame before decompressing it: its declared size must be the expected one
    and its window at most MAX_WINDOW. python-zstandard does not apply ``max_window_size``
    to single-pass decompression of a frame that declares its size, so this is the guard."""
    if not 0 <= expected_length <= MAX_OBJECT_LENGTH:
        raise FormatError(f"object length {expected_length} is outside 0..{MAX_OBJECT_LENGTH}")
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{what} has a corrupt frame header ({exc})") from None
    if params.content_size != expected_length:
        raise IntegrityError(
            f"{what} declares {params.content_size} bytes, the manifest says {expected_length}"
        )
    if params.window_size > max_window:
        raise FormatError(f"{what} window {params.window_size} exceeds {max_window} bytes")


def decompress_checked(
    frame: bytes | memoryview,
    expected_length: int,
    zdict: zstandard.ZstdCompressionDict | None,
    what: str,
    max_window: int = MAX_WINDOW,
) -> bytes:
    """Decompress one frame already passed by :func:`check_frame`, output capped."""
    try:
        dctx = zstandard.ZstdDecompressor(dict_data=zdict, max_window_size=max_window)
        out = dctx.decompress(frame, max_output_size=expected_length, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{what} does not decompress ({exc})") from None
    if len(out) != expected_length:
        raise IntegrityError(f"{what} gave {len(out)} bytes, expected {expected_length}")
    return out


def verify_object(
    obj: bytes | memoryview,
    expected_id: str,
    expected_length: int,
    dictionaries: DictLookup | None = None,
) -> bytes:
    """Decode ``obj`` and check its SHA-256 against ``expected_id``; return the chunk bytes."""
    data = decode_object(obj, expected_length, dictionaries)
    actual = chunk_id(data)
    if actual != expected_id:
        raise IntegrityError(f"chunk {expected_id[:16]}... arrived with hash {actual[:16]}...")
    return data


def identify_object(
    obj: bytes | memoryview, max_length: int, dictionaries: DictLookup | None = None
) -> tuple[str, int]:
    """Decode an object of unknown length (at most ``max_length``) and return (id, length).

    Used where no manifest says the length yet, e.g. a server receiving an upload; the length
    comes from the frame header, so it is bounded before anything is allocated.
    """
    length = declared_length(obj)
    if length > max_length:
        raise FormatError(f"object holds {length:,} bytes, over the {max_length:,}-byte limit")
    return chunk_id(decode_object(obj, length, dictionaries)), length
