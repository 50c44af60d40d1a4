"""Content-addressed chunk stores: the :class:`ChunkStore` protocol, two implementations, and
:class:`WriteBatch`, which pays a folder store's durability once per batch of objects.

A store keeps *stored objects* (see :mod:`satchel.content.objects`) under their chunk id. It
does not verify: whoever puts an object has verified it against a signed manifest first
(:mod:`satchel.sync.receive`). Objects are written once; writing the same id again is a no-op.
Every implementation passes the one conformance suite in ``tests/test_store_conformance.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cachetools import LRUCache
from satchel.content.chunking import chunk_id
from satchel.content.errors import FormatError, IntegrityError, NotFoundError, StoreError
from satchel.content.manifest import check_chunk_id
from satchel.content.objects import decode_object

from .fsutil import write_atomic
from .syncfs import syncfs, whole_file_system

STORE_FORMAT = 1


@runtime_checkable
class ChunkStore(Protocol):
    """Where stored objects live, by chunk id (64 lowercase hex digits)."""

    def has(self, cid: str) -> bool: ...

    def get(self, cid: str) -> bytes:
        """The stored object; raises NotFoundError if absent."""
        ...

    def put(self, cid: str, obj: bytes) -> bool:
        """Store ``obj`` durably under ``cid``; False if it was already there (write-once)."""
        ...

    def delete(self, cid: str) -> None: ...

    def stored_size(self, cid: str) -> int: ...

    def __iter__(self) -> Iterator[str]: ...


class MemoryChunkStore:
    """A store in a dict: for tests and for simulated repositories."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def has(self, cid: str) -> bool:
        return cid in self._objects

    def get(self, cid: str) -> bytes:
        try:
            return self._objects[cid]
        except KeyError:
            raise NotFoundError(f"chunk {cid[:16]}... is not in the store") from None

    def put(self, cid: str, obj: bytes) -> bool:
        check_chunk_id(cid)
        with self._lock:
            if cid in self._objects:
                return False
            self._objects[cid] = bytes(obj)
            return True

    def delete(self, cid: str) -> None:
        with self._lock:
            self._objects.pop(cid, None)

    def stored_size(self, cid: str) -> int:
        return len(self.get(cid))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._objects))


class Holds(Protocol):
    """Anything that can say whether it holds an object: a chunk store, or a snapshot of one."""

    def has(self, cid: str) -> bool: ...


