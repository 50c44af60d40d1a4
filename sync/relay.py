"""A local store served to other laptops with the server's read protocol (``satchel share``).

A relay is a cache, not an authority: it serves the release index and manifests exactly as
the publisher signed them, and clients verify them against the publisher's key as they would
from the origin. So a relay needs no key and no trust of its own, and a tampered relay can
only fail a sync, never change what a student sees.

What it can serve is what it holds: a version is offered only when every object of it is
here (a partial or selective store answers 404 for the rest, so a client falls back or
reports it). Ready-made packs (``/v1/deltas``) are made on demand from the two versions and
kept in a small memory cache, so a classroom of laptops asking for the same update costs
the relay's CPU once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator

from cachetools import LRUCache
from satchel.content.delta import encode_manifest_delta
from satchel.content.errors import NotFoundError, SatchelError
from satchel.content.index import parse_index
from satchel.content.manifest import Manifest, check_chunk_id
from satchel.content.objects import document_level, encode_object

from .delta import delta_objects, static_pack
from .local import LocalStore
from .pack import write_pack
from .plan import decode_want, missing
from .serving import (
    PackAnswer,
    PackRequest,
    PackSize,
    batched,
    body_etag,
    etag,
    manifest_delta_etag,
    pack_length,
    stored_pack,
)
from .store import store_lookup

CACHE_BYTES = 64 * 1024 * 1024  # made packs and encoded manifests kept in memory
MAX_CACHED_ITEM = 16 * 1024 * 1024


class StoreSource:
    """Answers protocol reads from a :class:`LocalStore` (no database, no signing key)."""

    def __init__(self, store: LocalStore, *, cache_bytes: int = CACHE_BYTES) -> None:
        self.store = store
        # A classroom asks for the same update many times: keep made answers, bounded in bytes.
        self._cache: LRUCache[tuple[str, ...], bytes] = LRUCache(cache_bytes, getsizeof=len)
        self._lock = threading.Lock()

    # -- index and catalog -------------------------------------------------------------------
    def index(self, bundle: str, locale: str) -> tuple[bytes, str]:
        raw = self.store.held_index(bundle, locale)
        if raw is None:
            raise NotFoundError(f"this relay holds no whole version of {bundle}/{locale}")
        return raw, body_etag(raw)

    def catalog(self) -> list[dict[str, object]]:
        """What the relay holds, whole, per bundle line (for ``satchel peers`` and people)."""
        out: list[dict[str, object]] = []
        for ref in self.store.refs():
            try:
                manifest = self.store.load_manifest(ref.manifest)
            except SatchelError:
                continue
            out.append(
                {
                    "bundle": ref.bundle,
                    "locale": ref.locale,
                    "title": manifest.title,
                    "latest_version": ref.version,
                    "complete": self.holds(manifest),
                }
            )
        return out

    def offered(self) -> list[dict[str, object]]:
        """The lines this relay serves, as a peer list shows them."""
        out: list[dict[str, object]] = []
        for bundle, locale in self.store.indexed_lines():
            raw = self.store.held_index(bundle, locale)
            if raw is None:
                continue
            try:
                entry = parse_index(raw)[1].line
            except SatchelError:
                continue  # a damaged copy only costs this line's mention
            if not entry.removed:
                out.append({"bundle": bundle, "locale": locale, "version": entry.version})
        return out

    # -- manifests and objects ---------------------------------------------------------------
    def manifest(self, manifest_id: str) -> Manifest:
        """A manifest held here, re-verified against the pinned key."""
        return self.store.load_manifest(check_chunk_id(manifest_id))

    def holds(self, manifest: Manifest) -> bool:
        return not missing(manifest.distinct_chunks(), self.store.objects)

    def manifest_response(
        self, manifest_id: str, base_id: str | None, *, long: bool = False
    ) -> tuple[bytes, str]:
        """The manifest as a stored object, or as a delta against ``base_id`` when smaller."""
        check_chunk_id(manifest_id)
        data = self.store.manifest_bytes(manifest_id)
        if data is None:
            raise NotFoundError(f"manifest {manifest_id[:16]}... is not on this relay")
        stored = self._cached(
            ("manifest", manifest_id),
            lambda: encode_object(data, level=document_level(len(data))),
        )
        if base_id is None:
            return stored, etag(manifest_id)
        base = self.store.manifest_bytes(check_chunk_id(base_id))
        if base is None:
            return stored, etag(manifest_id)
        delta = self._cached(
            ("manifest", manifest_id, base_id, "long" if long else ""),
            lambda: encode_manifest_delta(data, base_id, base, long=long),
        )
        if len(delta) >= len(stored):
            return stored, etag(manifest_id)
        return delta, manifest_delta_etag(manifest_id, base_id, long=long)

    def get_object(self, cid: str) -> bytes:
        return self.store.objects.get(check_chunk_id(cid))

    # -- packs -------------------------------------------------------------------------------
    def _selected(self, request: PackRequest) -> tuple[Manifest | None, list[tuple[str, int]]]:
        """(the manifest, if named; the (id, length or 0) of each object asked for)."""
        if request.manifest is not None:
            assert request.want is not None
            manifest = self.manifest(request.manifest)
            return manifest, decode_want(manifest.distinct_chunks(), request.want)
        assert request.chunks is not None
        return None, [(cid, 0) for cid in request.chunks]

    def _whole_base(self, base_id: str | None) -> Manifest | None:
        """The client's version, if this relay holds it whole (deltas read its files)."""
        if base_id is None:
            return None
        try:
            base = self.manifest(base_id)
        except (NotFoundError, SatchelError):
            return None
        return base if self.holds(base) else None

    def _check_held(self, selected: list[tuple[str, int]]) -> None:
        absent = [cid for cid, _ in selected if not self.store.objects.has(cid)]
        if absent:
            raise NotFoundError(
                f"this relay lacks {len(absent)} of the {len(selected)} objects asked for"
            )

    def pack(self, request: PackRequest) -> PackAnswer:
        manifest, selected = self._selected(request)
        self._check_held(selected)
        base = self._whole_base(request.base)
        objects = self.store.objects
        if manifest is None or base is None:
            ids = [cid for cid, _ in selected]
            length = pack_length(objects.stored_size(cid) for cid in ids)
            return PackAnswer(stored_pack(ids, objects.get), length, len(ids))
        assert request.manifest is not None and request.base is not None
        key = ("pack", request.manifest, request.base, _digest(request.want or b""))
        made = self._get(key)
        if made is not None:
            return PackAnswer(iter([made]), len(made), len(selected))
        lookup = store_lookup(objects, {**dict(base.dictionaries), **dict(manifest.dictionaries)})
        pieces = write_pack(delta_objects(manifest, base, selected, objects, lookup))
        return PackAnswer(batched(self._keeping(key, pieces)), None, len(selected))

    def pack_size(self, request: PackRequest) -> PackSize:
        """The exact length :meth:`pack` would send (a pack of deltas is made to know it)."""
        answer = self.pack(request)
        if answer.length is not None:
            # Nothing was read yet: the generator is simply dropped.
            return PackSize(answer.objects, answer.length)
        return PackSize(answer.objects, sum(len(piece) for piece in answer.pieces))

    def _keeping(self, key: tuple[str, ...], pieces: Iterable[bytes]) -> Iterator[bytes]:
        """Pass ``pieces`` on, and cache them whole when the stream ends and was small."""
        kept: list[bytes] | None = []
        size = 0
        for piece in pieces:
            if kept is not None:
                kept.append(piece)
                size += len(piece)
                if size > MAX_CACHED_ITEM:
                    kept = None
            yield piece
        if kept is not None:
            self._put(key, b"".join(kept))

    def static_delta(self, from_id: str, to_id: str) -> bytes:
        """The ready-made pack from one held version to another, made once and cached."""
        key = ("delta", check_chunk_id(from_id), check_chunk_id(to_id))
        made = self._get(key)
        if made is not None:
            return made
        new = self.manifest(to_id)
        base = self._whole_base(from_id)
        if base is None or not self.holds(new) or base.bundle != new.bundle:
            raise NotFoundError("this relay has no ready-made pack between those versions")
        lookup = store_lookup(
            self.store.objects, {**dict(base.dictionaries), **dict(new.dictionaries)}
        )
        made = static_pack(new, base, self.store.objects, lookup)[0]
        self._put(key, made)
        return made

    def static_delta_size(self, from_id: str, to_id: str) -> int:
        return len(self.static_delta(from_id, to_id))

    def _get(self, key: tuple[str, ...]) -> bytes | None:
        with self._lock:
            return self._cache.get(key)

    def _put(self, key: tuple[str, ...], value: bytes) -> None:
        if len(value) <= min(MAX_CACHED_ITEM, self._cache.maxsize):
            with self._lock:
                self._cache[key] = value

    def _cached(self, key: tuple[str, ...], make: Callable[[], bytes]) -> bytes:
        value = self._get(key)
        if value is None:
            value = make()
            self._put(key, value)
        return value


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
