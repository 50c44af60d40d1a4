"""The server's ingest decision for one verified batch: what to store, exactly once.

Sans-IO: the server's tables sit behind a small :class:`Ledger` (how far each device is
acknowledged, which of its seqs are stored, which device owns a learner id); the decision is
a value the server applies in one transaction, together with the ledger reads, holding the
device's row lock (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's single writer), and a
unique key on (device, seq) as the last guard. The rules:

- a revoked device's batch is refused whole (TrustError, for the log and the report);
- a learner id is owned by the device that first reported it; a batch naming a learner that
  another device owns is refused (learner ids are 128 random bits, so an honest device never
  collides: this is an attempt to write into someone else's record);
- a record is inserted exactly once by (device, seq): a seq at or below the device's
  acknowledged seq, or already stored, is a repeat and adds nothing; so any route, any
  order and any number of deliveries of the same records give each record once;
- the new ``acked_through`` is the highest seq N such that every seq 1..N of the device is
  stored: records that arrive ahead of a gap are stored but not acknowledged until the gap
  fills, so the laptop keeps them (and resends them, harmlessly) until then.

:func:`process_batches` runs a whole delivery (one request, or what a relay forwards): each
batch alone (a bad one is refused with its reason, the others go on), then one signed receipt
per device and one signed answer naming every batch, for the relay to drop them.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from satchel.content.batch import VerifiedBatch, batch_id, open_batch
from satchel.content.errors import ContentError, StoreError, TrustError
from satchel.content.receipts import Receipt, sign_answer, sign_receipt
from satchel.content.records import Learner, Record
from satchel.content.recordskey import RecordsPrivateKey
from satchel.content.signing import SigningKey

PROBE = 1024  # seqs asked about at once when acknowledgement runs past a batch's end


class Ledger(Protocol):
    """What the server knows already (its tables), asked by the ingest decision."""

    def acked_through(self, device: str) -> int:
        """The device's highest contiguous stored seq (0 when none)."""
        ...

    def stored(self, device: str, seqs: Sequence[int]) -> AbstractSet[int]:
        """Which of ``seqs`` (ascending) of ``device`` are already stored."""
        ...

    def learner_devices(self, learners: Sequence[str]) -> Mapping[str, str]:
        """The owning device of each of ``learners`` that is known (absent: new learner)."""
        ...


@dataclass(frozen=True, slots=True)
class IngestDecision:
    batch_id: str
    device: str
    insert: tuple[Record, ...]  # new records, ascending seq
    new_learners: tuple[Learner, ...]  # learners to store as owned by ``device``
    duplicates: int  # records of the batch already stored (a repeat delivery)
    previous_acked: int
    acked_through: int  # store this for the device; the receipt says it


class Ingest:
    """Decides what a verified batch adds, given the revoked devices and the ledger."""

    def __init__(self, ledger: Ledger, revoked: Container[str] = frozenset()) -> None:
        self.ledger = ledger
        self.revoked = revoked

    def open_and_decide(self, sealed: bytes, records_key: RecordsPrivateKey) -> IngestDecision:
        return self.decide(open_batch(sealed, records_key))

    def decide(self, batch: VerifiedBatch) -> IngestDecision:
        device = batch.device
        if device in self.revoked:
            raise TrustError(
                f"device {device[:16]}... is revoked; its records are refused (batch"
                f" {batch.batch_id[:16]}...)"
            )
        owners = self.ledger.learner_devices([lr.learner for lr in batch.learners])
        for learner, owner in owners.items():
            if owner != device:
                raise TrustError(
                    f"batch {batch.batch_id[:16]}... from device {device[:16]}... names learner"
                    f" {learner} of another device; refused"
                )
        acked = self.ledger.acked_through(device)
        fresh = [r for r in batch.records if r.seq > acked]
        stored = self.ledger.stored(device, [r.seq for r in fresh]) if fresh else frozenset()
        insert = tuple(r for r in fresh if r.seq not in stored)
        through = self._contiguous(device, acked, {r.seq for r in insert}) if fresh else acked
        return IngestDecision(
            batch_id=batch.batch_id,
            device=device,
            insert=insert,
            new_learners=tuple(lr for lr in batch.learners if lr.learner not in owners),
            duplicates=len(batch.records) - len(insert),
            previous_acked=acked,
            acked_through=through,
        )

    def _contiguous(self, device: str, acked: int, inserted: set[int]) -> int:
        """The highest N with 1..N all stored once ``inserted`` is: walks the batch's seqs and
        the ledger's (earlier records ahead of a gap the batch fills), PROBE seqs a query."""
        through = acked
        while True:
            probe = list(range(through + 1, through + 1 + PROBE))
            have = inserted | set(self.ledger.stored(device, probe))
            while through + 1 in have:
                through += 1
            if through < probe[-1]:
                return through