def held_now(store: ChunkStore) -> Holds:
    """What ``store`` holds, for asking about every object of a version: one listing of a
    folder store (:meth:`FolderChunkStore.snapshot`), the store itself otherwise."""
    return store.snapshot() if isinstance(store, FolderChunkStore) else store


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The ids a store held at one moment; answers ``has`` like the store did then."""

    ids: frozenset[str]

    def has(self, cid: str) -> bool:
        return cid in self.ids


@dataclass(frozen=True, slots=True)
class Staged:
    """An object written to a temp file beside its place, not yet committed."""

    cid: str
    tmp: str
    path: str
    size: int


_temp_names = itertools.count()
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def _create_temp(folder: str) -> tuple[int, str]:
    """A new temp file in ``folder``, open for writing, named by this process (its pid and a
    counter): tempfile.mkstemp's O_EXCL safety without its random names and file object
    (35 -> 25 us of CPU an object of 40 KB on tmpfs; a sync writes one per chunk)."""
    while True:
        tmp = f"{folder}/.tmp-{os.getpid()}-{next(_temp_names)}"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:
            continue  # left by a killed process that had this pid


# Enough concurrent fsyncs for the file system to fold them into a few journal commits.
_FSYNC_THREADS = 16


def _fsync_one(path: str, folder: bool) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: list[str], *, folders: bool = False) -> None:
    if len(paths) == 1:
        _fsync_one(paths[0], folders)
        return
    with ThreadPoolExecutor(max_workers=min(_FSYNC_THREADS, len(paths))) as pool:
        for _ in pool.map(lambda path: _fsync_one(path, folders), paths):
            pass


class FolderChunkStore:
    """Objects as files ``ROOT/ab/abcdef...`` (fan-out by the first byte of the id).

    Each write goes to a temp file in the same folder, is fsynced, then renamed into place and
    the folder fsynced, so a power cut leaves either no object or the whole object. Many
    writes can share those fsyncs (:meth:`stage`, then :meth:`commit`; see
    :class:`WriteBatch`). A ``store.json`` at the root records the layout version.
    """

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self._root = os.fspath(root)
        self._folders: set[str] = set()  # fan-out folders known to exist
        self._whole_fs: bool | None = None  # one syncfs per batch? (asked at the first)
        self.durable = durable
        config = root / "store.json"
        if config.exists():
            try:
                fmt = json.loads(config.read_text("utf-8")).get("format")
            except (ValueError, AttributeError):
                raise StoreError(f"{config} is corrupt; move it aside to rebuild") from None
            if fmt != STORE_FORMAT:
                raise StoreError(
                    f"chunk store format {fmt!r} is not {STORE_FORMAT}; update satchel"
                )
        else:
            try:
                root.mkdir(parents=True, exist_ok=True)
                write_atomic(
                    config, json.dumps({"format": STORE_FORMAT, "layout": "hex2"}).encode()
                )
            except OSError as exc:
                raise StoreError(f"cannot create chunk store at {root}: {exc.strerror}") from None

    def _path(self, cid: str) -> str:
        # A string path, not pathlib: status, gc and a sync ask about every object of a
        # version, and pathlib's joins were most of the time for 100,000 of them.
        check_chunk_id(cid)
        return f"{self._root}/{cid[:2]}/{cid}"

    def has(self, cid: str) -> bool:
        return os.path.isfile(self._path(cid))

    def get(self, cid: str) -> bytes:
        check_chunk_id(cid)
        # A string path, not pathlib: a pack reads thousands of objects and pathlib's joins
        # were a third of the server's time per object (bench/pack_throughput.py).
        try:
            with open(os.path.join(self._root, cid[:2], cid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFoundError(f"chunk {cid[:16]}... is not in the store") from None

    def put(self, cid: str, obj: bytes) -> bool:
        staged = self.stage(cid, obj)
        if staged is None:
            return False
        self.commit([staged])
        return True

    def stage(self, cid: str, obj: bytes) -> Staged | None:
        """Write ``obj`` to a temp file beside its place, not yet durable nor visible under
        its id (None if the id is already stored). :meth:`commit` makes it both."""
        path = self._path(cid)
        if os.path.isfile(path):
            return None
        folder = os.path.dirname(path)
        try:
            if folder not in self._folders:  # one mkdir per fan-out folder, not per object
                os.makedirs(folder, exist_ok=True)
                self._folders.add(folder)
            try:
                fd, tmp = _create_temp(folder)
            except FileNotFoundError:  # the folder went (a person tidied up): make it again
                os.makedirs(folder, exist_ok=True)
                fd, tmp = _create_temp(folder)
            try:
                view = memoryview(obj)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write chunk to {self.root}: {exc.strerror}") from None
        return Staged(cid, tmp, path, len(obj))

    def commit(self, staged: list[Staged]) -> None:
        """Make staged objects durable, then visible under their ids: their bytes are flushed
        together (one ``syncfs`` where it can stand for them, else concurrent fsyncs that share
        the file system's journal commits), then each is renamed into place and the folders
        are flushed the same way. An id therefore never names bytes that a power cut could
        lose; a cut before the rename loses only the temp file."""
        if not staged:
            return
        try:
            if self.durable:
                self._flush([s.tmp for s in staged])
            for s in staged:
                os.replace(s.tmp, s.path)
            if self.durable:
                self._flush(sorted({os.path.dirname(s.path) for s in staged}), folders=True)
        except OSError as exc:
            for s in staged:
                Path(s.tmp).unlink(missing_ok=True)
            raise StoreError(f"cannot write chunk to {self.root}: {exc.strerror}") from None

    def _flush(self, paths: list[str], *, folders: bool = False) -> None:
        # One syncfs for the batch where it stands for an fsync of each (sync/syncfs.py); the
        # answer is the mount's, so it is asked once per store.
        if len(paths) > 1 and self._whole_fs is None:
            self._whole_fs = whole_file_system(self._root)
        if len(paths) > 1 and self._whole_fs:
            syncfs(self._root)
        else:
            _fsync_all(paths, folders=folders)

    def delete(self, cid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(cid))

    def stored_size(self, cid: str) -> int:
        try:
            return os.stat(self._path(cid)).st_size
        except FileNotFoundError:
            raise NotFoundError(f"chunk {cid[:16]}... is not in the store") from None

    def sweep_temp(self, min_age: float = 0.0) -> int:
        """Remove the temp files writers left when they were killed mid-batch (``.tmp-*``
        beside their place, never visible under an id), those at least ``min_age`` seconds
        old; returns how many. Only a caller that knows no writer is busy (the client's
        writer lock) may pass 0; a store several servers share passes a long age."""
        removed = 0
        now = time.time()
        for sub in self.root.iterdir():
            if not (sub.is_dir() and len(sub.name) == 2) or sub.is_symlink():
                continue
            for f in sub.glob(".tmp-*"):
                try:
                    if now - f.lstat().st_mtime >= min_age:
                        f.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue  # its writer finished or another sweep took it
        return removed

    def _folders_now(self) -> list[str]:
        with os.scandir(self._root) as entries:
            return sorted(e.name for e in entries if len(e.name) == 2 and e.is_dir())

    def __iter__(self) -> Iterator[str]:
        # Plain names from os.listdir, sorted as strings: pathlib's objects and comparisons
        # were most of `gc` and `status` for 100,000 objects.
        for sub in self._folders_now():
            for name in sorted(os.listdir(f"{self._root}/{sub}")):
                if not name.startswith("."):
                    try:
                        yield check_chunk_id(name)
                    except FormatError:
                        continue

    def snapshot(self) -> Snapshot:
        """The ids stored now, from one listing of the folders (no stat per object): asking
        about all 100,000 objects of a version costs 0.05 s instead of a second."""
        ids: set[str] = set()
        for sub in self._folders_now():
            for name in os.listdir(f"{self._root}/{sub}"):
                if len(name) == 64 and not name.startswith("."):
                    ids.add(name)
        return Snapshot(frozenset(ids))

    def sizes(self) -> dict[str, int]:
        """Every stored object's id and size from one walk (one stat an object; what status
        shows, and a set to ask "is it here?" without a stat per question)."""
        out: dict[str, int] = {}
        for sub in self._folders_now():
            with os.scandir(f"{self._root}/{sub}") as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        out[check_chunk_id(entry.name)] = entry.stat(follow_symlinks=False).st_size
                    except FormatError:
                        continue  # not an object
                    except FileNotFoundError:
                        continue  # collected meanwhile
        return out


# Decoded dictionaries by id. A sync, a checkout or a page view needs the same one or two for
# every object; reading and decompressing a 112 KiB dictionary again for each 10 KB page was
# most of a first sync's verification time. Each is checked against its id before it is kept,
# so a cached dictionary can never be other bytes than its id names.
_dictionaries: LRUCache[str, bytes] = LRUCache(8)
_dictionaries_lock = threading.Lock()


def store_lookup(store: ChunkStore, expected: Mapping[str, int]) -> Callable[[str], bytes]:
    """A dictionary lookup that only serves dictionaries the signed manifest lists."""

    def lookup(dict_id: str) -> bytes:
        if dict_id not in expected:
            raise FormatError(
                f"object needs dictionary {dict_id[:16]}..., which the manifest lacks"
            )
        with _dictionaries_lock:
            data = _dictionaries.get(dict_id)
        if data is None or len(data) != expected[dict_id]:
            data = decode_object(store.get(dict_id), expected[dict_id])
            if chunk_id(data) != dict_id:
                raise IntegrityError(
                    f"dictionary {dict_id[:16]}... in the store does not match its id;"
                    " run satchel fsck --repair, then sync again"
                )
            with _dictionaries_lock:
                _dictionaries[dict_id] = data
        return data

    return lookup


# A batch ends after this many bytes or seconds, whichever comes first: a cut loses at most
# that much verified work, and durability costs a few journal commits per batch instead of
# two per object (5 ms each on an ext4 laptop disk: 50 s for 10,000 small pages).
BATCH_BYTES = 8 * 1024 * 1024
BATCH_SECONDS = 1.0


class WriteBatch:
    """A :class:`ChunkStore` over another one whose puts are made durable a batch at a time.

    Over a :class:`FolderChunkStore`, a put writes a temp file; the batch commits (fsync,
    rename, fsync folders) when it holds :data:`BATCH_BYTES` or is :data:`BATCH_SECONDS` old,
    and at :meth:`flush` or the end of the ``with`` block, even when the block fails, so
    objects verified before an error are kept. Until then its objects are visible through
    the batch (``has``, ``get``) but not under their ids in the store: the store's ids stay
    the record of what is durable, which a resumed sync asks only the rest of. Over any
    other store a put goes straight through. One batch serves one thread.
    """

    def __init__(
        self,
        store: ChunkStore,
        *,
        max_bytes: int = BATCH_BYTES,
        max_seconds: float = BATCH_SECONDS,
        on_commit: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.on_commit = on_commit
        self._folder = store if isinstance(store, FolderChunkStore) else None
        self._staged: dict[str, Staged] = {}
        self._bytes = 0
        self._since = time.monotonic()

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def has(self, cid: str) -> bool:
        return cid in self._staged or self.store.has(cid)

    def get(self, cid: str) -> bytes:
        staged = self._staged.get(cid)
        if staged is None:
            return self.store.get(cid)
        with open(staged.tmp, "rb") as f:
            return f.read()

    def put(self, cid: str, obj: bytes) -> bool:
        if self._folder is None:
            stored = self.store.put(cid, obj)
            if stored and self.on_commit is not None:
                self.on_commit([cid])
            return stored
        if cid in self._staged:
            return False
        staged = self._folder.stage(cid, obj)
        if staged is None:
            return False
        if not self._staged:
            self._since = time.monotonic()
        self._staged[cid] = staged
        self._bytes += staged.size
        if self._bytes >= self.max_bytes or time.monotonic() - self._since >= self.max_seconds:
            self.flush()
        return True

    def flush(self) -> list[str]:
        """Commit the objects staged so far; returns their ids."""
        if self._folder is None or not self._staged:
            return []
        staged = list(self._staged.values())
        self._staged.clear()
        self._bytes = 0
        self._folder.commit(staged)
        ids = [s.cid for s in staged]
        if self.on_commit is not None:
            self.on_commit(ids)
        return ids

    def delete(self, cid: str) -> None:
        staged = self._staged.pop(cid, None)
        if staged is not None:
            self._bytes -= staged.size
            Path(staged.tmp).unlink(missing_ok=True)
        self.store.delete(cid)

    def stored_size(self, cid: str) -> int:
        staged = self._staged.get(cid)
        return staged.size if staged is not None else self.store.stored_size(cid)

    def __iter__(self) -> Iterator[str]:
        yield from self._staged
        yield from (cid for cid in self.store if cid not in self._staged)
