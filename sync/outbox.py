"""A laptop's learners and learning records, kept until a server receipt covers them.

``STORE/progress.sqlite`` (SQLite from the standard library, WAL, ``synchronous=FULL``: a
child's answer survives a power cut the moment ``record`` returns) holds:

- ``meta``: ``schema`` (1), ``device`` (the device id the records belong to), ``acked`` (the
  highest seq a verified receipt covers);
- ``learners``: who joined on this laptop (offline: no link is needed);
- ``records``: append-only, numbered by ``AUTOINCREMENT`` (never reused, never renumbered,
  never deleted), seq 1, 2, 3...;
- ``sealed``: the sealed batches made from pending records, kept and sent again as the same
  bytes (the same batch id, which relays and sticks deduplicate) until a receipt covers
  them; then only their id stays, so an export can delete them from a stick.

The seq space belongs to the device key. If the database is lost while the key stays, the
next open gives the store a new device key (the old one is kept aside): new records then
start at 1 under a new device id, instead of reusing numbers the server already holds,
which it would drop as duplicates. A receipt that acknowledges more than this database
holds (a database restored from an old backup) moves the next seq past it for the same
reason.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from satchel.content import canonical
from satchel.content.batch import MAX_BATCH_RECORDS, TARGET_PAYLOAD_BYTES, batch_id, seal_batch
from satchel.content.errors import NotFoundError, StoreError
from satchel.content.joincode import normalise_join_code
from satchel.content.manifest import format_time, parse_time
from satchel.content.names import check_bundle, check_locale
from satchel.content.receipts import Receipt, verify_receipt
from satchel.content.records import (
    Kind,
    Learner,
    Record,
    clean_learner_name,
    new_learner_id,
    score_to_milli,
    utc_seconds,
)
from satchel.content.recordskey import RecordsPublicKey
from satchel.content.signing import PublicKey, SigningKey

from .device import load_device_key, load_or_create_device_key, retire_device_key

PROGRESS_FILE = "progress.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE learners (
    learner TEXT PRIMARY KEY, name TEXT NOT NULL, class_code TEXT NOT NULL,
    bundle TEXT NOT NULL, locale TEXT NOT NULL, joined TEXT NOT NULL
);
CREATE TABLE records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    learner TEXT NOT NULL REFERENCES learners (learner),
    class_code TEXT NOT NULL, bundle TEXT NOT NULL, locale TEXT NOT NULL,
    lesson TEXT NOT NULL, kind TEXT NOT NULL, question TEXT, answer TEXT,
    correct INTEGER, score_milli INTEGER, time TEXT NOT NULL
);
CREATE TABLE sealed (
    batch TEXT PRIMARY KEY, recipient TEXT NOT NULL,
    first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, data BLOB
);
"""
_RECORD_COLUMNS = (
    "seq, learner, class_code, bundle, locale, lesson, kind, question, answer, correct,"
    " score_milli, time"
)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    batch_id: str
    first_seq: int
    last_seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ProgressSummary:
    device: str
    learners: int
    recorded: int  # records kept here (never deleted)
    last_seq: int
    acked_through: int
    pending: int


