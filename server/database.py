"""One database handle for every part of the server: sessions, and transactions that retry.

Several replicas may share one database, so nothing relies on a process-local lock for
correctness (the lock only spares this process pointless retries). Every write that depends
on what it read is a compare-and-swap; a writer that loses a race raises :class:`Conflict`
(or meets a duplicate key or a lock timeout), rolls back, and runs again on fresh rows.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from satchel.content.errors import StoreError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session

WRITE_ATTEMPTS = 40  # lost races before a write gives up (each retry backs off, up to 0.5 s)
WRITE_PATIENCE = 60.0  # seconds of retrying before a write gives up
T = TypeVar("T")


class Conflict(Exception):
    """Another writer changed a row this transaction's write depends on: roll back, retry."""


# Lost compare-and-swap, duplicate key from a concurrent insert, or (SQLite, PostgreSQL) a
# lock or serialization failure: all mean "try again on fresh rows".
_RETRYABLE = (Conflict, sa_exc.IntegrityError, sa_exc.OperationalError)


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = threading.Lock()

    def session(self) -> Session:
        # Rows are read after the session closes; keep their loaded values.
        return Session(self.engine, expire_on_commit=False)

    def transaction(self, what: str, body: Callable[[Session], T], *, lock: bool = True) -> T:
        """Run ``body`` in one transaction and commit; retry it whole when it loses a race
        with another process (or replica) writing the same rows."""
        delay = 0.005
        # SQLite may already have waited its 30 s busy timeout: bound the whole, not each try.
        deadline = time.monotonic() + WRITE_PATIENCE
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if lock:
                    with self._write, self.session() as s:
                        result = body(s)
                        s.commit()
                else:
                    with self.session() as s:
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


def upsert(s: Session, table: Any, rows: list[dict[str, Any]], key: tuple[str, ...]) -> None:
    """Insert ``rows`` into ``table`` (a SQLModel table class), or overwrite the other columns
    of a row whose ``key`` is there already: one statement for them all (SQLite, PostgreSQL),
    where ``Session.merge`` read, compared and wrote each row (12% of a server's time taking
    an upload of 13,000 chunks)."""
    if not rows:
        return
    # The server runs on these two (docs/deploy.md); both spell it the same way.
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(table.__table__)
    others = {c: stmt.excluded[c] for c in rows[0] if c not in key}
    s.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=others), rows)


def rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (Session.execute is typed as returning Result)."""
    return cast(CursorResult[Any], result).rowcount


def aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
