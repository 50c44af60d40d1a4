"""Verify objects as they arrive and keep each one the moment it checks out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from satchel.content.chunking import chunk_id
from satchel.content.errors import FormatError, IntegrityError
from satchel.content.objects import encode_object, object_dictionary, verify_object

from .delta import FileReader, is_range_delta, undo_range_delta
from .pack import PackFrame
from .store import ChunkStore, store_lookup

Progress = Callable[[int, int], None]
"""Called with (objects stored so far, bytes of stored objects so far)."""

# A chunk that arrived as a delta is re-encoded for the disk; a fast level keeps a laptop's
# CPU free, and disk matters less than the link.
STORE_LEVEL = 3


def receive_frames(
    frames: Iterable[PackFrame],
    expected: Mapping[str, int],
    store: ChunkStore,
    *,
    dictionaries: Mapping[str, int] | None = None,
    base: FileReader | None = None,
    progress: Progress | None = None,
) -> int:
    """Verify each frame against ``expected`` (id -> length) and store it; returns the count.

    A frame that was not asked for, does not decode, or hashes to another id stops the
    transfer with an error; every frame before it is already stored, so a retry resumes.
    Range deltas are undone against ``base`` (the version the request named) and stored as
    ordinary objects.
    """
    lookup = store_lookup(store, dictionaries or {})
    count = 0
    total = 0
    for fr in frames:
        length = expected.get(fr.chunk_id)
        if length is None:
            raise IntegrityError(f"pack sent chunk {fr.chunk_id[:16]}..., which was not asked for")
        if is_range_delta(fr.obj):
            data = undo_range_delta(fr.obj, length, base)
            if chunk_id(data) != fr.chunk_id:
                raise IntegrityError(f"chunk {fr.chunk_id[:16]}... does not match after its delta")
            store.put(fr.chunk_id, encode_object(data, level=STORE_LEVEL))
        else:
            dict_id = object_dictionary(fr.obj)
            if dict_id is not None and not store.has(dict_id):
                raise FormatError(f"chunk {fr.chunk_id[:16]}... arrived before its dictionary")
            verify_object(fr.obj, fr.chunk_id, length, lookup)
            store.put(fr.chunk_id, fr.obj)
        count += 1
        total += len(fr.obj)
        if progress is not None:
            progress(count, total)
    return count
