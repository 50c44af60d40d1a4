"""The server's logic without the web framework: tokens, reading, packs, publishing.

FastAPI routes in :mod:`satchel.server.app` only translate HTTP to calls on
:class:`Repository` and errors to statuses. All writes that change what is published go
through one database transaction, so a version becomes visible whole or not at all, and the
signed index always matches the versions table.

Several replicas may share one database, so nothing here relies on a process-local lock for
correctness (the lock only spares this process pointless retries). Every write that depends on
what it read is a compare-and-swap: the new version is ``latest_version + 1`` only if
``latest_version`` is still what was read, a version row is unique, and the index serial moves
from N to N+1 only if it is still N (the index row is also locked ``FOR UPDATE`` where the
database has row locks). A writer that loses a race rolls back and tries again on fresh rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from satchel.content import canonical
from satchel.content.chunking import Chunker, chunk_id
from satchel.content.delta import encode_object_delta
from satchel.content.errors import (
    FormatError,
    IntegrityError,
    NotFoundError,
    SatchelError,
    StoreError,
    UsageError,
)
from satchel.content.index import MAX_DELTAS, IndexEntry, parse_index
from satchel.content.lessons import structure
from satchel.content.manifest import (
    MAX_DICTIONARIES,
    MAX_MANIFEST_BYTES,
    BaseRef,
    Manifest,
    ManifestDraft,
    check_chunk_id,
    parse_manifest,
)
from satchel.content.names import check_bundle, check_locale
from satchel.content.objects import (
    DICTIONARY_MAGIC,
    MAX_DICTIONARY,
    RAW,
    DictLookup,
    declared_length,
    decode_object,
    encode_object,
    object_dictionary,
    verify_object,
)
from satchel.content.signing import SigningKey
from satchel.sync.delta import delta_objects, static_pack
from satchel.sync.errors import AuthError
from satchel.sync.pack import (
    HEAD_SIZE,
    MAGIC,
    PackFrame,
    PackReader,
    frame_head,
    trailer,
    write_pack,
)
from satchel.sync.plan import decode_want, encode_want
from satchel.sync.publish import (
    INDEX_VALIDITY,
    BeginResponse,
    Publisher,
    assemble_manifest,
    sign_index,
    sign_manifest,
)
from satchel.sync.receive import store_lookup
from satchel.sync.serving import batched
from satchel.sync.store import ChunkStore, FolderChunkStore
from sqlalchemy import delete, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult
from sqlmodel import Session, col, select

from .db import (
    Chunk,
    IndexState,
    Line,
    StaticDelta,
    Token,
    Upload,
    Version,
    make_engine,
    sqlite_url,
)

log = logging.getLogger(__name__)

ROLES = ("admin", "teacher", "curator")
MAX_PACK_IDS = 1_000_000
MAX_LABEL = 200
MAX_NOTES = 2000
TRANSLATION_STATES = ("up-to-date", "stale", "missing", "extra")
# Whole-object packs stream in larger pieces: each piece is one thread hop and one socket
# write, and 1 MiB keeps both rare at Gbit/s while a response still holds ~1 MiB at a time.
PACK_STREAM_PIECE = 1024 * 1024
WRITE_ATTEMPTS = 40  # lost races before a write gives up (each retry backs off, up to 0.5 s)
WRITE_PATIENCE = 60.0  # seconds of retrying before a write gives up
T = TypeVar("T")


class _Conflict(Exception):
    """Another writer changed a row this transaction's write depends on: roll back, retry."""


