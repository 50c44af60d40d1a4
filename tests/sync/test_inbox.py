"""Relay inboxes and sticks: carry sealed batches and receipts, read nothing, trust nothing."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from satchel.content.batch import batch_id
from satchel.content.errors import FormatError, IntegrityError, StoreError, TrustError
from satchel.content.index import IndexEntry, ReleaseIndex
from satchel.content.receipts import Receipt, sign_answer, sign_receipt
from satchel.content.recordskey import derive_records_key
from satchel.content.signing import SigningKey
from satchel.sync import inbox as inbox_module
from satchel.sync.carry import (
    collect_batches,
    export_records,
    hand_receipts,
    records_key_of,
    take_receipt,
)
from satchel.sync.inbox import BatchFolder, RelayInbox
from satchel.sync.ingest import MemoryLedger, process_batches
from satchel.sync.local import LocalStore
from satchel.sync.outbox import Outbox

from harness.records import CODE, T0

SERVER = SigningKey.generate()
RECORDS = derive_records_key(SERVER)
PUB = SERVER.public
SECRETS = ("Zoë Secretname", "my-answer-forty-two")


def laptop(root: Path, name: str = SECRETS[0], n: int = 3) -> Outbox:
    box = Outbox(root, durable=False)
    who = box.join(name, CODE, "intro-stats", "en", now=T0).learner
    for i in range(n):
        box.record(who, "intro-stats", "en", f"l{i}.md", "answered", question="q",
                   answer=SECRETS[1], correct=True, now=T0)  # fmt: skip
    return box


def every_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_a_laptops_records_reach_the_server_by_stick_and_relay_and_receipts_come_back(
    tmp_path: Path,
) -> None:
    box = laptop(tmp_path / "laptop")
    stick, relay = (
        BatchFolder(tmp_path / "stick", durable=False),
        RelayInbox(tmp_path / "relay" / "inbox", durable=False),
    )
    exported = export_records(box, stick, RECORDS.public)
    assert (exported.written, exported.batches, exported.records) == (1, 1, 3)
    assert export_records(box, stick, RECORDS.public).written == 0  # the same bytes again

    first = collect_batches(stick, relay)
    assert (first.added, first.already, first.damaged) == (1, 0, ())
    assert collect_batches(stick, relay).added == 0  # the same stick twice: nothing new

    for folder in (tmp_path / "stick", tmp_path / "relay"):
        seen = every_byte(folder)
        for secret in (*SECRETS, box.learners()[0].learner, CODE):
            assert secret.encode() not in seen

    ledger = MemoryLedger()
    sent = [relay.read_batch(b) for b in relay.to_forward()]
    result = process_batches(sent, RECORDS, ledger, SERVER, now=T0)
    assert result.inserted == 3
    assert relay.apply_answer(result.answer, PUB).accepted == tuple(batch_id(b) for b in sent)
    assert relay.keep_receipts(result.receipts, PUB) == 1
    assert relay.to_forward() == []
    assert collect_batches(stick, relay).already == 1  # done: not queued again

    assert hand_receipts(relay, stick, PUB) == 1
    assert take_receipt(box, stick, PUB) == 3
    assert box.pending() == []
    after = export_records(box, stick, RECORDS.public)
    assert (after.batches, after.removed) == (0, 1)  # delivered batches leave the stick
    assert stick.batch_ids() == []


def test_a_flipped_byte_on_the_stick_loses_that_batch_only(tmp_path: Path) -> None:
    stick = BatchFolder(tmp_path / "stick", durable=False)
    for n, name in enumerate(("Ana", "Bob", "Cy")):
        export_records(laptop(tmp_path / name, name, n + 1), stick, RECORDS.public)
    ids = stick.batch_ids()
    victim = tmp_path / "stick" / "records" / f"{ids[1]}.sealed"
    data = bytearray(victim.read_bytes())
    data[60] ^= 0x10
    victim.write_bytes(bytes(data))
    relay = RelayInbox(tmp_path / "relay", durable=False)
    got = collect_batches(stick, relay)
    assert (got.added, [b for b, _ in got.damaged]) == (2, [ids[1]])
    assert "does not match its name" in got.damaged[0][1]
    assert sorted(relay.to_forward()) == sorted(set(ids) - {ids[1]})


def test_a_hostile_stick_is_read_within_bounds_and_never_through_links(tmp_path: Path) -> None:
    box = laptop(tmp_path / "laptop")
    good = box.sealed_batches(RECORDS.public)[0].data
    root = tmp_path / "stick"
    folder = BatchFolder(root, durable=False)
    folder.put_batch(good)
    records = root / "records"
    outside = tmp_path / "outside.sealed"
    outside.write_bytes(good)
    (records / f"{'a' * 64}.sealed").symlink_to(outside)  # a link: not listed, not read
    (records / "notes.txt").write_text("ignored")
    (records / f"{'B' * 64}.sealed").write_bytes(good)  # not a lower-case id
    os.mkfifo(records / f"{'c' * 64}.sealed")  # not a regular file
    assert folder.batch_ids() == [batch_id(good)]
    with pytest.raises(FormatError):
        folder.read_batch("a" * 64)
    big = records / f"{'d' * 64}.sealed"
    big.write_bytes(b"\0" * (inbox_module.MAX_SEALED_BYTES + 1))
    with pytest.raises(FormatError, match="over the"):
        folder.read_batch("d" * 64)
    big.unlink()

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "records").symlink_to(records)
    with pytest.raises(FormatError, match="not a plain folder"):
        BatchFolder(linked).batch_ids()
    with pytest.raises(FormatError, match="not a plain folder"):
        BatchFolder(linked).put_batch(good)

    small = BatchFolder(tmp_path / "small", durable=False, max_batches=1)
    small.put_batch(good)
    with pytest.raises(StoreError, match="full"):
        small.put_batch(
            box.sealed_batches(derive_records_key(SigningKey.generate()).public)[0].data
        )


def test_a_folder_refuses_frames_that_are_not_whole_sealed_batches(tmp_path: Path) -> None:
    good = laptop(tmp_path / "laptop").sealed_batches(RECORDS.public)[0].data
    folder = BatchFolder(tmp_path / "f", durable=False)
    for bad in (good[:-1], good + b"x", b"SATSEAL\x02" + good[8:], b"", b"hello"):
        with pytest.raises(FormatError):
            folder.put_batch(bad)
    assert folder.put_batch(good) == batch_id(good)
    assert folder.put_batch(good) is None
    path = tmp_path / "f" / "records" / f"{batch_id(good)}.sealed"
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        folder.read_batch(batch_id(good))


def test_receipts_are_kept_only_when_signed_and_newer(tmp_path: Path) -> None:
    folder = BatchFolder(tmp_path / "f", durable=False)
    dev = "d" * 64

    def receipt(n: int, key: SigningKey = SERVER) -> bytes:
        return sign_receipt(key, Receipt(dev, n, T0 + timedelta(minutes=n)))

    assert folder.put_receipt(receipt(5), PUB) is not None
    assert folder.put_receipt(receipt(3), PUB) is None
    with pytest.raises(TrustError):
        folder.put_receipt(receipt(9, SigningKey.generate()), PUB)
    held = folder.receipt(dev, PUB)
    assert held is not None and held.receipt.acked_through == 5
    # A forged or misplaced file on a stick is no receipt; it is skipped, not believed.
    (tmp_path / "f" / "receipts" / f"{'e' * 64}.receipt").write_bytes(receipt(7))
    (tmp_path / "f" / "receipts" / f"{'f' * 64}.receipt").write_bytes(b"junk")
    assert [h.receipt.device for h in folder.receipts(PUB)] == [dev]


def test_only_a_signed_answer_makes_a_relay_drop_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = RelayInbox(tmp_path / "relay", durable=False)
    sealed = [
        laptop(tmp_path / n, n).sealed_batches(RECORDS.public)[0].data for n in ("A", "B", "C")
    ]
    ids = [relay.put_batch(s) for s in sealed]
    forged = sign_answer(SigningKey.generate(), ids, [], T0)
    with pytest.raises(TrustError):
        relay.apply_answer(forged, PUB)
    assert len(relay.to_forward()) == 3
    answer = sign_answer(SERVER, [ids[0]], [(ids[1], "device revoked")], T0)
    done = relay.apply_answer(answer, PUB)
    assert done.finished == {ids[0], ids[1]}
    assert relay.to_forward() == [ids[2]]
    assert relay.put_batch(sealed[0]) is None
    monkeypatch.setattr(inbox_module, "MAX_DONE", 2)
    relay.apply_answer(sign_answer(SERVER, [ids[2]], [], T0), PUB)
    assert len(relay.done()) == 2 and ids[2] in relay.done()  # the newest are remembered


def test_records_key_of_reads_only_a_verified_index(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", durable=False)
    assert records_key_of(store) is None
    store.pin(PUB)
    line = (IndexEntry("course", "en", 1, "ab" * 32, 10, "Course"),)
    index = ReleaseIndex(3, T0, T0 + timedelta(days=60), PUB, line, RECORDS.public)
    store.save_index("course", "en", SERVER.sign(index.to_signed()), None, 3)
    assert records_key_of(store) == RECORDS.public
    older = ReleaseIndex(2, T0, T0 + timedelta(days=60), PUB, line)
    store.save_index("course", "en", SERVER.sign(older.to_signed()), None, 2)
    assert records_key_of(store) is None
    forged = ReleaseIndex(4, T0, T0 + timedelta(days=60), PUB, line, derive_records_key(
        SigningKey.generate()).public)  # fmt: skip
    store.save_index("course", "en", SigningKey.generate().sign(forged.to_signed()), None, 4)
    with pytest.raises(TrustError):
        records_key_of(store)
