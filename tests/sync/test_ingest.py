"""The server's ingest decision: each record exactly once, whatever the route did to the batches."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.content.batch import batch_id, open_batch, seal_batch
from satchel.content.errors import StoreError, TrustError
from satchel.content.receipts import Receipt, verify_answer, verify_receipt
from satchel.content.records import Learner, Record
from satchel.content.recordskey import derive_records_key
from satchel.content.signing import SigningKey
from satchel.sync.ingest import PROBE, Ingest, MemoryLedger, process_batches

from harness.records import T0, learner, records

SERVER = SigningKey.generate()
RECORDS = derive_records_key(SERVER)


@dataclass(frozen=True)
class Device:
    key: SigningKey
    who: Learner

    @property
    def id(self) -> str:
        return self.key.public.keyid

    def batch(self, first: int, last: int) -> bytes:
        return seal_batch([self.who], records(first, last, self.who), self.key, RECORDS.public)


def device(name: str = "Ana") -> Device:
    return Device(SigningKey.generate(), learner(name))


def ingest(ledger: MemoryLedger, sealed: bytes, revoked: frozenset[str] = frozenset()) -> int:
    decision = Ingest(ledger, revoked).open_and_decide(sealed, RECORDS)
    ledger.apply(decision)
    return len(decision.insert)


def test_a_replayed_batch_adds_nothing() -> None:
    ana, ledger = device(), MemoryLedger()
    sealed = ana.batch(1, 5)
    assert ingest(ledger, sealed) == 5
    decision = Ingest(ledger).open_and_decide(sealed, RECORDS)
    assert (decision.insert, decision.duplicates, decision.acked_through) == ((), 5, 5)
    ledger.apply(decision)
    # The same records sealed again (new bytes, new batch id) add nothing either.
    assert ingest(ledger, ana.batch(1, 5)) == 0
    assert len(ledger.records) == 5


def test_records_ahead_of_a_gap_are_stored_but_acknowledged_only_once_it_fills() -> None:
    ana, ledger = device(), MemoryLedger()
    assert ingest(ledger, ana.batch(6, 9)) == 4
    assert ledger.acked_through(ana.id) == 0
    assert ingest(ledger, ana.batch(1, 3)) == 3
    assert ledger.acked_through(ana.id) == 3  # 4 and 5 are still missing
    decision = Ingest(ledger).open_and_decide(ana.batch(3, 5), RECORDS)
    assert [r.seq for r in decision.insert] == [4, 5] and decision.duplicates == 1
    assert decision.acked_through == 9  # runs on over 6..9 stored earlier
    ledger.apply(decision)


def test_acknowledgement_runs_on_across_more_than_one_probe() -> None:
    ana, ledger = device(), MemoryLedger()
    ingest(ledger, ana.batch(2, PROBE + 600))
    assert ledger.acked_through(ana.id) == 0
    ingest(ledger, ana.batch(1, 1))
    assert ledger.acked_through(ana.id) == PROBE + 600


def test_a_revoked_device_is_refused_and_nothing_is_stored() -> None:
    ana, ledger = device(), MemoryLedger()
    with pytest.raises(TrustError, match="revoked"):
        ingest(ledger, ana.batch(1, 2), revoked=frozenset({ana.id}))
    assert ledger.records == {}


def test_a_device_cannot_write_into_another_devices_learner() -> None:
    ana, ledger = device(), MemoryLedger()
    ingest(ledger, ana.batch(1, 2))
    thief = Device(SigningKey.generate(), ana.who)  # knows Ana's learner id somehow
    with pytest.raises(TrustError, match="another device"):
        ingest(ledger, thief.batch(1, 2))
    assert len(ledger.records) == 2


def test_the_memory_ledger_refuses_to_store_twice() -> None:
    ana, ledger = device(), MemoryLedger()
    sealed = ana.batch(1, 2)
    decision = Ingest(ledger).open_and_decide(sealed, RECORDS)
    ledger.apply(decision)
    with pytest.raises(StoreError, match="twice"):
        ledger.apply(decision)


def test_processing_a_mixed_load_refuses_the_bad_and_signs_receipts_for_the_good() -> None:
    ana, bob, eve = device("Ana"), device("Bob"), device("Eve")
    ledger = MemoryLedger()
    good_a, good_b, revoked = ana.batch(1, 4), bob.batch(1, 2), eve.batch(1, 1)
    flipped = bytearray(ana.batch(5, 6))
    flipped[100] ^= 1
    result = process_batches(
        [good_a, bytes(flipped), good_b, revoked, good_a],
        RECORDS,
        ledger,
        SERVER,
        now=T0,
        revoked=frozenset({eve.id}),
    )
    assert result.inserted == 6
    reasons = dict(result.refused)
    assert set(reasons) == {batch_id(bytes(flipped)), batch_id(revoked)}
    assert "does not decrypt" in reasons[batch_id(bytes(flipped))]
    assert "revoked" in reasons[batch_id(revoked)]
    receipts = {r.device: r.acked_through for r in map(_receipt, result.receipts)}
    assert receipts == {ana.id: 4, bob.id: 2}
    answer = verify_answer(result.answer, SERVER.public)
    assert set(answer.accepted) == {batch_id(good_a), batch_id(good_b)}
    assert answer.finished == {batch_id(good_a), batch_id(good_b), *reasons}


def _receipt(data: bytes) -> Receipt:
    return verify_receipt(data, SERVER.public)


# -- the exactly-once property ----------------------------------------------------------------
def _build_fleet() -> tuple[list[Device], list[bytes], dict[tuple[str, int], Record]]:
    fleet = [device(n) for n in ("Ana", "Bob", "Cy")]
    cuts = [(1, 3), (4, 4), (5, 9), (10, 12)]
    batches: list[bytes] = []
    truth: dict[tuple[str, int], Record] = {}
    for dev in fleet:
        for first, last in cuts:
            batches.append(dev.batch(first, last))
        # The laptop sealed its pending records again after a partial receipt: overlapping.
        batches.append(dev.batch(4, 12))
        for rec in records(1, 12, dev.who):
            truth[(dev.id, rec.seq)] = rec
    return fleet, batches, truth


FLEET, BATCHES, TRUTH = _build_fleet()
SPANS = [[r.seq for r in open_batch(b, RECORDS).records] for b in BATCHES]


@settings(max_examples=200, derandomize=True, database=None)
@given(deliveries=st.lists(st.integers(0, len(BATCHES) - 1), max_size=40))
def test_any_deliveries_store_each_record_exactly_once(deliveries: list[int]) -> None:
    ledger = MemoryLedger()
    for i in deliveries:  # duplicates, any order, any subset: what relays and sticks do
        ingest(ledger, BATCHES[i])  # MemoryLedger.apply raises on a second store
    delivered = {
        (FLEET[i // 5].id, seq) for i in deliveries for seq in SPANS[i]
    }  # 5 batches per device
    assert set(ledger.records) == delivered
    for key, rec in ledger.records.items():
        assert rec == TRUTH[key]
    for dev in FLEET:
        held = {seq for d, seq in delivered if d == dev.id}
        expected = 0
        while expected + 1 in held:
            expected += 1
        assert ledger.acked_through(dev.id) == expected