class Outbox:
    """Learners and the append-only outbox of one store (``STORE/progress.sqlite``).

    One instance may be shared by threads (calls are serialised); several processes may
    open the same store (SQLite's locking, with a 10-second busy wait).
    """

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self._lock = threading.Lock()
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                root / PROGRESS_FILE, timeout=10, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._write():
                self._device = self._open_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{PROGRESS_FILE} in {root} cannot be used ({exc}); restore it from a backup"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot use {root} for learning records: {exc.strerror}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so two writers never deadlock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _open_schema(self) -> str:
        db = self._db
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        if exists:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema") != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{PROGRESS_FILE} has schema {meta.get('schema')!r}, not {SCHEMA_VERSION};"
                    " update satchel"
                )
            if "device" not in meta or "acked" not in meta:
                raise StoreError(
                    f"{PROGRESS_FILE} is damaged (no device); restore it from a backup"
                )
            return str(meta["device"])
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)  # not executescript, which would commit
        if load_device_key(self.root) is not None:
            # A key without its database: its seqs may already be on the server, so new
            # records must not reuse them. A new device starts at seq 1.
            retire_device_key(self.root, durable=self.durable)
        device = load_or_create_device_key(self.root, durable=self.durable).public.keyid
        db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("schema", str(SCHEMA_VERSION)), ("device", device), ("acked", "0")],
        )
        return device

    # -- the device ---------------------------------------------------------------------
    @property
    def device_id(self) -> str:
        return self._device

    def device_key(self) -> SigningKey:
        """The key this store's records are signed with (it must be the one they belong to)."""
        key = load_device_key(self.root)
        if key is None or key.public.keyid != self._device:
            raise StoreError(
                f"{PROGRESS_FILE} belongs to device {self._device[:16]}... but the store's"
                " device-key.pem is missing or another key; restore that key file to send"
                " these records"
            )
        return key

    # -- learners -----------------------------------------------------------------------
    def join(self, name: str, code: str, bundle: str, locale: str, *, now: datetime) -> Learner:
        """Add a learner (offline). Joining again with the same details returns the same one."""
        clean = clean_learner_name(name)
        shown = normalise_join_code(code)
        check_bundle(bundle)
        check_locale(locale)
        with self._write() as db:
            row = db.execute(
                "SELECT * FROM learners WHERE name = ? AND class_code = ? AND bundle = ?"
                " AND locale = ? ORDER BY joined, learner LIMIT 1",
                (clean, shown, bundle, locale),
            ).fetchone()
            if row is not None:
                return _learner(row)
            learner = Learner(new_learner_id(), clean, shown, bundle, locale, utc_seconds(now))
            db.execute(
                "INSERT INTO learners VALUES (?, ?, ?, ?, ?, ?)",
                (
                    learner.learner,
                    learner.name,
                    learner.class_code,
                    learner.bundle,
                    learner.locale,
                    format_time(learner.joined),
                ),
            )
            return learner

    def learners(self) -> list[Learner]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM learners ORDER BY joined, name").fetchall()
        return [_learner(r) for r in rows]

    def learner(self, learner_id: str) -> Learner:
        with self._read() as db:
            row = db.execute("SELECT * FROM learners WHERE learner = ?", (learner_id,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"learner {learner_id!r} has not joined on this laptop; run satchel join"
            )
        return _learner(row)

    # -- records ------------------------------------------------------------------------
    def record(
        self,
        learner: str,
        bundle: str,
        locale: str,
        lesson: str,
        kind: str,
        *,
        question: str | None = None,
        answer: str | None = None,
        correct: bool | None = None,
        score: float | None = None,
        now: datetime,
    ) -> int:
        """Append one record (checked by every rule the server applies); returns its seq."""
        who = self.learner(learner)
        if answer is not None:  # browsers send a textarea's line ends as CR LF
            answer = answer.replace("\r\n", "\n").replace("\r", "\n")
        draft = Record(
            seq=1,  # checked with a stand-in; the database assigns the real one
            learner=who.learner,
            class_code=who.class_code,
            bundle=bundle,
            locale=locale,
            lesson=lesson,
            kind=cast(Kind, kind),
            question=question,
            answer=answer,
            correct=correct,
            score_milli=score_to_milli(score),
            time=utc_seconds(now),
        )
        with self._write() as db:
            cur = db.execute(
                f"INSERT INTO records ({_RECORD_COLUMNS}) VALUES (NULL,?,?,?,?,?,?,?,?,?,?,?)",
                _row(draft)[1:],
            )
            seq = cur.lastrowid
        assert seq is not None
        return seq

    def records(
        self, *, learner: str | None = None, after: int = 0, limit: int | None = None
    ) -> list[Record]:
        """Recorded records with seq > ``after``, oldest first (optionally one learner's)."""
        sql = f"SELECT {_RECORD_COLUMNS} FROM records WHERE seq > ?"
        args: list[Any] = [after]
        if learner is not None:
            sql += " AND learner = ?"
            args.append(learner)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._read() as db:
            return [_record(r) for r in db.execute(sql, args).fetchall()]

    def pending(self, limit: int | None = None) -> list[Record]:
        """Records no receipt covers yet, oldest first."""
        return self.records(after=self.acked, limit=limit)

    @property
    def acked(self) -> int:
        with self._read() as db:
            return _acked(db)

    @property
    def last_seq(self) -> int:
        with self._read() as db:
            return _last_seq(db)

    def summary(self) -> ProgressSummary:
        with self._read() as db:
            acked, last = _acked(db), _last_seq(db)
            learners = db.execute("SELECT count(*) FROM learners").fetchone()[0]
            recorded = db.execute("SELECT count(*) FROM records").fetchone()[0]
            pending = db.execute("SELECT count(*) FROM records WHERE seq > ?", (acked,))
            count = pending.fetchone()[0]
        return ProgressSummary(self._device, learners, recorded, last, acked, count)

    # -- receipts -----------------------------------------------------------------------
    def apply_receipt(self, data: bytes, publisher: PublicKey) -> int:
        """Verify a receipt under the pinned key and mark what it covers as delivered.

        Returns how many records it newly covers: 0 for another device's receipt or one
        that covers no more than is already acknowledged (acks never go backwards).
        Raises TrustError/FormatError for a receipt that does not verify.
        """
        return self._apply(verify_receipt(data, publisher))

    def _apply(self, receipt: Receipt) -> int:
        if receipt.device != self._device:
            return 0
        with self._write() as db:
            acked, last = _acked(db), _last_seq(db)
            n = receipt.acked_through
            if n <= acked:
                return 0
            newly = db.execute(
                "SELECT count(*) FROM records WHERE seq > ? AND seq <= ?", (acked, n)
            ).fetchone()[0]
            if n > last:
                # The server holds records this database lost (restored from an old backup):
                # new records must be numbered after them, or they would be dropped as repeats.
                updated = db.execute(
                    "UPDATE sqlite_sequence SET seq = ? WHERE name = 'records'", (n,)
                )
                if updated.rowcount == 0:
                    db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (n,)
                    )
            db.execute("UPDATE meta SET value = ? WHERE key = 'acked'", (str(n),))
            db.execute("UPDATE sealed SET data = NULL WHERE last_seq <= ?", (n,))
            return int(newly)

    # -- sealed batches -----------------------------------------------------------------
    def sealed_batches(self, recipient: RecordsPublicKey) -> list[SealedBatch]:
        """Every pending record, sealed to ``recipient``: earlier batches again as they were
        (same bytes, same id), and new batches for records recorded since."""
        with self._write() as db:
            acked = _acked(db)
            db.execute(
                "UPDATE sealed SET data = NULL WHERE data IS NOT NULL"
                " AND (recipient != ? OR last_seq <= ?)",
                (recipient.keyid, acked),
            )
            live = [
                SealedBatch(r[0], r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT batch, first_seq, last_seq, data FROM sealed"
                    " WHERE data IS NOT NULL ORDER BY first_seq"
                ).fetchall()
            ]
            covered = max([acked, *(b.last_seq for b in live)])
            rows = db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE seq > ? ORDER BY seq", (covered,)
            ).fetchall()
            if not rows:
                return live
            key = self.device_key()
            learners = {r[0]: _learner(r) for r in db.execute("SELECT * FROM learners").fetchall()}
            for group in _groups([_record(r) for r in rows]):
                data = seal_batch(
                    [learners[x] for x in sorted({r.learner for r in group})],
                    group,
                    key,
                    recipient,
                )
                batch = SealedBatch(batch_id(data), group[0].seq, group[-1].seq, data)
                db.execute(
                    "INSERT INTO sealed VALUES (?, ?, ?, ?, ?)",
                    (batch.batch_id, recipient.keyid, batch.first_seq, batch.last_seq, data),
                )
                live.append(batch)
            return live

    def own_batches(self) -> set[str]:
        """Ids of every batch this laptop ever sealed (so it never relays its own batches
        when a stick it wrote comes back)."""
        with self._read() as db:
            return {r[0] for r in db.execute("SELECT batch FROM sealed")}

    def obsolete_batches(self) -> set[str]:
        """Ids of batches this laptop made that need carrying no more (delivered, or sealed
        to a key the server no longer has): an export deletes them from a stick."""
        with self._read() as db:
            return {r[0] for r in db.execute("SELECT batch FROM sealed WHERE data IS NULL")}


