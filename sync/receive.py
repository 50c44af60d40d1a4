"""Verify objects as they arrive and keep each one the moment it checks out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from satchel.content.errors import FormatError, IntegrityError
from satchel.content.objects import decode_object, object_dictionary, verify_object

from .pack import PackFrame
from .store import ChunkStore

Progress = Callable[[int, int], None]
"""Called with (objects stored so far, bytes of stored objects so far)."""


def store_lookup(store: ChunkStore, expected: Mapping[str, int]) -> Callable[[str], bytes]:
    """A dictionary lookup that only serves dictionaries the signed manifest lists."""

    def lookup(dict_id: str) -> bytes:
        if dict_id not in expected:
            raise FormatError(
                f"object needs dictionary {dict_id[:16]}..., which the manifest lacks"
            )
        return decode_object(store.get(dict_id), expected[dict_id])

    return lookup


def receive_frames(
    frames: Iterable[PackFrame],
    expected: Mapping[str, int],
    store: ChunkStore,
    *,
    dictionaries: Mapping[str, int] | None = None,
    progress: Progress | None = None,
) -> int:
    """Verify each frame against ``expected`` (id -> length) and store it; returns the count.

    A frame that was not asked for, does not decode, or hashes to another id stops the
    transfer with an error; every frame before it is already stored, so a retry resumes.
    """
    lookup = store_lookup(store, dictionaries or {})
    count = 0
    total = 0
    for fr in frames:
        length = expected.get(fr.chunk_id)
        if length is None:
            raise IntegrityError(f"pack sent chunk {fr.chunk_id[:16]}..., which was not asked for")
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
