"""Content-addressed chunk stores: the :class:`ChunkStore` protocol and two implementations.

A store keeps *stored objects* (see :mod:`satchel.content.objects`) under their chunk id. It
does not verify: whoever puts an object has verified it against a signed manifest first
(:mod:`satchel.sync.receive`). Objects are written once; writing the same id again is a no-op.
Every implementation passes the one conformance suite in ``tests/test_store_conformance.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from satchel.content.errors import FormatError, NotFoundError, StoreError
from satchel.content.manifest import check_chunk_id
from satchel.content.objects import decode_object

from .fsutil import fsync_dir, write_atomic

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


class FolderChunkStore:
    """Objects as files ``ROOT/ab/abcdef...`` (fan-out by the first byte of the id).

    Each write goes to a temp file in the same folder, is fsynced, then renamed into place and
    the folder fsynced, so a power cut leaves either no object or the whole object. A
    ``store.json`` at the root records the layout version.
    """

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self._root = os.fspath(root)
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

    def _path(self, cid: str) -> Path:
        check_chunk_id(cid)
        return self.root / cid[:2] / cid

    def has(self, cid: str) -> bool:
        return self._path(cid).is_file()

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
        path = self._path(cid)
        if path.is_file():
            return False
        folder = path.parent
        try:
            folder.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(obj)
                    if self.durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            if self.durable:
                fsync_dir(folder)
        except OSError as exc:
            raise StoreError(f"cannot write chunk to {self.root}: {exc.strerror}") from None
        return True

    def delete(self, cid: str) -> None:
        self._path(cid).unlink(missing_ok=True)

    def stored_size(self, cid: str) -> int:
        try:
            return self._path(cid).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"chunk {cid[:16]}... is not in the store") from None

    def __iter__(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if not f.name.startswith("."):
                        try:
                            yield check_chunk_id(f.name)
                        except FormatError:
                            continue


def store_lookup(store: ChunkStore, expected: Mapping[str, int]) -> Callable[[str], bytes]:
    """A dictionary lookup that only serves dictionaries the signed manifest lists."""

    def lookup(dict_id: str) -> bytes:
        if dict_id not in expected:
            raise FormatError(
                f"object needs dictionary {dict_id[:16]}..., which the manifest lacks"
            )
        return decode_object(store.get(dict_id), expected[dict_id])

    return lookup
