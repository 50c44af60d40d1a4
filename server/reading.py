"""The read protocol over the server's database and store (a :class:`ReadSource`).

The database says which manifests are published, which objects are complete and how large
each stored object is (so a pack of stored objects announces its exact length before it is
read); the store holds the bytes. Made answers that every laptop on version N asks for (a
parsed manifest, a manifest delta) are kept in small LRU caches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial

from cachetools import LRUCache
from satchel.content.delta import encode_manifest_delta
from satchel.content.errors import NotFoundError
from satchel.content.manifest import Manifest, check_chunk_id, parse_manifest
from satchel.content.objects import DictLookup, decode_object
from satchel.sync.delta import delta_objects
from satchel.sync.pack import write_pack
from satchel.sync.plan import decode_want
from satchel.sync.serving import (
    PackAnswer,
    PackRequest,
    PackSize,
    batched,
    etag,
    manifest_delta_etag,
    pack_length,
    stored_pack,
)
from satchel.sync.store import ChunkStore, store_lookup
from sqlmodel import col, select

from .database import Database
from .db import Chunk, StaticDelta, Version

CACHED_MANIFESTS = 32
CACHED_MANIFEST_DELTAS = 32
# Built range deltas, by (new manifest, base manifest, chunk): 500 laptops a few versions
# behind ask for the same few; zstd -19 per chunk at request time cost ~110 ms of CPU a sync.
CACHED_DELTA_BYTES = 32 * 1024 * 1024


class ServerSource:
    def __init__(
        self, db: Database, store: ChunkStore, index: Callable[[str, str], tuple[bytes, str]]
    ) -> None:
        self.db = db
        self.store = store
        self._index = index
        self._lock = threading.Lock()
        self._manifests: LRUCache[str, Manifest] = LRUCache(CACHED_MANIFESTS)
        self._manifest_deltas: LRUCache[tuple[str, str, bool], bytes] = LRUCache(
            CACHED_MANIFEST_DELTAS
        )
        self._deltas: LRUCache[tuple[str, str, str], bytes] = LRUCache(
            CACHED_DELTA_BYTES, getsizeof=lambda delta: len(delta) + 1
        )

    def index(self, bundle: str, locale: str) -> tuple[bytes, str]:
        return self._index(bundle, locale)

    # -- manifests ---------------------------------------------------------------------------
    def _version(self, manifest_id: str) -> Version:
        check_chunk_id(manifest_id)
        with self.db.session() as s:
            v = s.exec(select(Version).where(Version.manifest_id == manifest_id)).first()
        if v is None:
            raise NotFoundError(f"no manifest {manifest_id[:16]}...")
        return v

    def manifest_object(self, manifest_id: str) -> bytes:
        """A published manifest as a stored object."""
        self._version(manifest_id)
        return self.store.get(manifest_id)

    def manifest_bytes(self, manifest_id: str, size: int) -> bytes:
        return decode_object(self.store.get(manifest_id), size)

    def manifest(self, manifest_id: str) -> Manifest:
        """A published manifest, parsed (cached: packs ask for them often)."""
        check_chunk_id(manifest_id)
        with self._lock:
            hit = self._manifests.get(manifest_id)
        if hit is not None:
            return hit
        v = self._version(manifest_id)
        _env, manifest = parse_manifest(self.manifest_bytes(manifest_id, v.manifest_size))
        with self._lock:
            self._manifests[manifest_id] = manifest
        return manifest

    def remember(self, manifest_id: str, manifest: Manifest) -> None:
        """Cache a manifest this process assembled and signed itself (no need to parse it)."""
        with self._lock:
            self._manifests[manifest_id] = manifest

    def manifest_response(
        self, manifest_id: str, base_id: str | None, *, long: bool = False
    ) -> tuple[bytes, str]:
        """A manifest as a stored object, or as a delta against ``base_id`` when smaller."""
        stored = self.manifest_object(manifest_id)
        if base_id is None:
            return stored, etag(manifest_id)
        check_chunk_id(base_id)
        with self.db.session() as s:
            new_v = s.exec(select(Version).where(Version.manifest_id == manifest_id)).first()
            base_v = s.exec(select(Version).where(Version.manifest_id == base_id)).first()
        if new_v is None or base_v is None:
            return stored, etag(manifest_id)
        # Every laptop on version N asks for the same delta: make it once (25-35 ms of zstd
        # for a 470-file manifest), not once per client.
        key = (manifest_id, base_id, long)
        with self._lock:
            delta = self._manifest_deltas.get(key)
        if delta is None:
            delta = encode_manifest_delta(
                self.manifest_bytes(manifest_id, new_v.manifest_size),
                base_id,
                self.manifest_bytes(base_id, base_v.manifest_size),
                long=long,
            )
            with self._lock:
                self._manifest_deltas[key] = delta
        if len(delta) >= len(stored):
            return stored, etag(manifest_id)
        return delta, manifest_delta_etag(manifest_id, base_id, long=long)

    # -- objects -----------------------------------------------------------------------------
    def get_object(self, cid: str) -> bytes:
        return self.store.get(check_chunk_id(cid))

    def lookup_for(self, *manifests: Manifest) -> DictLookup:
        """Decode with the dictionaries these signed manifests list, and no others."""
        listed: dict[str, int] = {}
        for m in manifests:
            listed.update(m.dictionaries)
        return store_lookup(self.store, listed)

    def stored_sizes(self, ids: Sequence[str]) -> dict[str, int]:
        """The stored size of each id that is completely stored (absent ids are left out)."""
        out: dict[str, int] = {}
        with self.db.session() as s:
            for i in range(0, len(ids), 500):
                batch = ids[i : i + 500]
                # Columns, not Chunk objects: a version of 100,000 files asks for 100,000
                # rows, and building ORM objects for them was most of the time.
                query = select(Chunk.id, Chunk.stored_size).where(col(Chunk.id).in_(batch))
                out.update(s.exec(query).all())
        return out

    # -- ready-made packs ------------------------------------------------------------------
    def _static_row(self, from_manifest: str, to_manifest: str) -> StaticDelta:
        check_chunk_id(from_manifest)
        check_chunk_id(to_manifest)
        with self.db.session() as s:
            row = s.get(StaticDelta, (from_manifest, to_manifest))
        if row is None:
            raise NotFoundError("no ready-made delta between these versions; use POST /v1/pack")
        return row

    def static_delta(self, from_id: str, to_id: str) -> bytes:
        row = self._static_row(from_id, to_id)
        # Content-addressed: the store may already hold these bytes in another encoding.
        return decode_object(self.store.get(row.object_id), row.size)

    def static_delta_size(self, from_id: str, to_id: str) -> int:
        """The ready-made pack's byte length, unread (for HEAD and dry runs)."""
        return self._static_row(from_id, to_id).size

    # -- packs -------------------------------------------------------------------------------
    def plan(self, request: PackRequest) -> list[tuple[str, int]]:
        """The objects a request selects, each once, with their stored sizes."""
        if request.manifest is not None:
            assert request.want is not None
            distinct = self.manifest(request.manifest).distinct_chunks()
            ids = [cid for cid, _ in decode_want(distinct, request.want)]
        else:
            assert request.chunks is not None
            ids = list(request.chunks)
        sizes = self.stored_sizes(ids)
        absent = [cid for cid in ids if cid not in sizes]
        if absent:
            raise NotFoundError(
                f"{len(absent)} requested chunks are not here, e.g. {absent[0][:16]}..."
            )
        return [(cid, sizes[cid]) for cid in ids]

    def pack(self, request: PackRequest) -> PackAnswer:
        """Stored objects (length known before the first byte), or, with a ``base`` that this
        server published, deltas against it where smaller (length known at the end)."""
        plan = self.plan(request)
        ids = [cid for cid, _ in plan]
        whole = PackAnswer(
            stored_pack(ids, self.store.get), pack_length(size for _, size in plan), len(plan)
        )
        if request.base is None or request.manifest is None:
            return whole
        new = self.manifest(request.manifest)
        try:
            base = self.manifest(request.base)
        except NotFoundError:  # a version from another publisher or server: no deltas then
            return whole
        lengths = dict(new.distinct_chunks())
        wanted = [(cid, lengths[cid]) for cid in ids]
        objects = delta_objects(
            new,
            base,
            wanted,
            self.store,
            self.lookup_for(new, base),
            made=partial(self._made, request.manifest, request.base),
        )
        return PackAnswer(batched(write_pack(objects)), None, len(plan))

    def _made(self, new_id: str, base_id: str, cid: str, make: Callable[[], bytes]) -> bytes:
        """A built delta from the cache, or built now and kept (content-addressed keys: a
        cached delta can never be stale)."""
        key = (new_id, base_id, cid)
        with self._lock:
            delta = self._deltas.get(key)
        if delta is None:
            delta = make()
            with self._lock:
                self._deltas[key] = delta
        return delta

    def pack_size(self, request: PackRequest) -> PackSize:
        """What a pack request would send, unsent. A pack of deltas has no length until it is
        made, so it is made here and counted."""
        answer = self.pack(request)
        if answer.length is not None:
            return PackSize(answer.objects, answer.length)
        return PackSize(answer.objects, sum(len(piece) for piece in answer.pieces))