# Lost compare-and-swap, duplicate key from a concurrent insert, or (SQLite, PostgreSQL) a
# lock or serialization failure: all mean "try again on fresh rows".
_RETRYABLE = (_Conflict, sa_exc.IntegrityError, sa_exc.OperationalError)


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    role: str
    bundle: str | None
    locale: str | None
    label: str = ""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Repository:
    def __init__(
        self,
        data: Path,
        *,
        database_url: str | None = None,
        signing_key: Path | None = None,
        store: ChunkStore | None = None,
        static_deltas: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC).replace(microsecond=0),
        signs: bool = True,
    ) -> None:
        """``signs=False`` opens the repository for administration only (``satchel token
        create``): no key file is created and the shared index is never re-signed, so running
        it against a replicas' database cannot put another key's signature on their index."""
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.clock = clock
        if not 0 <= static_deltas <= MAX_DELTAS:
            raise UsageError(
                f"static deltas must be 0..{MAX_DELTAS} (the index lists at most that)"
            )
        self.static_deltas = static_deltas  # ready-made packs from the last K versions
        key_path = signing_key or data / "signing-key.pem"
        if signs:
            self.key = SigningKey.load_or_create(key_path)
        else:  # never used to sign: see above
            self.key = SigningKey.load(key_path) if key_path.exists() else SigningKey.generate()
        self.engine = make_engine(database_url or sqlite_url(data))
        self.store: ChunkStore = store or FolderChunkStore(data / "objects")
        self._write = threading.Lock()
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._manifest_deltas: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._distinct_lock = threading.Lock()
        if signs:
            self._resign_if_key_changed()

    def _resign_if_key_changed(self) -> None:
        """A server started with another --signing-key must not keep serving the old index."""
        with self._session() as s:
            state = s.get(IndexState, 1)
        if state is None or not state.body:
            return
        try:
            signer = parse_index(state.body)[1].publisher.keyid
        except FormatError:
            signer = None
        if signer != self.key.public.keyid:
            self._transaction("re-sign the index", lambda s: self._resign(s, self.clock()))

    def _session(self) -> Session:
        # Rows are read after the session closes; keep their loaded values.
        return Session(self.engine, expire_on_commit=False)

    def _transaction(self, what: str, body: Callable[[Session], T], *, lock: bool = True) -> T:
        """Run ``body`` in one transaction and commit; retry it whole when it loses a race
        with another process (or replica) writing the same rows."""
        delay = 0.005
        # SQLite may already have waited its 30 s busy timeout: bound the whole, not each try.
        deadline = time.monotonic() + WRITE_PATIENCE
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if lock:
                    with self._write, self._session() as s:
                        result = body(s)
                        s.commit()
                else:
                    with self._session() as s:
                        result = body(s)
                        s.commit()
                return result
            except _RETRYABLE as exc:
                if attempt + 1 == WRITE_ATTEMPTS or time.monotonic() > deadline:
                    reason = getattr(exc, "orig", None) or exc or "concurrent writers"
                    raise StoreError(
                        f"cannot {what}: the database stayed busy ({reason})"
                    ) from None
            time.sleep(delay * random.uniform(1.0, 2.0))  # jitter: racers do not meet again
            delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    # -- tokens ----------------------------------------------------------------------------
    def create_token(
        self, role: str, *, bundle: str | None = None, locale: str | None = None, label: str = ""
    ) -> str:
        """A new token (only its hash is kept); see :meth:`issue_token` for its id too."""
        return str(self.issue_token(role, bundle=bundle, locale=locale, label=label)["token"])

    def issue_token(
        self, role: str, *, bundle: str | None = None, locale: str | None = None, label: str = ""
    ) -> dict[str, Any]:
        """Create a token: ``{"id", "token", "role", "bundle", "locale", "label", "created"}``.

        The secret is in this answer only; the database keeps its SHA-256.
        """
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if bundle is not None:
            check_bundle(bundle)
        if locale is not None:
            check_locale(locale)
        if role == "curator" and (bundle is None or locale is None):
            raise UsageError("a curator token needs --bundle and --locale")
        if not isinstance(label, str) or len(label) > MAX_LABEL:
            raise UsageError(f"a token label is a string of at most {MAX_LABEL} characters")
        token = "sat_" + secrets.token_urlsafe(32)
        row = Token(
            token_hash=hash_token(token),
            role=role,
            bundle=bundle,
            locale=locale,
            label=label,
            created=self.clock(),
        )
        with self._session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return {**_token_json(row), "token": token}

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token, oldest first, without secrets or hashes."""
        with self._session() as s:
            rows = s.exec(select(Token).order_by(col(Token.id))).all()
        return [_token_json(row) for row in rows]

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        """Revoke a token; the next request with it fails (nothing caches tokens)."""
        with self._session() as s:
            row = s.get(Token, token_id)
            if row is None:
                raise NotFoundError(f"no token {token_id}")
            if not row.revoked:
                row.revoked = True
                row.revoked_at = self.clock()
                s.add(row)
                s.commit()
                s.refresh(row)
        return _token_json(row)

    @staticmethod
    def require_admin(who: Principal) -> None:
        if who.role != "admin":
            raise PermissionError("only an admin token may manage tokens")

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise AuthError("this needs a token: pass --token (see 'satchel token create')")
        if len(token) > 200:
            raise AuthError("token is unknown or revoked")
        with self._session() as s:
            row = s.exec(select(Token).where(Token.token_hash == hash_token(token))).first()
        if row is None or row.revoked or row.id is None:
            raise AuthError("token is unknown or revoked")
        return Principal(row.id, row.role, row.bundle, row.locale, row.label)

    def authorize_publish(
        self, who: Principal, bundle: str, locale: str, from_locale: str | None = None
    ) -> int | None:
        """Refuse a publish the token may not make; for a variant, the base's latest version.

        Teachers publish to granted bundles (and locale, when the grant names one). Curators
        publish only locale variants of their granted bundle and locale, never a base line.
        A line that is a variant stays one: its publishes name the same base locale.
        """
        if who.role not in ROLES:
            raise PermissionError(f"role {who.role} cannot publish")
        if who.role != "admin":
            if who.bundle is not None and who.bundle != bundle:
                raise PermissionError(f"this token may publish only to bundle {who.bundle!r}")
            if who.locale is not None and who.locale != locale:
                raise PermissionError(f"this token may publish only locale {who.locale!r}")
        if who.role == "curator" and from_locale is None:
            raise PermissionError(
                "a curator publishes locale variants only: pass --from-locale BASE"
            )
        with self._session() as s:
            line = s.get(Line, (bundle, locale))
            base = s.get(Line, (bundle, from_locale)) if from_locale is not None else None
        if from_locale is None:
            if line is not None and line.base_locale is not None:
                raise UsageError(
                    f"{bundle}/{locale} is a variant of {line.base_locale!r}:"
                    f" publish it with --from-locale {line.base_locale}"
                )
            return None
        check_locale(from_locale)
        if from_locale == locale:
            raise UsageError("a locale variant needs a base locale other than its own")
        if line is not None and line.latest_version > 0 and line.base_locale is None:
            if who.role == "curator":
                raise PermissionError(
                    f"{bundle}/{locale} is a base line, not a variant: a curator cannot publish it"
                )
            raise UsageError(f"{bundle}/{locale} is a base line; it cannot become a variant")
        if line is not None and line.base_locale not in (None, from_locale):
            raise UsageError(
                f"{bundle}/{locale} is a variant of {line.base_locale!r}, not {from_locale!r}"
            )
        if base is None or base.latest_version < 1:
            raise NotFoundError(f"no published {bundle}/{from_locale} to make a variant of")
        if base.base_locale is not None:
            raise UsageError(
                f"{bundle}/{from_locale} is itself a variant; make variants of"
                f" {bundle}/{base.base_locale}"
            )
        return base.latest_version

    # -- reading ---------------------------------------------------------------------------
    def index(self) -> tuple[bytes, str]:
        """The signed release index and its ETag, re-signed when half its validity is gone.

        Replicas may decide to re-sign at the same moment: only one moves the serial, the
        others find a fresh index under the lock (or lose the compare-and-swap and look again)
        and serve that one, so one serial never has two different bodies.
        """
        with self._session() as s:
            state = s.get(IndexState, 1)
        now = self.clock()
        if state is None or _stale(state, now):
            state = self._transaction(
                "re-sign the index", lambda s: self._resign(s, now, only_if_stale=True)
            )
        return state.body, state.etag

    def _resign(self, s: Session, now: datetime, *, only_if_stale: bool = False) -> IndexState:
        """Sign the index of what ``s`` sees as the serial after the stored one.

        The index row is read first (and locked, where the database can) so that the lines
        read after it include every version committed before that serial; the write is a
        compare-and-swap on the serial, so two writers cannot both issue serial N+1.
        """
        state = s.exec(select(IndexState).where(IndexState.id == 1).with_for_update()).first()
        if only_if_stale and state is not None and not _stale(state, now):
            return state
        serial = state.serial if state is not None else 0
        entries = []
        for line in s.exec(select(Line).where(Line.latest_version > 0)).all():
            v = s.get(Version, (line.bundle, line.locale, line.latest_version))
            if v is not None:
                deltas = s.exec(
                    select(StaticDelta).where(StaticDelta.to_manifest == v.manifest_id)
                ).all()
                entries.append(
                    IndexEntry(
                        line.bundle,
                        line.locale,
                        v.version,
                        v.manifest_id,
                        v.manifest_size,
                        line.title,
                        tuple(sorted((d.from_version for d in deltas), reverse=True)),
                    )
                )
        body = sign_index(entries, serial=serial + 1, key=self.key, now=now)
        signed = IndexState(
            id=1,
            serial=serial + 1,
            body=body,
            etag='"' + hashlib.sha256(body).hexdigest() + '"',
            issued=now,
            expires=now + INDEX_VALIDITY,
        )
        if state is None:
            s.add(signed)
            s.flush()  # a concurrent first index: duplicate key, retried by _transaction
            return signed
        moved = _cursor(
            s.execute(
                update(IndexState)
                .where(col(IndexState.id) == 1, col(IndexState.serial) == serial)
                .values(
                    serial=signed.serial,
                    body=signed.body,
                    etag=signed.etag,
                    issued=signed.issued,
                    expires=signed.expires,
                )
                .execution_options(synchronize_session=False)
            )
        )
        if moved.rowcount != 1:
            raise _Conflict("index serial moved")
        s.expunge(state)
        return signed

    def catalog(self) -> list[dict[str, Any]]:
        with self._session() as s:
            lines = s.exec(select(Line).order_by(Line.bundle, Line.locale)).all()
            out = []
            for line in lines:
                versions = s.exec(
                    select(Version)
                    .where(Version.bundle == line.bundle, Version.locale == line.locale)
                    .order_by(col(Version.version))
                ).all()
                out.append(
                    {
                        "bundle": line.bundle,
                        "locale": line.locale,
                        "title": line.title,
                        "subject": line.subject,
                        "grade": line.grade,
                        "description": line.description,
                        "lessons": line.lessons,
                        "base_locale": line.base_locale,
                        "latest_version": line.latest_version,
                        "versions": [
                            {
                                "version": v.version,
                                "manifest": v.manifest_id,
                                "created": _aware(v.created).isoformat(),
                                "files": v.files,
                                "size": v.size,
                                "notes": v.notes,
                                "base_version": v.base_version,
                            }
                            for v in versions
                        ],
                    }
                )
        return out

    def manifest_object(self, manifest_id: str) -> bytes:
        check_chunk_id(manifest_id)
        with self._session() as s:
            known = s.exec(select(Version).where(Version.manifest_id == manifest_id)).first()
        if known is None:
            raise NotFoundError(f"no manifest {manifest_id[:16]}...")
        return self.store.get(manifest_id)

    def get_object(self, cid: str) -> bytes:
        check_chunk_id(cid)
        return self.store.get(cid)

    def manifest(self, manifest_id: str) -> Manifest:
        """A published manifest, parsed (kept in a small cache: packs ask for them often)."""
        check_chunk_id(manifest_id)
        with self._distinct_lock:
            hit = self._manifests.get(manifest_id)
            if hit is not None:
                self._manifests.move_to_end(manifest_id)
                return hit
        with self._session() as s:
            v = s.exec(select(Version).where(Version.manifest_id == manifest_id)).first()
        if v is None:
            raise NotFoundError(f"no manifest {manifest_id[:16]}...")
        _env, manifest = parse_manifest(self.manifest_bytes(manifest_id, v.manifest_size))
        with self._distinct_lock:
            self._manifests[manifest_id] = manifest
            while len(self._manifests) > 32:
                self._manifests.popitem(last=False)
        return manifest

    def manifest_bytes(self, manifest_id: str, size: int) -> bytes:
        return decode_object(self.store.get(manifest_id), size)

    def _manifest_distinct(self, manifest_id: str) -> list[tuple[str, int]]:
        return self.manifest(manifest_id).distinct_chunks()

    def _lookup_for(self, *manifests: Manifest) -> DictLookup:
        listed: dict[str, int] = {}
        for m in manifests:
            listed.update(m.dictionaries)
        return store_lookup(self.store, listed)

    def pack_response(self, request: object) -> tuple[Iterator[bytes], int | None]:
        """The pack a request asks for, and its length when known in advance.

        With ``"base": <manifest id>`` (the version the client holds) chunks go as deltas
        against that version where smaller; the length is then only known at the end.
        """
        plan = self.pack_plan(request)
        assert isinstance(request, dict)  # pack_plan refused anything else
        base_id, new_id = request.get("base"), request.get("manifest")
        if base_id is None or new_id is None:
            return self.pack_stream(plan), self.pack_length(plan)
        new = self.manifest(check_chunk_id(new_id))
        try:
            base = self.manifest(check_chunk_id(base_id))
        except NotFoundError:  # a version from another publisher or server: no deltas then
            return self.pack_stream(plan), self.pack_length(plan)
        lengths = dict(new.distinct_chunks())
        wanted = [(cid, lengths[cid]) for cid, _ in plan]
        objects = delta_objects(new, base, wanted, self.store, self._lookup_for(new, base))
        return batched(write_pack(objects)), None

    def manifest_response(self, manifest_id: str, base_id: str | None) -> tuple[bytes, str]:
        """A manifest as a stored object, or as a delta against ``base_id`` when that is smaller."""
        stored = self.manifest_object(manifest_id)
        if base_id is None:
            return stored, f'"{manifest_id}"'
        check_chunk_id(base_id)
        with self._session() as s:
            new_v = s.exec(select(Version).where(Version.manifest_id == manifest_id)).first()
            base_v = s.exec(select(Version).where(Version.manifest_id == base_id)).first()
        if new_v is None or base_v is None:
            return stored, f'"{manifest_id}"'
        # Every laptop on version N asks for the same delta: make it once (25-35 ms of zstd
        # for a 470-file manifest), not once per client.
        with self._distinct_lock:
            delta = self._manifest_deltas.get((manifest_id, base_id))
            if delta is not None:
                self._manifest_deltas.move_to_end((manifest_id, base_id))
        if delta is None:
            delta = encode_object_delta(
                self.manifest_bytes(manifest_id, new_v.manifest_size),
                base_id,
                self.manifest_bytes(base_id, base_v.manifest_size),
            )
            with self._distinct_lock:
                self._manifest_deltas[(manifest_id, base_id)] = delta
                while len(self._manifest_deltas) > 32:
                    self._manifest_deltas.popitem(last=False)
        if len(delta) >= len(stored):
            return stored, f'"{manifest_id}"'
        return delta, f'"{manifest_id}-from-{base_id}"'

    def _static_row(self, from_manifest: str, to_manifest: str) -> StaticDelta:
        check_chunk_id(from_manifest)
        check_chunk_id(to_manifest)
        with self._session() as s:
            row = s.get(StaticDelta, (from_manifest, to_manifest))
        if row is None:
            raise NotFoundError("no ready-made delta between these versions; use POST /v1/pack")
        return row

    def static_delta(self, from_manifest: str, to_manifest: str) -> bytes:
        row = self._static_row(from_manifest, to_manifest)
        # Content-addressed: the store may already hold these bytes in another encoding.
        return decode_object(self.store.get(row.object_id), row.size)

    def static_delta_size(self, from_manifest: str, to_manifest: str) -> int:
        """The ready-made pack's byte length, unread (for HEAD and dry runs)."""
        return self._static_row(from_manifest, to_manifest).size

    def pack_dry_run(self, request: object) -> dict[str, int]:
        """What a pack request would send, unsent: ``{"objects": n, "bytes": exact length}``.

        A pack of deltas has no length until it is made, so it is made here and counted.
        """
        objects = len(self.pack_plan(request))
        stream, length = self.pack_response(request)
        if length is None:
            length = sum(len(piece) for piece in stream)
        return {"objects": objects, "bytes": length}

    def _build_static_deltas(self, bundle: str, locale: str, version: int) -> None:
        """Pack the update from each of the last K versions, for caches to serve (after commit)."""
        if self.static_deltas <= 0:
            return
        with self._session() as s:
            rows = s.exec(
                select(Version)
                .where(Version.bundle == bundle, Version.locale == locale)
                .where(Version.version < version, Version.version >= version - self.static_deltas)
            ).all()
            target = s.get(Version, (bundle, locale, version))
        if target is None:
            return
        new = self.manifest(target.manifest_id)
        made = []
        for old in sorted(rows, key=lambda r: -r.version):
            base = self.manifest(old.manifest_id)
            body, count = static_pack(new, base, self.store, self._lookup_for(new, base))
            obj = bytes([RAW]) + body
            object_id = chunk_id(body)
            self.store.put(object_id, obj)
            made.append(
                StaticDelta(
                    from_manifest=old.manifest_id,
                    to_manifest=target.manifest_id,
                    from_version=old.version,
                    object_id=object_id,
                    size=len(body),
                    objects=count,
                )
            )
        if made:

            def record(s: Session) -> None:
                for row in made:
                    s.merge(row)
                s.flush()
                self._resign(s, self.clock())

            self._transaction("record ready-made deltas", record)

    def pack_plan(self, request: object) -> list[tuple[str, int]]:
        """Which objects a pack request selects, with their stored sizes (for Content-Length)."""
        if not isinstance(request, dict):
            raise FormatError("pack request must be a JSON object")
        if "manifest" in request:
            distinct = self._manifest_distinct(check_chunk_id(request["manifest"]))
            want = request.get("want")
            if not isinstance(want, str):
                raise FormatError("pack request 'want' must be a base64 bitmap")
            try:
                bitmap = base64.b64decode(want, validate=True)
            except binascii.Error:
                raise FormatError("pack request 'want' is not valid base64") from None
            ids = [cid for cid, _ in decode_want(distinct, bitmap)]
        elif "chunks" in request:
            raw = request["chunks"]
            if not isinstance(raw, list) or len(raw) > MAX_PACK_IDS:
                raise FormatError(
                    f"pack request 'chunks' must be a list of at most {MAX_PACK_IDS:,} ids"
                )
            ids = [check_chunk_id(c) for c in raw]
        else:
            raise FormatError("pack request needs 'manifest' and 'want', or 'chunks'")
        sizes = self._stored_sizes(ids)
        absent = [cid for cid in ids if cid not in sizes]
        if absent:
            raise NotFoundError(
                f"{len(absent)} requested chunks are not here, e.g. {absent[0][:16]}..."
            )
        return [(cid, sizes[cid]) for cid in ids]

    def _stored_sizes(self, ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._session() as s:
            for i in range(0, len(ids), 500):
                batch = ids[i : i + 500]
                for row in s.exec(select(Chunk).where(col(Chunk.id).in_(batch))).all():
                    out[row.id] = row.stored_size
        return out

    @staticmethod
    def pack_length(plan: list[tuple[str, int]]) -> int:
        return len(MAGIC) + sum(HEAD_SIZE + size for _, size in plan) + HEAD_SIZE

    def pack_stream(self, plan: list[tuple[str, int]]) -> Iterator[bytes]:
        """The pack's bytes, in pieces of about 1 MiB (few thread hops, bounded memory).

        Each object is copied once, into the joined piece (not first into its frame):
        bench/pack_throughput.py measures this path.
        """
        buf = [MAGIC]
        size = len(MAGIC)
        get = self.store.get
        for cid, _ in plan:
            obj = get(cid)
            buf.append(frame_head(cid, len(obj)))
            buf.append(obj)
            size += HEAD_SIZE + len(obj)
            if size >= PACK_STREAM_PIECE:
                yield b"".join(buf)
                buf, size = [], 0
        buf.append(trailer(len(plan)))
        yield b"".join(buf)

    # -- publishing ------------------------------------------------------------------------
    def begin(
        self,
        who: Principal,
        bundle: str,
        locale: str,
        draft_bytes: bytes,
        from_locale: str | None = None,
        base_version: int | None = None,
    ) -> BeginResponse:
        """Start a publish; with ``from_locale``, of a locale variant of that base line.

        A variant records the base version it was made from: ``base_version`` when given
        (the curator says "I have caught up with en v3"), else the one its previous version
        recorded, else (a new variant) the base's latest. Republishing a variant therefore
        does not hide stale files; catching up is a statement, not a side effect.
        """
        check_bundle(bundle)
        check_locale(locale)
        base_latest = self.authorize_publish(who, bundle, locale, from_locale)
        if base_latest is None:
            if base_version is not None:
                raise UsageError("a base version goes with --from-locale (a variant publish)")
        else:
            base_version = self._variant_base(bundle, locale, base_latest, base_version)
        draft = ManifestDraft.from_json(
            canonical.decode(draft_bytes, what="manifest draft", max_bytes=MAX_MANIFEST_BYTES)
        )
        distinct = draft.distinct_chunks()
        present = self._stored_sizes([cid for cid, _ in distinct])
        want = encode_want(distinct, {cid for cid, _ in distinct if cid not in present})
        upload_id = secrets.token_hex(16)
        with self._session() as s:
            line = s.get(Line, (bundle, locale))
            s.add(
                Upload(
                    id=upload_id,
                    bundle=bundle,
                    locale=locale,
                    draft=draft_bytes,
                    token_id=who.token_id,
                    base_locale=from_locale,
                    base_version=base_version,
                )
            )
            s.commit()
            if (line is None or not line.dictionary_id) and from_locale is not None:
                # A new variant compresses with its base's dictionary: no retrain to upload,
                # and clients that hold the base already have it.
                line = s.get(Line, (bundle, from_locale))
        dictionary = None
        if line is not None and line.dictionary_id and line.dictionary_length:
            dictionary = (line.dictionary_id, line.dictionary_length)
        return BeginResponse(upload_id=upload_id, want=want, dictionary=dictionary)

    def _variant_base(
        self, bundle: str, locale: str, base_latest: int, requested: int | None
    ) -> int:
        if requested is not None:
            if type(requested) is not int or not 1 <= requested <= base_latest:
                raise UsageError(
                    f"base version must be 1..{base_latest} (the base's published versions)"
                )
            return requested
        with self._session() as s:
            line = s.get(Line, (bundle, locale))
            previous = (
                s.get(Version, (bundle, locale, line.latest_version))
                if line is not None and line.latest_version > 0
                else None
            )
        if previous is not None and previous.base_version is not None:
            return previous.base_version
        return base_latest

    def _upload(self, who: Principal, upload_id: str) -> tuple[Upload, ManifestDraft]:
        with self._session() as s:
            up = s.get(Upload, upload_id)
        if up is None:
            raise NotFoundError(f"no upload {upload_id[:32]!r} (it was committed or never begun)")
        if up.token_id != who.token_id and who.role != "admin":
            raise PermissionError("this upload was begun with another token")
        draft = ManifestDraft.from_json(
            canonical.decode(up.draft, what="manifest draft", max_bytes=MAX_MANIFEST_BYTES)
        )
        return up, draft

    def upload_receiver(self, who: Principal, upload_id: str) -> UploadReceiver:
        up, draft = self._upload(who, upload_id)
        return UploadReceiver(self, up.id, dict(draft.distinct_chunks()), up.extras)

    def commit(self, who: Principal, upload_id: str, notes: str = "") -> int:
        up, draft = self._upload(who, upload_id)
        # Checked again: the token may have lost the right, or the line changed, since begin.
        self.authorize_publish(who, up.bundle, up.locale, up.base_locale)
        if not isinstance(notes, str) or len(notes) > MAX_NOTES:
            raise UsageError(f"notes are a string of at most {MAX_NOTES} characters")
        distinct = draft.distinct_chunks()
        ids = [cid for cid, _ in distinct]

        def make_version(s: Session) -> int:
            # Taking the upload first: of two commits of one upload, the second finds nothing.
            taken = _cursor(s.execute(delete(Upload).where(col(Upload.id) == up.id)))
            if taken.rowcount != 1:
                raise NotFoundError(f"upload {up.id} was already committed")
            rows: dict[str, Chunk] = {}
            for i in range(0, len(ids), 500):
                for row in s.exec(select(Chunk).where(col(Chunk.id).in_(ids[i : i + 500]))).all():
                    rows[row.id] = row
            absent = [cid for cid in ids if cid not in rows]
            if absent:
                raise IntegrityError(
                    f"{len(absent)} chunks of this version were never uploaded; upload them first"
                )
            dict_ids = sorted({r.dictionary for r in rows.values() if r.dictionary})
            dict_rows = [s.get(Chunk, d) for d in dict_ids]
            if any(r is None for r in dict_rows) or len(dict_ids) > MAX_DICTIONARIES:
                raise IntegrityError("a dictionary that chunks of this version need is missing")
            dictionaries = tuple((r.id, r.length) for r in dict_rows if r is not None)

            line = s.get(Line, (up.bundle, up.locale))
            previous = line.latest_version if line is not None else 0
            version = previous + 1
            manifest = assemble_manifest(
                draft,
                bundle=up.bundle,
                locale=up.locale,
                version=version,
                parent_version=previous or None,
                created=self.clock(),
                dictionaries=dictionaries,
                base=(
                    BaseRef(up.base_locale, up.base_version)
                    if up.base_locale is not None and up.base_version is not None
                    else None
                ),
            )
            envelope = sign_manifest(manifest, self.key)
            manifest_id = hashlib.sha256(envelope).hexdigest()
            manifest_obj = encode_object(envelope)
            # Stored before the rows that name it; if this attempt loses its race the object
            # stays unreferenced (harmless, and a later GC may remove it).
            if not self.store.put(manifest_id, manifest_obj):
                manifest_obj = self.store.get(manifest_id)
            s.merge(Chunk(id=manifest_id, length=len(envelope), stored_size=len(manifest_obj)))
            meta = manifest.meta
            title = (
                (meta.title if meta else "")
                or draft.title
                or (line.title if line is not None else "")
            )
            dictionary = (line.dictionary_id, line.dictionary_length) if line else (None, None)
            if dictionaries and not dictionary[0]:
                dictionary = dictionaries[0]
            described: dict[str, Any] = {
                "latest_version": version,
                "title": title,
                "dictionary_id": dictionary[0],
                "dictionary_length": dictionary[1],
                "base_locale": up.base_locale,
                "subject": meta.subject if meta else "",
                "grade": meta.grade if meta else "",
                "description": meta.description if meta else "",
                "lessons": len(structure(manifest).lessons),
            }
            if line is None:
                # A concurrent first publish of this line inserts the same key: retried.
                s.add(Line(bundle=up.bundle, locale=up.locale, **described))
                s.flush()
            else:
                s.expunge(line)
                moved = _cursor(
                    s.execute(
                        update(Line)
                        .where(
                            col(Line.bundle) == up.bundle,
                            col(Line.locale) == up.locale,
                            col(Line.latest_version) == previous,
                        )
                        .values(**described)
                        .execution_options(synchronize_session=False)
                    )
                )
                if moved.rowcount != 1:
                    raise _Conflict(f"{up.bundle}/{up.locale} moved past v{previous}")
            s.add(
                Version(
                    bundle=up.bundle,
                    locale=up.locale,
                    version=version,
                    manifest_id=manifest_id,
                    manifest_size=len(envelope),
                    parent_version=manifest.parent_version,
                    created=manifest.created,
                    files=len(manifest.files),
                    size=manifest.size,
                    token_id=who.token_id,
                    notes=notes,
                    token_label=who.label,
                    token_role=who.role,
                    base_locale=up.base_locale,
                    base_version=up.base_version,
                )
            )
            s.flush()  # the version's primary key is the last guard against a duplicate
            self._resign(s, self.clock())
            return version

        version = self._transaction(f"publish {up.bundle}/{up.locale}", make_version)
        try:
            self._build_static_deltas(up.bundle, up.locale, version)
        except SatchelError as exc:
            # The version is committed and served; without a ready-made pack clients use the
            # dynamic one. Say so rather than failing a publish that succeeded.
            log.warning(
                "no ready-made deltas for %s/%s v%d: %s", up.bundle, up.locale, version, exc
            )
        return version

    def publish_folder(
        self,
        source: Path,
        *,
        bundle: str,
        locale: str,
        title: str,
        notes: str = "",
        from_locale: str | None = None,
        base_version: int | None = None,
    ) -> int:
        """Publish a local folder in-process (used for the sample bundle and by tests)."""
        token = self.create_token("admin", label="in-process publish")
        who = self.authenticate(token)
        return (
            Publisher(LocalTarget(self, who), chunker=Chunker())
            .publish(
                source,
                bundle=bundle,
                locale=locale,
                title=title,
                notes=notes,
                from_locale=from_locale,
                base_version=base_version,
            )
            .version
        )

    # -- history and translations -----------------------------------------------------------
    def history(self, bundle: str, locale: str) -> list[dict[str, Any]]:
        """Every publish of a line, newest first: who (token id, label, role), when, notes."""
        check_bundle(bundle)
        check_locale(locale)
        with self._session() as s:
            if s.get(Line, (bundle, locale)) is None:
                raise NotFoundError(f"no bundle {bundle!r} in locale {locale!r}")
            versions = s.exec(
                select(Version)
                .where(Version.bundle == bundle, Version.locale == locale)
                .order_by(col(Version.version).desc())
            ).all()
        return [
            {
                "version": v.version,
                "created": _aware(v.created).isoformat(),
                "manifest": v.manifest_id,
                "files": v.files,
                "size": v.size,
                "notes": v.notes,
                "token_id": v.token_id,
                "token_label": v.token_label,
                "role": v.token_role,
                "base_locale": v.base_locale,
                "base_version": v.base_version,
            }
            for v in versions
        ]

    def _version_manifest(self, s: Session, bundle: str, locale: str, version: int) -> Manifest:
        row = s.get(Version, (bundle, locale, version))
        if row is None:
            raise NotFoundError(f"no version {version} of {bundle}/{locale}")
        return self.manifest(row.manifest_id)

    def translation_report(self, bundle: str, locale: str) -> dict[str, Any]:
        """Each file of a variant against its base line: up-to-date, stale, missing or extra.

        A path in both is ``stale`` when the base's file at the latest base version differs
        from the base's file at the version the variant was made from (or did not exist
        then), whatever the variant's own bytes are: a translated file is up to date as long
        as its source did not change. ``missing``: in the latest base only; ``extra``: in
        the variant only.
        """
        check_bundle(bundle)
        check_locale(locale)
        with self._session() as s:
            line = s.get(Line, (bundle, locale))
            if line is None or line.latest_version < 1:
                raise NotFoundError(f"no bundle {bundle!r} in locale {locale!r}")
            if line.base_locale is None:
                raise NotFoundError(f"{bundle}/{locale} is not a locale variant")
            latest = s.get(Version, (bundle, locale, line.latest_version))
            base_line = s.get(Line, (bundle, line.base_locale))
            if latest is None or latest.base_version is None or base_line is None:
                raise NotFoundError(f"{bundle}/{locale} has no recorded base version")
            variant = self.manifest(latest.manifest_id)
            made_from = self._version_manifest(s, bundle, line.base_locale, latest.base_version)
            newest = self._version_manifest(s, bundle, line.base_locale, base_line.latest_version)
        then = {f.path: f.chunks for f in made_from.files}
        now = {f.path: f.chunks for f in newest.files}
        mine = {f.path for f in variant.files}
        files = []
        for path in sorted(mine | set(now)):
            if path not in mine:
                state = "missing"
            elif path not in now:
                state = "extra"
            elif then.get(path) != now[path]:
                state = "stale"
            else:
                state = "up-to-date"
            files.append({"path": path, "state": state})
        counts = {state: 0 for state in TRANSLATION_STATES}
        for item in files:
            counts[item["state"]] += 1
        return {
            "bundle": bundle,
            "locale": locale,
            "version": latest.version,
            "base_locale": line.base_locale,
            "base_version": latest.base_version,
            "latest_base_version": base_line.latest_version,
            "counts": counts,
            "files": files,
        }


class UploadReceiver:
    """Verifies and keeps the objects of one upload as they arrive (one request's worth)."""

    def __init__(
        self, repo: Repository, upload_id: str, expected: dict[str, int], extras: int
    ) -> None:
        self.repo = repo
        self.upload_id = upload_id
        self.expected = expected
        self.extras = extras
        self.stored = 0
        self._lengths: dict[str, int] = {}  # objects of this request, before their rows commit
        # The most one upload request can honestly need: every listed object once, stored raw
        # (encode_object never picks a form larger than raw), and the dictionaries still
        # allowed; anything longer is refused before it is read (issue 7: bounded bodies).
        self.max_bytes = (
            len(MAGIC)
            + HEAD_SIZE
            + sum(HEAD_SIZE + 1 + n for n in expected.values())
            + max(MAX_DICTIONARIES - extras, 0) * (HEAD_SIZE + 1 + MAX_DICTIONARY)
        )

    def _lookup(self, dict_id: str) -> bytes:
        length = self._lengths.get(dict_id)
        if length is None:
            with self.repo._session() as s:
                row = s.get(Chunk, dict_id)
            if row is None:
                raise FormatError(
                    f"chunk uses dictionary {dict_id[:16]}..., which was not uploaded first"
                )
            length = row.length
        return decode_object(self.repo.store.get(dict_id), length)

    def _accept(self, fr: PackFrame) -> Chunk:
        length = self.expected.get(fr.chunk_id)
        if length is not None:
            verify_object(fr.obj, fr.chunk_id, length, self._lookup)
        else:
            # Not in the draft: only a zstd dictionary may come along, small and few per upload.
            if self.extras >= MAX_DICTIONARIES:
                raise IntegrityError("upload carries objects that the draft does not list")
            length = declared_length(fr.obj)
            if length > MAX_DICTIONARY:
                raise FormatError(
                    f"unlisted object of {length:,} bytes is too large for a dictionary"
                )
            data = decode_object(fr.obj, length)
            if chunk_id(data) != fr.chunk_id:
                raise IntegrityError(f"uploaded object {fr.chunk_id[:16]}... does not match its id")
            if not data.startswith(DICTIONARY_MAGIC):
                raise FormatError(
                    "only zstd dictionaries may be uploaded beside the draft's chunks"
                )
            self.extras += 1
        stored = fr.obj
        if not self.repo.store.put(fr.chunk_id, fr.obj):
            # Write-once: describe the bytes really kept, which may be encoded differently.
            stored = self.repo.store.get(fr.chunk_id)
        self._lengths[fr.chunk_id] = length
        return Chunk(
            id=fr.chunk_id,
            length=length,
            stored_size=len(stored),
            dictionary=object_dictionary(stored),
        )

    def receive(self, frames: Iterable[PackFrame]) -> None:
        rows: list[Chunk] = []
        try:
            for fr in frames:
                rows.append(self._accept(fr))
        finally:
            # Record what was stored even when a later frame is refused, so store and
            # database never disagree about an object.
            def record(s: Session) -> None:
                for row in rows:
                    s.merge(row)  # another replica may record the same chunk: retried
                up = s.get(Upload, self.upload_id)
                if up is not None:
                    up.extras = self.extras
                    s.add(up)

            self.repo._transaction("record uploaded chunks", record, lock=False)
            self.stored += len(rows)


class LocalTarget:
    """A PublishTarget that calls a Repository in the same process."""

    def __init__(self, repo: Repository, who: Principal) -> None:
        self.repo = repo
        self.who = who

    def begin(
        self,
        bundle: str,
        locale: str,
        draft: bytes,
        from_locale: str | None = None,
        base_version: int | None = None,
    ) -> BeginResponse:
        return self.repo.begin(self.who, bundle, locale, draft, from_locale, base_version)

    def fetch_object(self, cid: str) -> bytes:
        return self.repo.get_object(cid)

    def upload(self, upload_id: str, pack: Iterator[bytes], length: int | None) -> None:
        receiver = self.repo.upload_receiver(self.who, upload_id)
        reader = PackReader()
        for piece in pack:
            receiver.receive(reader.feed(piece))
        reader.close()

    def commit(self, upload_id: str, notes: str) -> int:
        return self.repo.commit(self.who, upload_id, notes)


def _token_json(row: Token) -> dict[str, Any]:
    return {
        "id": row.id,
        "role": row.role,
        "bundle": row.bundle,
        "locale": row.locale,
        "label": row.label,
        "created": _aware(row.created).isoformat(),
        "revoked": row.revoked,
        "revoked_at": _aware(row.revoked_at).isoformat() if row.revoked_at else None,
    }


def wants_dry_run(request: object) -> bool:
    """Whether a pack request asks only for the pack's size (``"dry_run": true``)."""
    flag = request.get("dry_run", False) if isinstance(request, dict) else False
    if not isinstance(flag, bool):
        raise FormatError("pack request 'dry_run' must be true or false")
    return flag


def _cursor(result: Any) -> CursorResult[Any]:
    # Session.execute is typed as returning Result; UPDATE and DELETE give a CursorResult.
    return cast(CursorResult[Any], result)


def _stale(state: IndexState, now: datetime) -> bool:
    """Whether the stored index must be re-signed (none yet, or half its validity gone)."""
    return not state.body or now >= _aware(state.issued) + INDEX_VALIDITY / 2


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; everything here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