@dataclass
class MemoryLedger:
    """A ledger in memory: the reference for the server's tables, and what tests and the
    bench ingest into. :meth:`apply` refuses to store a (device, seq) twice."""

    acked: dict[str, int] = field(default_factory=dict)
    records: dict[tuple[str, int], Record] = field(default_factory=dict)
    learners: dict[str, tuple[str, Learner]] = field(default_factory=dict)  # id -> (device, _)

    def acked_through(self, device: str) -> int:
        return self.acked.get(device, 0)

    def stored(self, device: str, seqs: Sequence[int]) -> AbstractSet[int]:
        return {s for s in seqs if (device, s) in self.records}

    def learner_devices(self, learners: Sequence[str]) -> Mapping[str, str]:
        return {x: self.learners[x][0] for x in learners if x in self.learners}

    def apply(self, decision: IngestDecision) -> None:
        for rec in decision.insert:
            key = (decision.device, rec.seq)
            if key in self.records:
                raise StoreError(f"record {key} would be stored twice")
            self.records[key] = rec
        for lr in decision.new_learners:
            self.learners.setdefault(lr.learner, (decision.device, lr))
        if decision.acked_through < self.acked_through(decision.device):
            raise StoreError("an ingest decision would lower a device's acknowledgement")
        self.acked[decision.device] = decision.acked_through


class ApplyingLedger(Ledger, Protocol):
    """A ledger that can also store a decision (the server: one transaction per decision)."""

    def apply(self, decision: IngestDecision) -> None: ...


@dataclass(frozen=True, slots=True)
class Processed:
    """What the server answers for a set of sealed batches (one request, or a relay's load)."""

    decisions: tuple[IngestDecision, ...]
    refused: tuple[tuple[str, str], ...]  # (batch id, reason): for the log and the report
    receipts: tuple[bytes, ...]  # one signed receipt per device that sent an accepted batch
    answer: bytes  # the signed answer naming every batch accepted or refused

    @property
    def inserted(self) -> int:
        return sum(len(d.insert) for d in self.decisions)


def process_batches(
    sealed: Iterable[bytes],
    records_key: RecordsPrivateKey,
    ledger: ApplyingLedger,
    signing_key: SigningKey,
    *,
    now: datetime,
    revoked: Container[str] = frozenset(),
) -> Processed:
    """Open, decide and apply each batch in turn, then sign the receipts and the answer.

    A batch that does not open or verify, or that the rules refuse, is refused alone (the
    error's one-line message is the reason) and the others go on; nothing it holds is kept.
    """
    ingest = Ingest(ledger, revoked)
    decisions: list[IngestDecision] = []
    refused: list[tuple[str, str]] = []
    devices: list[str] = []
    for data in sealed:
        try:
            decision = ingest.open_and_decide(data, records_key)
        except ContentError as exc:
            refused.append((batch_id(data), str(exc)))
            continue
        ledger.apply(decision)
        decisions.append(decision)
        if decision.device not in devices:
            devices.append(decision.device)
    receipts = tuple(
        sign_receipt(signing_key, Receipt(d, ledger.acked_through(d), now)) for d in devices
    )
    answer = sign_answer(signing_key, [d.batch_id for d in decisions], refused, now)
    return Processed(tuple(decisions), tuple(refused), receipts, answer)
