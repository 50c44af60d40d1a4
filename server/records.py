"""The server's side of learning records: every sealed batch opened, decided and stored once.

Each batch is opened outside any transaction (HPKE, zstd, the device signature: the CPU
work), then decided and applied in **one** transaction that first locks the device's row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer), so two deliveries of the
same device (a laptop and a relay at once, or two replicas) never decide on the same ledger
state; the unique key (device, seq) is the last guard, and a writer that meets it retries on
fresh rows (:meth:`~satchel.server.database.Database.transaction`). The decision itself is
:class:`satchel.sync.ingest.Ingest`, over :class:`SqlLedger` (this module's tables).

Rules the server adds to the core's:

- a **revoked device**'s batch is refused whole; the reason the teacher gave goes to the log
  and to the signed answer, and the device row counts refused batches for the report;
- records whose **class code** the server never issued, or of a **revoked learner**, are
  stored (so the device's acknowledgement moves on and nothing is lost) but quarantined:
  reported as such, never mixed into a class's results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from satchel.content.batch import VerifiedBatch, batch_id, open_batch
from satchel.content.errors import ContentError
from satchel.content.receipts import Receipt, check_device_id, sign_answer, sign_receipt
from satchel.content.recordskey import RecordsPrivateKey, derive_records_key
from satchel.content.signing import SigningKey
from satchel.sync.ingest import Ingest, IngestDecision
from satchel.sync.records_exchange import RecordsReply
from sqlalchemy import insert
from sqlmodel import Session, col, select

from .database import Database
from .db import Device, LearnerRow, RecordAck, RecordRow, SchoolClass

log = logging.getLogger("satchel.records")

UNKNOWN_CLASS = "unknown class code"
LEARNER_REVOKED = "learner revoked"


class SqlLedger:
    """The ingest ledger over this server's tables, inside one transaction (``s``)."""

    def __init__(self, s: Session, now: datetime) -> None:
        self.s = s
        self.now = now

    def acked_through(self, device: str) -> int:
        row = self.s.get(RecordAck, device)
        return row.acked_through if row is not None else 0

    def stored(self, device: str, seqs: Sequence[int]) -> AbstractSet[int]:
        if not seqs:
            return frozenset()
        # One range scan of the (device, seq) unique index, not a list of thousands of ids.
        rows = self.s.exec(
            select(RecordRow.seq).where(
                RecordRow.device == device,
                col(RecordRow.seq) >= seqs[0],
                col(RecordRow.seq) <= seqs[-1],
            )
        ).all()
        wanted = set(seqs)
        return {int(seq) for seq in rows if seq in wanted}

    def learner_devices(self, learners: Sequence[str]) -> Mapping[str, str]:
        if not learners:
            return {}
        rows = self.s.exec(
            select(LearnerRow.id, LearnerRow.device).where(col(LearnerRow.id).in_(learners))
        ).all()
        return {learner: device for learner, device in rows}

    def apply(self, decision: IngestDecision, batch: VerifiedBatch | None = None) -> int:
        """Store a decision; returns how many of its records were quarantined."""
        s = self.s
        for lr in decision.new_learners:
            s.add(
                LearnerRow(
                    id=lr.learner,
                    device=decision.device,
                    name=lr.name,
                    class_code=lr.class_code,
                    bundle=lr.bundle,
                    locale=lr.locale,
                    joined=lr.joined,
                    first_seen=self.now,
                )
            )
        if decision.new_learners:
            s.flush()  # a learner another delivery just stored: duplicate key, retried
        quarantined = 0
        if decision.insert:
            codes = sorted({r.class_code for r in decision.insert})
            known = set(
                s.exec(select(SchoolClass.code).where(col(SchoolClass.code).in_(codes))).all()
            )
            learners = sorted({r.learner for r in decision.insert})
            revoked = set(
                s.exec(
                    select(LearnerRow.id).where(
                        col(LearnerRow.id).in_(learners), col(LearnerRow.revoked).is_(True)
                    )
                ).all()
            )
            rows = []
            for r in decision.insert:
                why = (
                    UNKNOWN_CLASS
                    if r.class_code not in known
                    else LEARNER_REVOKED
                    if r.learner in revoked
                    else None
                )
                quarantined += why is not None
                rows.append(
                    {
                        "device": decision.device,
                        "seq": r.seq,
                        "learner": r.learner,
                        "class_code": r.class_code,
                        "bundle": r.bundle,
                        "locale": r.locale,
                        "lesson": r.lesson,
                        "kind": r.kind,
                        "question": r.question,
                        "answer": r.answer,
                        "correct": r.correct,
                        "score_milli": r.score_milli,
                        "time": r.time,
                        "received": self.now,
                        "batch": decision.batch_id,
                        "quarantine": why,
                    }
                )
            # Core executemany on the session's connection: one statement for the batch
            # (the ORM's bulk path compiles per row group, four times slower here).
            s.connection().execute(insert(RecordRow.__table__), rows)  # type: ignore[attr-defined]
        ack = s.get(RecordAck, decision.device)
        if ack is None:
            s.add(RecordAck(device=decision.device, acked_through=decision.acked_through))
        elif decision.acked_through > ack.acked_through:
            ack.acked_through = decision.acked_through
            ack.updated = self.now
            s.add(ack)
        return quarantined


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery (a request, or a relay's load) did, and the signed reply."""

    accepted: tuple[str, ...]  # batch ids
    refused: tuple[tuple[str, str], ...]  # (batch id, reason)
    inserted: int
    duplicates: int
    quarantined: int
    reply: RecordsReply


class _Revoked(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Records:
    """Ingest of sealed batches, and the receipts a device asks for."""

    def __init__(self, db: Database, key: SigningKey, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.key = key
        self.clock = clock
        self.records_key: RecordsPrivateKey = derive_records_key(key)

    def deliver(self, sealed: Sequence[bytes], device: str | None = None) -> Delivery:
        """Open, decide and store each batch alone (a bad one is refused with its reason and
        the others go on); then one receipt per device that delivered a batch, and for
        ``device`` (the laptop that asks), and one answer naming every batch."""
        if device is not None:
            check_device_id(device, "request")
        now = self.clock()
        accepted: list[str] = []
        refused: list[tuple[str, str]] = []
        devices: list[str] = [device] if device is not None else []
        inserted = duplicates = quarantined = 0
        seen: set[str] = set()
        for data in sealed:
            bid = batch_id(data)
            if bid in seen:
                continue  # the same bytes twice in one request: decided once
            seen.add(bid)
            try:
                batch = open_batch(data, self.records_key)
                decision, held = self.db.transaction(
                    "store learning records", partial(self._decide, batch=batch, now=now)
                )
            except _Revoked as exc:
                refused.append((bid, exc.reason))
                log.warning("records batch %s refused: %s", bid[:16], exc.reason)
                continue
            except ContentError as exc:
                refused.append((bid, str(exc)))
                log.warning("records batch %s refused: %s", bid[:16], exc)
                continue
            accepted.append(bid)
            inserted += len(decision.insert)
            duplicates += decision.duplicates
            quarantined += held
            if decision.device not in devices:
                devices.append(decision.device)
            log.info(
                "records batch %s from device %s: %d new, %d repeated, acked through %d",
                bid[:16],
                decision.device[:16],
                len(decision.insert),
                decision.duplicates,
                decision.acked_through,
            )
        receipts = tuple(
            sign_receipt(self.key, Receipt(d, acked, now))
            for d, acked in self._acks(devices).items()
        )
        answer = sign_answer(self.key, accepted, refused, now)
        return Delivery(
            tuple(accepted),
            tuple(refused),
            inserted,
            duplicates,
            quarantined,
            RecordsReply(receipts=receipts, answer=answer),
        )

    def receive(self, batches: Sequence[bytes], device: str | None) -> RecordsReply:
        """The route's sink (:class:`~satchel.sync.records_exchange.RecordsSink`)."""
        return self.deliver(batches, device).reply

    def _decide(
        self, s: Session, batch: VerifiedBatch, now: datetime
    ) -> tuple[IngestDecision, int]:
        row = s.exec(select(Device).where(Device.id == batch.device).with_for_update()).first()
        if row is None:
            row = Device(id=batch.device, first_seen=now, last_seen=now)
            s.add(row)
            s.flush()  # two first deliveries at once: one meets the duplicate key and retries
        if row.revoked:
            row.refused_batches += 1
            row.last_refused = now
            s.add(row)
            s.commit()  # the count is kept; the batch is not
            why = row.revoked_reason or "no reason given"
            reason = f"device {batch.device[:16]}... is revoked: {why}"
            raise _Revoked(reason)
        ledger = SqlLedger(s, now)
        decision = Ingest(ledger).decide(batch)  # TrustError: another device's learner
        held = ledger.apply(decision, batch)
        row.last_seen = now
        s.add(row)
        return decision, held

    def _acks(self, devices: Sequence[str]) -> dict[str, int]:
        if not devices:
            return {}
        with self.db.session() as s:
            rows = s.exec(select(RecordAck).where(col(RecordAck.device).in_(devices))).all()
        acks = {r.device: r.acked_through for r in rows}
        return {d: acks[d] for d in devices if d in acks}
