"""The server's half of a publish: begin (what is missing), receive (verify and keep), commit.

A commit assembles and signs the new version's manifest and builds its ready-made update
packs first, outside any transaction; then one transaction takes the upload, checks that the
line is still at the version the manifest follows, records the version and the packs, and
signs the release index once, already listing the packs. A commit that finds the line moved
on (another publish of the same line won the race) prepares again on the new state, so a
version becomes visible whole or not at all, and the signed index always matches the tables.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from satchel.content import canonical
from satchel.content.chunking import Chunker, chunk_id
from satchel.content.errors import (
    ForbiddenError,
    FormatError,
    IntegrityError,
    NotFoundError,
    SatchelError,
    UsageError,
)
from satchel.content.lessons import structure
from satchel.content.manifest import (
    MAX_DICTIONARIES,
    MAX_MANIFEST_BYTES,
    BaseRef,
    Manifest,
    ManifestDraft,
)
from satchel.content.names import check_bundle, check_locale
from satchel.content.objects import (
    DICTIONARY_MAGIC,
    MAX_DICTIONARY,
    RAW,
    declared_length,
    decode_object,
    document_level,
    encode_object,
    object_dictionary,
    verify_object,
)
from satchel.content.signing import SigningKey
from satchel.sync.delta import static_pack
from satchel.sync.pack import HEAD_SIZE, MAGIC, PackFrame, PackReader
from satchel.sync.plan import encode_want
from satchel.sync.publish import BeginResponse, Publisher
from satchel.sync.release import assemble_manifest, sign_manifest
from satchel.sync.store import ChunkStore, FolderChunkStore, WriteBatch
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from .authz import authorize_publish
from .database import Database, rowcount, upsert
from .db import Chunk, Line, StaticDelta, Upload, Version
from .indexing import IndexSigner
from .reading import ServerSource
from .tokens import SYSTEM, Principal, Tokens

log = logging.getLogger(__name__)

MAX_NOTES = 2000
COMMIT_ATTEMPTS = 20  # times a commit prepares again because its line moved on meanwhile
# What one bundle may grow to: a runaway (or hostile) teacher of one bundle must not make the
# server, its web page or its catalogue heavy for everyone (issue 12, finding 2).
MAX_LOCALES_PER_BUNDLE = 64
MAX_TITLE_BY_ROLE = {"admin": 500, "teacher": 200, "curator": 200}
# A draft begun and never committed is dropped after this long, with what only it uploaded:
# a week covers a teacher on a poor link finishing tomorrow, and no more.
DRAFT_LIFETIME = timedelta(days=7)
SWEEP_EVERY = timedelta(hours=1)


class _LineMoved(Exception):
    """The line is no longer at the version this commit prepared for: prepare again."""


@dataclass(frozen=True, slots=True)
class ExpiredDraft:
    upload: str
    bundle: str
    locale: str
    token_id: int | None
    begun: datetime


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A version made ready outside the transaction that records it."""

    previous: int
    manifest: Manifest
    manifest_id: str
    manifest_size: int
    stored_size: int
    described: dict[str, Any]  # the line's new descriptive fields
    deltas: tuple[StaticDelta, ...]


