"""Deltas against the version a client already holds: choosing references, reading them back.

For each chunk a client lacks, the server looks for the same path in the client's *base*
version (named in the request) and, if found, sends the chunk as a zstd delta against that
file: the whole old file when it is at most 1 MiB, else a 1 MiB window around the same
offset. Whole-file references matter: ``bench/delta_refs.py`` shows shell-novice's re-packed
zip (members reordered) costs 1.6 KB against the whole old file but 5.7 KB against a 256 KiB
window (129 KB as stored objects). A delta is sent only when smaller than the stored object.

Both sides read references with :class:`FileReader`, from chunks they hold and verified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from satchel.content.delta import (
    DELTA_RANGE,
    MAX_REFERENCE,
    RangeRef,
    decode_delta,
    encode_range_delta,
    range_ref,
)
from satchel.content.errors import FormatError
from satchel.content.manifest import Manifest
from satchel.content.objects import DEFAULT_LEVEL, DictLookup, decode_object

from .pack import pack_bytes
from .store import ChunkStore


def path_index(manifest: Manifest) -> dict[str, int]:
    return {entry.path: i for i, entry in enumerate(manifest.files)}


def choose_reference(
    path: str, offset: int, length: int, base: Manifest, base_paths: dict[str, int]
) -> RangeRef | None:
    """Where in ``base`` to look for bytes like chunk ``[offset, offset+length)`` of ``path``."""
    index = base_paths.get(path)
    if index is None:
        return None
    size = base.files[index].size
    if size == 0:
        return None
    if size <= MAX_REFERENCE:
        return RangeRef(index, 0, size)
    start = min(max(offset + length // 2 - MAX_REFERENCE // 2, 0), size - MAX_REFERENCE)
    return RangeRef(index, start, MAX_REFERENCE)


class FileReader:
    """Reads byte ranges of a manifest's files out of a chunk store."""

    def __init__(self, manifest: Manifest, store: ChunkStore, lookup: DictLookup) -> None:
        self.manifest = manifest
        self.store = store
        self.lookup = lookup
        self._last: tuple[RangeRef, bytes] | None = None

    def read(self, ref: RangeRef) -> bytes:
        if self._last is not None and self._last[0] == ref:
            return self._last[1]  # consecutive changed chunks of one file share a window
        if not 0 <= ref.file < len(self.manifest.files):
            raise FormatError(f"delta names file {ref.file}; the base version has fewer")
        entry = self.manifest.files[ref.file]
        end = ref.offset + ref.length
        if end > entry.size:
            raise FormatError(f"delta reference runs past the end of {entry.path!r}")
        out = bytearray()
        pos = 0
        for cid, length in entry.chunks:
            if pos + length > ref.offset and pos < end:
                data = decode_object(self.store.get(cid), length, self.lookup)
                out += data[max(ref.offset - pos, 0) : end - pos]
            pos += length
            if pos >= end:
                break
        result = bytes(out)
        self._last = (ref, result)
        return result


def first_places(manifest: Manifest) -> dict[str, tuple[str, int, int]]:
    """For each chunk id: (path, offset, length) of its first appearance."""
    places: dict[str, tuple[str, int, int]] = {}
    for entry in manifest.files:
        offset = 0
        for cid, length in entry.chunks:
            places.setdefault(cid, (entry.path, offset, length))
            offset += length
    return places


Made = Callable[[str, Callable[[], bytes]], bytes]
"""Memoizes the delta of one chunk id (``made(cid, make)``) for one (new, base) pair; ``b""``
stands for "the stored object is smaller"."""


def delta_objects(
    new: Manifest,
    base: Manifest,
    wanted: Iterable[tuple[str, int]],
    store: ChunkStore,
    lookup: DictLookup,
    *,
    level: int = DEFAULT_LEVEL,
    made: Made | None = None,
) -> Iterator[tuple[str, bytes]]:
    """(id, object) for each wanted id: a range delta against ``base`` where that is smaller.
    With ``made``, each delta is looked up there first (a server's cache of built deltas)."""
    places = first_places(new)
    base_paths = path_index(base)
    reader = FileReader(base, store, lookup)
    for cid, length in wanted:
        stored = store.get(cid)
        place = places.get(cid)
        ref = choose_reference(*place, base, base_paths) if place is not None else None
        if ref is None:
            yield cid, stored
            continue

        def make(stored: bytes = stored, length: int = length, ref: RangeRef = ref) -> bytes:
            data = decode_object(stored, length, lookup)
            delta = encode_range_delta(data, ref, reader.read(ref), level)
            return delta if len(delta) < len(stored) else b""

        delta = make() if made is None else made(cid, make)
        yield cid, delta or stored


def static_pack(
    new: Manifest, base: Manifest, store: ChunkStore, lookup: DictLookup
) -> tuple[bytes, int]:
    """The pack a client holding exactly ``base`` needs for ``new``; returns (pack, objects)."""
    held = {cid for cid, _ in base.distinct_chunks()}
    wanted = [(cid, n) for cid, n in new.distinct_chunks() if cid not in held]
    return pack_bytes(delta_objects(new, base, wanted, store, lookup)), len(wanted)


def is_range_delta(obj: bytes) -> bool:
    return len(obj) > 0 and obj[0] == DELTA_RANGE


def undo_range_delta(obj: bytes, length: int, reader: FileReader | None) -> bytes:
    """The chunk bytes a range delta encodes (verify the hash afterwards)."""
    if reader is None:
        raise FormatError("a delta arrived but no base version was named")
    return decode_delta(obj, reader.read(range_ref(obj)), length)