def _groups(records: list[Record]) -> Iterator[list[Record]]:
    group: list[Record] = []
    size = 0
    for rec in records:
        cost = len(canonical.encode(rec.to_json())) + 400  # + its learner, at most
        if group and (len(group) >= MAX_BATCH_RECORDS or size + cost > TARGET_PAYLOAD_BYTES):
            yield group
            group, size = [], 0
        group.append(rec)
        size += cost
    if group:
        yield group


def _acked(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'acked'").fetchone()[0])


def _last_seq(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    return int(row[0]) if row else 0


def _learner(row: tuple[Any, ...]) -> Learner:
    return Learner(row[0], row[1], row[2], row[3], row[4], parse_time(row[5], "learner joined"))


def _row(rec: Record) -> tuple[Any, ...]:
    return (
        rec.seq,
        rec.learner,
        rec.class_code,
        rec.bundle,
        rec.locale,
        rec.lesson,
        rec.kind,
        rec.question,
        rec.answer,
        None if rec.correct is None else int(rec.correct),
        rec.score_milli,
        format_time(rec.time),
    )


def _record(row: tuple[Any, ...]) -> Record:
    return Record(
        seq=row[0],
        learner=row[1],
        class_code=row[2],
        bundle=row[3],
        locale=row[4],
        lesson=row[5],
        kind=row[6],
        question=row[7],
        answer=row[8],
        correct=None if row[9] is None else bool(row[9]),
        score_milli=row[10],
        time=parse_time(row[11], "record time"),
    )