class Publishing:
    def __init__(
        self,
        db: Database,
        store: ChunkStore,
        key: SigningKey,
        source: ServerSource,
        index: IndexSigner,
        tokens: Tokens,
        clock: Callable[[], datetime],
        static_deltas: int,
    ) -> None:
        self.db = db
        self.store = store
        self.key = key
        self.source = source
        self.index = index
        self.tokens = tokens
        self.clock = clock
        self.static_deltas = static_deltas  # ready-made packs from the last K versions
        self._swept: datetime | None = None

    # -- begin -------------------------------------------------------------------------------
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
        base_latest = authorize_publish(self.db, who, bundle, locale, from_locale)
        self._sweep()
        if base_latest is None:
            if base_version is not None:
                raise UsageError("a base version goes with --from-locale (a variant publish)")
        else:
            base_version = self._variant_base(bundle, locale, base_latest, base_version)
        draft = _draft(draft_bytes)
        self._check_growth(who, bundle, locale, draft)
        distinct = draft.distinct_chunks()
        present = self.source.stored_sizes([cid for cid, _ in distinct])
        want = encode_want(distinct, {cid for cid, _ in distinct if cid not in present})
        upload_id = secrets.token_hex(16)
        with self.db.session() as s:
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
                    created=self.clock(),
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

    def _check_growth(self, who: Principal, bundle: str, locale: str, draft: ManifestDraft) -> None:
        """Refuse a title longer than the role may give, and a locale past the bundle's cap."""
        most = MAX_TITLE_BY_ROLE.get(who.role, min(MAX_TITLE_BY_ROLE.values()))
        for title in (draft.title, draft.meta.title if draft.meta else ""):
            if len(title) > most:
                raise UsageError(
                    f"a title of {len(title)} characters is over the {most} a {who.role} may give"
                )
        with self.db.session() as s:
            if s.get(Line, (bundle, locale)) is not None:
                return
            lines = s.exec(select(Line).where(Line.bundle == bundle)).all()
        if len(lines) >= MAX_LOCALES_PER_BUNDLE:
            raise UsageError(
                f"{bundle} already has {len(lines)} locales, the most one bundle may have;"
                " ask an admin to remove the ones nobody uses"
            )

    def _variant_base(
        self, bundle: str, locale: str, base_latest: int, requested: int | None
    ) -> int:
        if requested is not None:
            if type(requested) is not int or not 1 <= requested <= base_latest:
                raise UsageError(
                    f"base version must be 1..{base_latest} (the base's published versions)"
                )
            return requested
        with self.db.session() as s:
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
        with self.db.session() as s:
            up = s.get(Upload, upload_id)
        if up is None:
            raise NotFoundError(f"no upload {upload_id[:32]!r} (it was committed or never begun)")
        if up.token_id != who.token_id and who.role != "admin":
            raise ForbiddenError("this upload was begun with another token")
        return up, _draft(up.draft)

    # -- receive -----------------------------------------------------------------------------
    def receiver(self, who: Principal, upload_id: str) -> UploadReceiver:
        up, draft = self._upload(who, upload_id)
        return UploadReceiver(self.db, self.store, up.id, dict(draft.distinct_chunks()), up.extras)

    # -- commit ------------------------------------------------------------------------------
    def commit(self, who: Principal, upload_id: str, notes: str = "") -> int:
        up, draft = self._upload(who, upload_id)
        # Checked again: the token may have been revoked, or the line changed, since begin.
        self.tokens.recheck(who)
        authorize_publish(self.db, who, up.bundle, up.locale, up.base_locale)
        if not isinstance(notes, str) or len(notes) > MAX_NOTES:
            raise UsageError(f"notes are a string of at most {MAX_NOTES} characters")
        dictionaries = self._check_uploaded(draft)
        for _ in range(COMMIT_ATTEMPTS):
            ready = self._prepare(up, draft, dictionaries)
            try:
                version = self.db.transaction(
                    f"publish {up.bundle}/{up.locale}",
                    partial(self._record, up=up, who=who, notes=notes, ready=ready),
                )
            except _LineMoved:
                continue
            # Parsed already: the next publish's ready-made packs and this version's first
            # syncs need it, and a 10,000-file manifest takes ~0.3 s to parse again.
            self.source.remember(ready.manifest_id, ready.manifest)
            return version
        raise SatchelError(
            f"cannot publish {up.bundle}/{up.locale}: it kept moving on while this one committed"
        )

    def _check_uploaded(self, draft: ManifestDraft) -> tuple[tuple[str, int], ...]:
        """Every chunk of the draft is stored, and the dictionaries they need: those, listed."""
        ids = [cid for cid, _ in draft.distinct_chunks()]
        rows: dict[str, str | None] = {}  # id -> dictionary (columns: see stored_sizes)
        with self.db.session() as s:
            for i in range(0, len(ids), 500):
                batch = ids[i : i + 500]
                query = select(Chunk.id, Chunk.dictionary).where(col(Chunk.id).in_(batch))
                rows.update(s.exec(query).all())
            absent = [cid for cid in ids if cid not in rows]
            if absent:
                raise IntegrityError(
                    f"{len(absent)} chunks of this version were never uploaded; upload them first"
                )
            dict_ids = sorted({d for d in rows.values() if d})
            dict_rows = [s.get(Chunk, d) for d in dict_ids]
        if any(r is None for r in dict_rows) or len(dict_ids) > MAX_DICTIONARIES:
            raise IntegrityError("a dictionary that chunks of this version need is missing")
        return tuple((r.id, r.length) for r in dict_rows if r is not None)

    def _prepare(
        self, up: Upload, draft: ManifestDraft, dictionaries: tuple[tuple[str, int], ...]
    ) -> _Prepared:
        """The next version of the line as it is now: its signed manifest, stored, and its
        ready-made packs, stored. Nothing names them until the transaction records them (if
        this attempt loses, they stay unreferenced: harmless)."""
        with self.db.session() as s:
            line = s.get(Line, (up.bundle, up.locale))
            base_line = s.get(Line, (up.bundle, up.base_locale)) if up.base_locale else None
        previous = line.latest_version if line is not None else 0
        draft = with_title(draft, line_title(draft, up.bundle, line, base_line))
        base = (
            BaseRef(up.base_locale, up.base_version)
            if up.base_locale is not None and up.base_version is not None
            else None
        )
        manifest = assemble_manifest(
            draft,
            bundle=up.bundle,
            locale=up.locale,
            version=previous + 1,
            parent_version=previous or None,
            created=self.clock(),
            dictionaries=dictionaries,
            base=base,
        )
        envelope = sign_manifest(manifest, self.key)
        manifest_id = hashlib.sha256(envelope).hexdigest()
        manifest_obj = encode_object(envelope, level=document_level(len(envelope)))
        if not self.store.put(manifest_id, manifest_obj):
            manifest_obj = self.store.get(manifest_id)
        meta = manifest.meta
        title = manifest.title
        dictionary = (line.dictionary_id, line.dictionary_length) if line else (None, None)
        if dictionaries and not dictionary[0]:
            dictionary = dictionaries[0]
        described: dict[str, Any] = {
            "latest_version": manifest.version,
            "title": title,
            "dictionary_id": dictionary[0],
            "dictionary_length": dictionary[1],
            "base_locale": up.base_locale,
            "subject": meta.subject if meta else "",
            "grade": meta.grade if meta else "",
            "description": meta.description if meta else "",
            "lessons": len(structure(manifest).lessons),
            "removed": False,  # publishing to a removed line brings it back
        }
        return _Prepared(
            previous=previous,
            manifest=manifest,
            manifest_id=manifest_id,
            manifest_size=len(envelope),
            stored_size=len(manifest_obj),
            described=described,
            deltas=tuple(self._static_deltas(up.bundle, up.locale, manifest, manifest_id)),
        )

    def _static_deltas(
        self, bundle: str, locale: str, new: Manifest, new_id: str
    ) -> Iterator[StaticDelta]:
        """Pack the update from each of the last K versions, for caches to serve."""
        if self.static_deltas <= 0 or new.version < 2:
            return
        with self.db.session() as s:
            olds = s.exec(
                select(Version)
                .where(Version.bundle == bundle, Version.locale == locale)
                .where(Version.version >= new.version - self.static_deltas)
                .order_by(col(Version.version).desc())
            ).all()
        for old in olds:
            try:
                base = self.source.manifest(old.manifest_id)
                body, count = static_pack(new, base, self.store, self.source.lookup_for(new, base))
            except SatchelError as exc:
                # The version is still published; without this pack its clients use the
                # dynamic one. Say so rather than failing a publish that can succeed.
                log.warning(
                    "no ready-made delta %s/%s v%d -> v%d: %s",
                    bundle,
                    locale,
                    old.version,
                    new.version,
                    exc,
                )
                continue
            object_id = chunk_id(body)
            self.store.put(object_id, bytes([RAW]) + body)
            yield StaticDelta(
                from_manifest=old.manifest_id,
                to_manifest=new_id,
                from_version=old.version,
                object_id=object_id,
                size=len(body),
                objects=count,
            )

    def _record(
        self, s: Session, *, up: Upload, who: Principal, notes: str, ready: _Prepared
    ) -> int:
        # Taking the upload first: of two commits of one upload, the second finds nothing.
        taken = s.execute(delete(Upload).where(col(Upload.id) == up.id))
        if rowcount(taken) != 1:
            raise NotFoundError(f"upload {up.id} was already committed")
        line = s.get(Line, (up.bundle, up.locale))
        if (line.latest_version if line is not None else 0) != ready.previous:
            raise _LineMoved()
        manifest = ready.manifest
        s.merge(
            Chunk(
                id=ready.manifest_id,
                length=ready.manifest_size,
                stored_size=ready.stored_size,
            )
        )
        if line is None:
            # A concurrent first publish of this line inserts the same key: retried.
            s.add(Line(bundle=up.bundle, locale=up.locale, **ready.described))
            s.flush()
        else:
            s.expunge(line)
            moved = s.execute(
                update(Line)
                .where(
                    col(Line.bundle) == up.bundle,
                    col(Line.locale) == up.locale,
                    col(Line.latest_version) == ready.previous,
                )
                .values(**ready.described)
                .execution_options(synchronize_session=False)
            )
            if rowcount(moved) != 1:
                raise _LineMoved()
        s.add(
            Version(
                bundle=up.bundle,
                locale=up.locale,
                version=manifest.version,
                manifest_id=ready.manifest_id,
                manifest_size=ready.manifest_size,
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
        for delta in ready.deltas:
            s.merge(delta)  # a copy: the prepared row stays detached if this attempt retries
        s.flush()  # the version's primary key is the last guard against a duplicate
        self.index.resign(s, up.bundle, up.locale, self.clock())
        return manifest.version

    # -- drafts never committed ------------------------------------------------------------
    def _sweep(self) -> None:
        """Expire old drafts now and then (at most every SWEEP_EVERY, in any process)."""
        now = self.clock()
        if self._swept is None or now - self._swept >= SWEEP_EVERY:
            self._swept = now
            self.expire_drafts()
            if isinstance(self.store, FolderChunkStore):  # S3 writes whole objects: no temps
                # Replicas may share the folder: only temps no batch (1 s) can still own.
                self.store.sweep_temp(min_age=SWEEP_EVERY.total_seconds())

    def expire_drafts(self) -> list[ExpiredDraft]:
        """Drop drafts begun more than DRAFT_LIFETIME ago and never committed, with the
        objects only they uploaded (nothing published or begun since names them); each one
        is logged. Returns what was dropped."""
        cutoff = self.clock() - DRAFT_LIFETIME

        def take(s: Session) -> list[ExpiredDraft]:
            old = s.exec(select(Upload).where(col(Upload.created) < cutoff)).all()
            gone = [ExpiredDraft(u.id, u.bundle, u.locale, u.token_id, u.created) for u in old]
            for u in old:
                s.delete(u)
            return gone

        expired = self.db.transaction("expire old drafts", take, lock=False)
        for d in expired:
            log.warning(
                "expired draft %s of %s/%s, begun %s by token %s and never committed",
                d.upload,
                d.bundle,
                d.locale,
                d.begun.isoformat(),
                d.token_id,
            )
        if expired:
            self._collect_unreferenced()
        return expired

    def _collect_unreferenced(self) -> int:
        """Delete recorded objects that no version, live draft, ready-made pack or line
        dictionary names (what expired drafts alone uploaded). Returns how many."""
        with self.db.session() as s:
            recorded = {row.id for row in s.exec(select(Chunk)).all()}
            versions = s.exec(select(Version)).all()
            drafts = [u.draft for u in s.exec(select(Upload)).all()]
            packs = {d.object_id for d in s.exec(select(StaticDelta)).all()}
            dictionaries = {
                line.dictionary_id for line in s.exec(select(Line)).all() if line.dictionary_id
            }
        keep = packs | dictionaries
        for v in versions:
            keep.add(v.manifest_id)
            keep.update(cid for cid, _ in self.source.manifest(v.manifest_id).distinct_chunks())
        for raw in drafts:
            keep.update(cid for cid, _ in _draft(raw).distinct_chunks())
        unreferenced = sorted(recorded - keep)

        def forget(s: Session) -> None:
            for i in range(0, len(unreferenced), 500):
                batch = unreferenced[i : i + 500]
                s.execute(delete(Chunk).where(col(Chunk.id).in_(batch)))

        self.db.transaction("forget objects of expired drafts", forget, lock=False)
        for cid in unreferenced:  # rows first: a lost race only leaves an unlisted object
            self.store.delete(cid)
        if unreferenced:
            log.warning("deleted %d objects that only expired drafts used", len(unreferenced))
        return len(unreferenced)

    # -- in-process --------------------------------------------------------------------------
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
        """Publish a local folder in-process, as the server itself (the sample bundle)."""
        return (
            Publisher(LocalTarget(self, SYSTEM), chunker=Chunker())
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


class UploadReceiver:
    """Verifies and keeps the objects of one upload as they arrive (one request's worth)."""

    def __init__(
        self, db: Database, store: ChunkStore, upload_id: str, expected: dict[str, int], extras: int
    ) -> None:
        self.db = db
        self.store = store
        self.upload_id = upload_id
        self.expected = expected
        self.extras = extras
        self.stored = 0
        self._lengths: dict[str, int] = {}  # objects of this request, before their rows commit
        # Objects are made durable a batch at a time; their rows are recorded in one
        # transaction right after each batch commits, never before (see finish()).
        self._rows: dict[str, dict[str, Any]] = {}  # Chunk columns
        self._dictionaries: dict[str, bytes] = {}  # at most MAX_DICTIONARIES of them
        self._batch = WriteBatch(store, on_commit=self._record)
        # The most one upload request can honestly need: every listed object once, stored raw
        # (encode_object never picks a form larger than raw), and the dictionaries still
        # allowed; anything longer is refused before it is read (bounded bodies).
        self.max_bytes = (
            len(MAGIC)
            + HEAD_SIZE
            + sum(HEAD_SIZE + 1 + n for n in expected.values())
            + max(MAX_DICTIONARIES - extras, 0) * (HEAD_SIZE + 1 + MAX_DICTIONARY)
        )

    def _lookup(self, dict_id: str) -> bytes:
        # Every text chunk of a publish names the same dictionary: read and decode it once.
        data = self._dictionaries.get(dict_id)
        if data is None:
            data = self._dictionaries[dict_id] = self._read_dictionary(dict_id)
        return data

    def _read_dictionary(self, dict_id: str) -> bytes:
        length = self._lengths.get(dict_id)
        if length is None:
            with self.db.session() as s:
                row = s.get(Chunk, dict_id)
            if row is None:
                raise FormatError(
                    f"chunk uses dictionary {dict_id[:16]}..., which was not uploaded first"
                )
            length = row.length
        return decode_object(self._batch.get(dict_id), length)

    def _accept(self, fr: PackFrame) -> None:
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
        self._lengths[fr.chunk_id] = length
        row = {
            "id": fr.chunk_id,
            "length": length,
            "stored_size": len(fr.obj),
            "dictionary": object_dictionary(fr.obj),
        }
        self._rows[fr.chunk_id] = row  # first: the put may commit the batch, and record it
        if not self._batch.put(fr.chunk_id, fr.obj):
            # Write-once: describe the bytes really kept, which may be encoded differently.
            stored = self._batch.get(fr.chunk_id)
            row["stored_size"] = len(stored)
            row["dictionary"] = object_dictionary(stored)

    def _record(self, ids: list[str]) -> None:
        rows = [self._rows.pop(cid) for cid in ids if cid in self._rows]

        def record(s: Session) -> None:
            # Another replica may record the same chunk: the row then describes these bytes.
            upsert(s, Chunk, rows, ("id",))
            up = s.get(Upload, self.upload_id)
            if up is not None:
                up.extras = self.extras
                s.add(up)

        self.db.transaction("record uploaded chunks", record, lock=False)
        self.stored += len(rows)

    def receive(self, frames: Iterable[PackFrame]) -> None:
        """Verify and keep each frame; a refused frame ends the upload, and what was verified
        before it is made durable and recorded first, so store and database agree."""
        try:
            for fr in frames:
                self._accept(fr)
        except BaseException:
            self.finish()
            raise

    def finish(self) -> None:
        """Make every object received so far durable and record it (the end of a request)."""
        self._batch.flush()
        if self._rows:  # objects the store already held: durable, and recorded now
            self._record(list(self._rows))


class LocalTarget:
    """A PublishTarget that publishes into this server, in this process."""

    def __init__(self, publishing: Publishing, who: Principal) -> None:
        self.publishing = publishing
        self.who = who

    def begin(
        self,
        bundle: str,
        locale: str,
        draft: bytes,
        from_locale: str | None = None,
        base_version: int | None = None,
    ) -> BeginResponse:
        return self.publishing.begin(self.who, bundle, locale, draft, from_locale, base_version)

    def fetch_object(self, cid: str) -> bytes:
        return self.publishing.source.get_object(cid)

    def upload(self, upload_id: str, pack: Iterator[bytes], length: int | None) -> None:
        receiver = self.publishing.receiver(self.who, upload_id)
        reader = PackReader()
        try:
            for piece in pack:
                receiver.receive(reader.feed(piece))
        finally:
            receiver.finish()
        reader.close()

    def commit(self, upload_id: str, notes: str) -> int:
        return self.publishing.commit(self.who, upload_id, notes)


def line_title(draft: ManifestDraft, bundle: str, line: Line | None, base_line: Line | None) -> str:
    """The one title rule, for every way in (``satchel publish``, the web page, the sample):
    the title given with this publish (``satchel.toml``'s, else ``--title`` or the form's);
    else the line's last title, so a version published without one keeps it; else, for a new
    locale variant, its base line's; else the bundle's name."""
    given = (draft.meta.title if draft.meta is not None else "") or draft.title
    return (
        given
        or (line.title if line is not None else "")
        or (base_line.title if base_line is not None else "")
        or bundle
    )


def with_title(draft: ManifestDraft, title: str) -> ManifestDraft:
    """The draft with the title it is published under, in the manifest and its metadata."""
    meta = replace(draft.meta, title=title) if draft.meta is not None else None
    return replace(draft, title=title, meta=meta)


def _draft(raw: bytes) -> ManifestDraft:
    return ManifestDraft.from_json(
        canonical.decode(raw, what="manifest draft", max_bytes=MAX_MANIFEST_BYTES)
    )
