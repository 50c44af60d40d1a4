"""The signed release index of each line: re-signed inside the transaction that changes the
line, and again when half its validity is gone.

Each line (a bundle in one locale) has its own small index, so what a laptop downloads to
learn about its bundles depends on the lines it follows: a line with a thousand locales, or a
teacher's runaway titles elsewhere, never grows another line's index. The line's index row is
read (and locked, where the database can) before the rows it describes, and the write is a
compare-and-swap on the line's serial, so two writers (or replicas) cannot both issue serial
N+1 of a line, and one serial never has two different bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from satchel.content.errors import FormatError, NotFoundError
from satchel.content.index import MAX_WITHDRAWN, IndexEntry, parse_index
from satchel.content.names import check_bundle, check_locale
from satchel.content.recordskey import derive_records_key
from satchel.content.signing import SigningKey
from satchel.sync.release import INDEX_VALIDITY, sign_index
from satchel.sync.serving import body_etag
from sqlalchemy import update
from sqlmodel import Session, col, select

from .database import Conflict, Database, aware, rowcount
from .db import Line, LineIndex, StaticDelta, Version

NAMED_IN_A_MISS = 20  # lines a "not here" answer names, at most


class IndexSigner:
    def __init__(self, db: Database, key: SigningKey, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.key = key
        self.clock = clock
        # Laptops seal learning records to this key: it travels, signed, in every line index.
        self.records_key = derive_records_key(key).public

    def current(self, bundle: str, locale: str) -> tuple[bytes, str]:
        """A line's signed index and its ETag, (re-)signed first when it has none yet or half
        its validity is gone.

        Replicas may decide to re-sign at the same moment: only one moves the serial, the
        others find a fresh index under the lock (or lose the compare-and-swap and look
        again) and serve that one.
        """
        check_bundle(bundle)
        check_locale(locale)
        with self.db.session() as s:
            state = s.get(LineIndex, (bundle, locale))
            known = state is not None or _published(s, bundle, locale)
            if not known:
                raise NotFoundError(_not_here(s, bundle, locale))
        now = self.clock()
        if state is None or _stale(state, now):
            state = self.db.transaction(
                f"sign the index of {bundle}/{locale}",
                lambda s: self.resign(s, bundle, locale, now, only_if_stale=True),
            )
        return state.body, state.etag

    def resign_if_key_changed(self) -> None:
        """A server started with another --signing-key must not keep serving old indexes."""
        with self.db.session() as s:
            states = s.exec(select(LineIndex)).all()
        for state in states:
            try:
                signer = parse_index(state.body)[1].publisher.keyid
            except FormatError:
                signer = None
            if signer != self.key.public.keyid:
                now = self.clock()
                self.db.transaction(
                    f"re-sign the index of {state.bundle}/{state.locale}",
                    partial(self.resign, bundle=state.bundle, locale=state.locale, now=now),
                )

    def resign(
        self, s: Session, bundle: str, locale: str, now: datetime, *, only_if_stale: bool = False
    ) -> LineIndex:
        """Sign the index of what ``s`` sees of a line, as the serial after the stored one."""
        state = s.exec(
            select(LineIndex)
            .where(LineIndex.bundle == bundle, LineIndex.locale == locale)
            .with_for_update()
        ).first()
        if only_if_stale and state is not None and not _stale(state, now):
            return state
        entry = served_entry(s, bundle, locale)
        if entry is None:
            raise NotFoundError(_not_here(s, bundle, locale))
        serial = state.serial if state is not None else 0
        body = sign_index(
            [entry], serial=serial + 1, key=self.key, now=now, records_key=self.records_key
        )
        signed = LineIndex(
            bundle=bundle,
            locale=locale,
            serial=serial + 1,
            body=body,
            etag=body_etag(body),
            issued=now,
            expires=now + INDEX_VALIDITY,
        )
        if state is None:
            s.add(signed)
            s.flush()  # a concurrent first index: duplicate key, retried by the transaction
            return signed
        moved = s.execute(
            update(LineIndex)
            .where(
                col(LineIndex.bundle) == bundle,
                col(LineIndex.locale) == locale,
                col(LineIndex.serial) == serial,
            )
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
            raise Conflict(f"index serial of {bundle}/{locale} moved")
        s.expunge(state)
        return signed


def _published(s: Session, bundle: str, locale: str) -> bool:
    line = s.get(Line, (bundle, locale))
    return line is not None and line.latest_version > 0


def served_entry(s: Session, bundle: str, locale: str) -> IndexEntry | None:
    """What a line's index says: its newest version not withdrawn (or, for a removed line, its
    last version and that it was removed), the ready-made packs to it, what was withdrawn."""
    line = s.get(Line, (bundle, locale))
    if line is None or line.latest_version < 1:
        return None
    versions = s.exec(
        select(Version)
        .where(Version.bundle == bundle, Version.locale == locale)
        .order_by(col(Version.version).desc())
    ).all()
    withdrawn = [v.version for v in versions if v.withdrawn][:MAX_WITHDRAWN]
    served = next((v for v in versions if not v.withdrawn), None)
    if served is None or line.removed:
        served = versions[0] if versions else None
    if served is None:
        return None
    deltas = s.exec(select(StaticDelta).where(StaticDelta.to_manifest == served.manifest_id)).all()
    return IndexEntry(
        bundle,
        locale,
        served.version,
        served.manifest_id,
        served.manifest_size,
        line.title,
        tuple(sorted({d.from_version for d in deltas}, reverse=True)),
        tuple(v for v in withdrawn if v != served.version),
        line.removed,
    )


def _not_here(s: Session, bundle: str, locale: str) -> str:
    """Why a line has no index here, naming what the server does publish (a few lines)."""
    others = s.exec(
        select(Line)
        .where(Line.latest_version > 0, col(Line.removed).is_(False))
        .order_by(Line.bundle, Line.locale)
        .limit(NAMED_IN_A_MISS + 1)
    ).all()
    names = [f"{o.bundle}/{o.locale}" for o in others[:NAMED_IN_A_MISS]]
    more = ", ..." if len(others) > NAMED_IN_A_MISS else ""
    offered = ", ".join(names) + more if names else "nothing yet"
    return f"{bundle}/{locale} is not published here (offered: {offered})"


def _stale(state: LineIndex, now: datetime) -> bool:
    """Whether a stored index must be re-signed (none yet, or half its validity gone)."""
    return not state.body or now >= aware(state.issued) + INDEX_VALIDITY / 2
