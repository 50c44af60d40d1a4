"""Read one file of a stored version straight from the chunk store: no checkout, no copy.

A file is the concatenation of its chunks (in manifest order). :class:`StoredFile` serves any
byte range of it by decoding only the chunks that range touches, and re-verifies each chunk
against its id as it is read: the disk is not trusted, so a rotten block raises
:class:`~satchel.content.errors.IntegrityError` (or FormatError) before a single wrong byte is
yielded. Memory is bounded by one chunk, whatever the file's size.

Lookups go through the signed manifest only: :func:`find_file` matches a path string against
the manifest's (sorted, already checked) file list, so a caller never joins a URL path onto a
folder on disk.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from satchel.content.errors import NotFoundError, UsageError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import verify_object

from .store import ChunkStore, Holds, store_lookup


class NotOnLaptopError(NotFoundError):
    """The manifest lists the file but some of its chunks were never synced (``--only`` or an
    interrupted sync): the next sync brings them."""


def find_file(manifest: Manifest, path: str) -> FileEntry | None:
    """The entry for ``path`` exactly as the manifest lists it, or None."""
    files = manifest.files
    i = bisect.bisect_left(files, path, key=lambda f: f.path)
    if i < len(files) and files[i].path == path:
        return files[i]
    return None


def missing_chunks(entry: FileEntry, store: Holds) -> int:
    """How many of the file's chunks the store lacks (a selective or interrupted sync)."""
    return sum(1 for cid, _length in entry.chunks if not store.has(cid))


def file_etag(entry: FileEntry) -> str:
    """A strong ETag from the chunk ids: equal content gives equal tags across versions."""
    h = hashlib.sha256()
    for cid, length in entry.chunks:
        h.update(f"{cid}:{length};".encode("ascii"))
    return '"' + h.hexdigest()[:32] + '"'


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a manifest, read from ``store`` chunk by chunk, each chunk verified."""

    entry: FileEntry
    store: ChunkStore
    manifest: Manifest

    @property
    def size(self) -> int:
        return self.entry.size

    def is_complete(self) -> bool:
        return missing_chunks(self.entry, self.store) == 0

    def _chunk(self, cid: str, length: int) -> bytes:
        if not self.store.has(cid):
            raise NotOnLaptopError(f"{self.entry.path} is not on this laptop yet; sync to get it")
        lookup = store_lookup(self.store, dict(self.manifest.dictionaries))
        return verify_object(self.store.get(cid), cid, length, lookup)

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``start`` .. ``end`` (exclusive; None: to the end), verified.

        Out-of-bounds ranges are clamped to the file; callers validate Range headers first.
        """
        stop = self.size if end is None else min(end, self.size)
        start = max(0, start)
        offset = 0
        for cid, length in self.entry.chunks:
            chunk_end = offset + length
            if chunk_end > start and offset < stop:
                data = self._chunk(cid, length)
                yield data[max(start - offset, 0) : min(stop, chunk_end) - offset]
            if chunk_end >= stop:
                break
            offset = chunk_end

    def read(self, limit: int | None = None) -> bytes:
        """The whole file (for rendering text); refuses files over ``limit`` bytes."""
        if limit is not None and self.size > limit:
            raise UsageError(
                f"{self.entry.path} is {self.size:,} bytes, over the {limit:,}-byte limit for"
                " a page"
            )
        return b"".join(self.iter_range())


def open_file(manifest: Manifest, store: ChunkStore, path: str) -> StoredFile:
    """The file at ``path`` of ``manifest``; NotFoundError if the manifest does not list it."""
    entry = find_file(manifest, path)
    if entry is None:
        raise NotFoundError(f"{path[:200]!r} is not in version {manifest.version}")
    return StoredFile(entry, store, manifest)
