"""The signed release index: the one changing document, re-signed inside the transaction that
changes what it lists, and again when half its validity is gone.

The index row is read (and locked, where the database can) before the lines it lists, so the
lines include every version committed before that serial; the write is a compare-and-swap on
the serial, so two writers (or replicas) cannot both issue serial N+1, and one serial never
has two different bodies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from satchel.content.errors import FormatError
from satchel.content.index import IndexEntry, parse_index
from satchel.content.recordskey import derive_records_key
from satchel.content.signing import SigningKey
from satchel.sync.release import INDEX_VALIDITY, sign_index
from sqlalchemy import update
from sqlmodel import Session, col, select

from .database import Conflict, Database, aware, rowcount
from .db import IndexState, Line, StaticDelta, Version


class IndexSigner:
    def __init__(self, db: Database, key: SigningKey, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.key = key
        self.clock = clock

    def current(self) -> tuple[bytes, str]:
        """The signed index and its ETag, re-signed first when half its validity is gone.

        Replicas may decide to re-sign at the same moment: only one moves the serial, the
        others find a fresh index under the lock (or lose the compare-and-swap and look
        again) and serve that one.
        """
        with self.db.session() as s:
            state = s.get(IndexState, 1)
        now = self.clock()
        if state is None or _stale(state, now):
            state = self.db.transaction(
                "re-sign the index", lambda s: self.resign(s, now, only_if_stale=True)
            )
        return state.body, state.etag

    def resign_if_key_changed(self) -> None:
        """A server started with another --signing-key must not keep serving the old index."""
        with self.db.session() as s:
            state = s.get(IndexState, 1)
        if state is None or not state.body:
            return
        try:
            signer = parse_index(state.body)[1].publisher.keyid
        except FormatError:
            signer = None
        if signer != self.key.public.keyid:
            self.db.transaction("re-sign the index", lambda s: self.resign(s, self.clock()))

    def resign(self, s: Session, now: datetime, *, only_if_stale: bool = False) -> IndexState:
        """Sign the index of what ``s`` sees, as the serial after the stored one."""
        state = s.exec(select(IndexState).where(IndexState.id == 1).with_for_update()).first()
        if only_if_stale and state is not None and not _stale(state, now):
            return state
        serial = state.serial if state is not None else 0
        body = sign_index(
            _entries(s),
            serial=serial + 1,
            key=self.key,
            now=now,
            records_key=derive_records_key(self.key).public,
        )
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
            s.flush()  # a concurrent first index: duplicate key, retried by the transaction
            return signed
        moved = s.execute(
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
        if rowcount(moved) != 1:
            raise Conflict("index serial moved")
        s.expunge(state)
        return signed


def _entries(s: Session) -> list[IndexEntry]:
    entries = []
    for line in s.exec(select(Line).where(Line.latest_version > 0)).all():
        v = s.get(Version, (line.bundle, line.locale, line.latest_version))
        if v is None:
            continue
        deltas = s.exec(select(StaticDelta).where(StaticDelta.to_manifest == v.manifest_id)).all()
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
    return entries


def _stale(state: IndexState, now: datetime) -> bool:
    """Whether the stored index must be re-signed (none yet, or half its validity gone)."""
    return not state.body or now >= aware(state.issued) + INDEX_VALIDITY / 2
