"""A client's local store: chunks, verified manifests, the pinned key, and version refs.

Layout of ``STORE/``::

    satchel.json                  {"format": 1}
    objects/ab/abcd...            stored objects (FolderChunkStore)
    manifests/<id>                verified manifest envelopes, named by their SHA-256
    trust.json                    the pinned publisher key
    index/<bundle>/<locale>.json  the last accepted release index of each line followed
    index/<bundle>/<locale>.meta.json   its ETag and serial
    index/<bundle>/<locale>.held.json   that index as of the line's last sync that completed
                                  (a relay serves it: the version it names is whole here)
    refs/<bundle>/<locale>.json   {"version": N, "manifest": ID, "versions": {"N": ID, ...},
                                  "only": [selectors] after a selective sync}
    partial/<chunk id>            partly received objects, finished later with a Range request
                                  (at most 8; see :mod:`satchel.sync.resume`)
    search.sqlite                 the search index, derived from the kept versions
                                  (:mod:`satchel.sync.search`)
    checkouts.json                where checkouts from this store went, so gc can remove the
                                  temp folders a killed one left (see :mod:`satchel.sync.care`)

A ref is replaced with one ``os.replace``, and only after every object of the new version is
stored, so the current version switches atomically and the old one stays whole until then.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from satchel.content.errors import (
    FormatError,
    NotFoundError,
    SatchelError,
    StoreError,
    TrustError,
)
from satchel.content.manifest import Manifest, check_chunk_id, parse_manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.signing import Envelope, PublicKey, verify_envelope

from .fsutil import write_atomic
from .store import FolderChunkStore

LOCAL_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Ref:
    bundle: str
    locale: str
    version: int
    manifest: str
    versions: dict[int, str]
    only: tuple[str, ...] | None = None  # a selective sync's selectors (None: every file)


class LocalStore:
    """Everything a laptop, relay or USB-fed client keeps, in one folder."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        meta = root / "satchel.json"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if meta.exists():
                fmt = self._json(meta).get("format")
                if fmt != LOCAL_FORMAT:
                    raise StoreError(f"store format {fmt!r} is not {LOCAL_FORMAT}; update satchel")
            else:
                write_atomic(meta, json.dumps({"format": LOCAL_FORMAT}).encode(), durable=durable)
        except OSError as exc:
            raise StoreError(f"cannot use {root} as a store: {exc.strerror}") from None
        self.objects = FolderChunkStore(root / "objects", durable=durable)
        # Parsed manifests by id, with the key that verified each. A sync, its search index and
        # its collection read the same one or two manifests; parsing 100,000 entries again
        # cost ~1 s each time. Two: the version held and the one arriving.
        self._parsed: LRUCache[str, tuple[bytes, Manifest]] = LRUCache(2)
        self._parsed_lock = threading.Lock()

    @staticmethod
    def _json(path: Path) -> dict[str, Any]:
        try:
            value = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"{path.name} in the store is unreadable ({exc}); sync into a new store"
            ) from None
        if not isinstance(value, dict):
            raise StoreError(f"{path.name} in the store is corrupt; sync into a new store")
        return value

    def _write_json(self, path: Path, value: dict[str, Any]) -> None:
        write_atomic(path, json.dumps(value, sort_keys=True).encode(), durable=self.durable)

    # -- trust -------------------------------------------------------------------------
    def pinned_key(self) -> PublicKey | None:
        path = self.root / "trust.json"
        if not path.exists():
            return None
        try:
            return PublicKey.from_json(self._json(path))
        except FormatError as exc:
            raise StoreError(f"trust.json is corrupt ({exc})") from None

    def retired_keys(self) -> list[PublicKey]:
        """Keys trusted before an explicit rotation: they vouch only for what is already here."""
        path = self.root / "trust.json"
        if not path.exists():
            return []
        try:
            return [PublicKey.from_json(k) for k in self._json(path).get("retired", [])]
        except (FormatError, TypeError):
            raise StoreError("trust.json is corrupt; sync into a new store") from None

    def pin(self, key: PublicKey, *, replace: bool = False) -> None:
        current = self.pinned_key()
        retired = self.retired_keys()
        if current is not None and current.keyid != key.keyid:
            if not replace:
                raise TrustError(f"store already trusts {current.fingerprint}")
            retired.append(current)
        doc: dict[str, Any] = key.to_json()
        doc["retired"] = [k.to_json() for k in retired if k.keyid != key.keyid]
        self._write_json(self.root / "trust.json", doc)

    # -- line indexes -----------------------------------------------------------------
    def _index_path(self, bundle: str, locale: str, suffix: str = ".json") -> Path:
        return self.root / "index" / check_bundle(bundle) / f"{check_locale(locale)}{suffix}"

    def index_meta(self, bundle: str, locale: str) -> tuple[str | None, int | None]:
        """(ETag, serial) of the last accepted index of a line."""
        path = self._index_path(bundle, locale, ".meta.json")
        if not path.exists() or not self._index_path(bundle, locale).exists():
            return None, None
        meta = self._json(path)
        return meta.get("etag"), meta.get("serial")

    def last_index(self, bundle: str, locale: str) -> bytes | None:
        path = self._index_path(bundle, locale)
        return path.read_bytes() if path.exists() else None

    def save_index(
        self, bundle: str, locale: str, raw: bytes, etag: str | None, serial: int
    ) -> None:
        write_atomic(self._index_path(bundle, locale), raw, durable=self.durable)
        self._write_json(
            self._index_path(bundle, locale, ".meta.json"), {"etag": etag, "serial": serial}
        )

    def mark_index_held(self, bundle: str, locale: str) -> None:
        """Record that the accepted index's version of a line is now whole here.

        A relay serves this copy, not the accepted one: a sync saves the new index before its
        objects arrive, and peers must not be sent to a version the relay does not hold yet.
        """
        raw = self.last_index(bundle, locale)
        if raw is not None:
            write_atomic(self._index_path(bundle, locale, ".held.json"), raw, durable=self.durable)

    def held_index(self, bundle: str, locale: str) -> bytes | None:
        """A line's index as of its last sync or import that completed (what a relay offers)."""
        path = self._index_path(bundle, locale, ".held.json")
        return path.read_bytes() if path.exists() else None

    def indexed_lines(self) -> list[tuple[str, str]]:
        """Every line with an accepted index here, by bundle and locale."""
        base = self.root / "index"
        out = []
        if base.is_dir():
            for bundle_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                for f in sorted(bundle_dir.glob("*.meta.json")):
                    locale = f.name.removesuffix(".meta.json")
                    if (bundle_dir / f"{locale}.json").exists():
                        out.append((bundle_dir.name, locale))
        return out

    def forget_line(self, bundle: str, locale: str) -> None:
        """Drop a line's ref and held index (its publisher removed it); what was held goes
        at the next collection. Its accepted index stays, so the removal is remembered."""
        for path in (
            self._ref_path(bundle, locale),
            self._index_path(bundle, locale, ".held.json"),
        ):
            path.unlink(missing_ok=True)

    # -- manifests ---------------------------------------------------------------------
    def manifest_bytes(self, manifest_id: str) -> bytes | None:
        path = self.root / "manifests" / check_chunk_id(manifest_id)
        return path.read_bytes() if path.exists() else None

    def save_manifest(
        self, manifest_id: str, data: bytes, *, parsed: tuple[Manifest, PublicKey] | None = None
    ) -> None:
        """Keep a verified manifest's bytes; ``parsed``: the manifest and the key that verified
        it, so the next :meth:`load_manifest` in this process need not parse it again."""
        write_atomic(
            self.root / "manifests" / check_chunk_id(manifest_id), data, durable=self.durable
        )
        if parsed is not None:
            with self._parsed_lock:
                self._parsed[manifest_id] = (parsed[1].raw, parsed[0])

    def manifest_ids(self) -> list[str]:
        folder = self.root / "manifests"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if len(p.name) == 64)

    def delete_manifest(self, manifest_id: str) -> None:
        (self.root / "manifests" / check_chunk_id(manifest_id)).unlink(missing_ok=True)

    def load_manifest(self, manifest_id: str) -> Manifest:
        """A stored manifest, re-checked against the pinned key (the disk is not trusted).

        The bytes are read and hashed every time; only the parse is reused, for bytes that
        hash to the id again and a key that still vouches for them."""
        data = self.manifest_bytes(manifest_id)
        if data is None:
            raise NotFoundError(f"manifest {manifest_id[:16]}... is not in the store")
        key = self.pinned_key()
        if key is None:
            raise StoreError("store has manifests but no pinned key; sync into a new store")
        with self._parsed_lock:
            hit = self._parsed.get(manifest_id)
        if hit is not None and hashlib.sha256(data).hexdigest() == manifest_id:
            signed_by, held = hit
            if signed_by == key.raw or signed_by in {k.raw for k in self.retired_keys()}:
                return held
        env, manifest = parse_manifest(data)
        if env.doc_id != manifest_id:
            raise StoreError(
                f"manifest {manifest_id[:16]}... on disk is corrupt; sync into a new store"
            )
        signer = self._signer(env, key)
        with self._parsed_lock:
            self._parsed[manifest_id] = (signer.raw, manifest)
        return manifest

    def _signer(self, env: Envelope, key: PublicKey) -> PublicKey:
        """The pinned key if it signed ``env``, else a retired key that did."""
        try:
            verify_envelope(env, key, what="stored manifest")
            return key
        except TrustError:
            # Verified on arrival under a key the person later rotated away from (--trust).
            for old in self.retired_keys():
                try:
                    verify_envelope(env, old, what="stored manifest")
                    return old
                except TrustError:
                    continue
            raise

    # -- refs --------------------------------------------------------------------------
    def _ref_path(self, bundle: str, locale: str) -> Path:
        return self.root / "refs" / check_bundle(bundle) / f"{check_locale(locale)}.json"

    def ref(self, bundle: str, locale: str) -> Ref | None:
        path = self._ref_path(bundle, locale)
        if not path.exists():
            return None
        raw = self._json(path)
        try:
            versions = {int(k): check_chunk_id(v) for k, v in raw["versions"].items()}
            only = raw.get("only")
            if only is not None and not (
                isinstance(only, list) and all(isinstance(x, str) for x in only)
            ):
                raise TypeError("only")
            return Ref(
                bundle,
                locale,
                int(raw["version"]),
                check_chunk_id(raw["manifest"]),
                versions,
                tuple(only) if only is not None else None,
            )
        except (KeyError, ValueError, TypeError, AttributeError, FormatError):
            raise StoreError(
                f"ref for {bundle}/{locale} is corrupt; sync into a new store"
            ) from None

    def refs(self) -> list[Ref]:
        out: list[Ref] = []
        base = self.root / "refs"
        if base.is_dir():
            for bundle_dir in sorted(base.iterdir()):
                for f in sorted(bundle_dir.glob("*.json")):
                    ref = self.ref(bundle_dir.name, f.stem)
                    if ref is not None:
                        out.append(ref)
        return out

    def switch(
        self,
        bundle: str,
        locale: str,
        version: int,
        manifest_id: str,
        *,
        only: tuple[str, ...] | None = None,
    ) -> Ref:
        """Make ``version`` current; callers ensure every object it needs is stored.

        ``only`` records a selective sync's selectors (None: the whole version is here).
        """
        old = self.ref(bundle, locale)
        versions = dict(old.versions) if old else {}
        versions[version] = manifest_id
        return self._write_ref(Ref(bundle, locale, version, manifest_id, versions, only))

    def prune_versions(self, ref: Ref, kept: dict[int, str]) -> Ref:
        """Forget versions of a line (their objects go at the next collection)."""
        if ref.version not in kept:
            raise StoreError("the current version cannot be pruned")
        return self._write_ref(
            Ref(ref.bundle, ref.locale, ref.version, ref.manifest, dict(kept), ref.only)
        )

    def _write_ref(self, ref: Ref) -> Ref:
        doc: dict[str, Any] = {
            "version": ref.version,
            "manifest": ref.manifest,
            "versions": {str(k): v for k, v in sorted(ref.versions.items())},
        }
        if ref.only is not None:
            doc["only"] = list(ref.only)
        self._write_json(self._ref_path(ref.bundle, ref.locale), doc)
        return ref


def discard_if_unused(root: Path) -> bool:
    """Remove a store folder that holds no version, manifest, object or partial object yet.

    For a folder that a first sync created and then failed in before any content arrived
    (a wrong URL, a server that is down): such a sync leaves nothing behind. A pinned key and
    an index alone do not count as content; nothing depends on them yet. Returns whether the
    folder was removed.
    """
    if not (root / "satchel.json").is_file():
        return False
    try:
        local = LocalStore(root, durable=False)
        partial = root / "partial"
        if (
            local.refs()
            or local.manifest_ids()
            or next(iter(local.objects), None) is not None
            or (partial.is_dir() and any(partial.iterdir()))
        ):
            return False
    except (SatchelError, OSError):
        return False  # not plainly empty: leave it to the person
    shutil.rmtree(root, ignore_errors=True)
    return not root.exists()
