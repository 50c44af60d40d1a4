"""The laptop's outbox: learners join offline, records survive, receipts only ever move forward."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from satchel.content.batch import open_batch
from satchel.content.errors import FormatError, NotFoundError, StoreError, TrustError, UsageError
from satchel.content.receipts import Receipt, sign_receipt
from satchel.content.recordskey import RecordsPrivateKey, derive_records_key
from satchel.content.signing import SigningKey
from satchel.sync.device import DEVICE_KEY_FILE, load_device_key
from satchel.sync.outbox import PROGRESS_FILE, Outbox

from harness.records import CODE, T0

SERVER = SigningKey.generate()
RECORDS = derive_records_key(SERVER)


def receipt(device: str, n: int, key: SigningKey = SERVER) -> bytes:
    return sign_receipt(key, Receipt(device, n, T0))


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "store", durable=False)


def fill(box: Outbox, n: int, name: str = "Ana") -> str:
    who = box.join(name, CODE, "intro-stats", "en", now=T0).learner
    for i in range(n):
        box.record(
            who, "intro-stats", "en", f"ch1/l{i}.md", "answered",
            question="q1", answer=str(i), correct=i % 2 == 0, score=0.5,
            now=T0 + timedelta(seconds=i, microseconds=7),
        )  # fmt: skip
    return who


def test_joining_is_offline_and_idempotent(box: Outbox) -> None:
    ana = box.join(" ana  k. ", CODE.lower().replace("-", ""), "intro-stats", "en", now=T0)
    assert (ana.name, ana.class_code) == ("ana k.", CODE)
    assert box.join("ana k.", CODE, "intro-stats", "en", now=T0 + timedelta(days=1)) == ana
    bob = box.join("Bob", CODE, "intro-stats", "en", now=T0)
    assert bob.learner != ana.learner
    assert {lr.learner for lr in box.learners()} == {ana.learner, bob.learner}
    assert box.learner(bob.learner) == bob
    with pytest.raises(UsageError, match="typo"):
        box.join("Cy", CODE[:-1] + ("0" if CODE[-1] != "0" else "1"), "intro-stats", "en", now=T0)
    with pytest.raises(NotFoundError):
        box.learner("0" * 26)


def test_records_are_numbered_1_2_3_and_survive_reopening(tmp_path: Path) -> None:
    root = tmp_path / "store"
    box = Outbox(root, durable=False)
    who = fill(box, 3)
    assert [r.seq for r in box.records()] == [1, 2, 3]
    assert box.records()[0].time == T0  # whole seconds, UTC
    box.close()
    again = Outbox(root, durable=False)
    assert [r.seq for r in again.pending()] == [1, 2, 3]
    assert again.record(who, "intro-stats", "en", "ch2/x.md", "opened", now=T0) == 4
    assert again.device_id == box.device_id
    assert again.summary().pending == 4


def test_a_refused_record_consumes_no_number(box: Outbox) -> None:
    who = fill(box, 1)
    for bad in (
        {"lesson": "../x.md", "kind": "opened"},
        {"lesson": "a.md", "kind": "skipped"},
        {"lesson": "a.md", "kind": "opened", "question": "q1"},
        {"lesson": "a.md", "kind": "answered"},  # no question
    ):
        with pytest.raises(FormatError):
            box.record(who, "intro-stats", "en", now=T0, **bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="satchel join"):
        box.record("0" * 26, "intro-stats", "en", "a.md", "opened", now=T0)
    assert box.record(who, "intro-stats", "en", "a.md", "opened", now=T0) == 2


def test_line_ends_from_a_browser_are_kept_as_newlines(box: Outbox) -> None:
    who = fill(box, 0)
    seq = box.record(
        who, "intro-stats", "en", "a.md", "answered", question="q", answer="a\r\nb\rc", now=T0
    )
    assert box.records(after=seq - 1)[0].answer == "a\nb\nc"


def test_receipts_move_the_acknowledgement_forward_only(box: Outbox) -> None:
    fill(box, 5)
    me = box.device_id
    assert box.apply_receipt(receipt(me, 3), SERVER.public) == 3
    assert (box.acked, [r.seq for r in box.pending()]) == (3, [4, 5])
    assert box.apply_receipt(receipt(me, 2), SERVER.public) == 0  # lower: ignored
    assert box.apply_receipt(receipt(me, 3), SERVER.public) == 0  # same: ignored
    assert box.apply_receipt(receipt("f" * 64, 5), SERVER.public) == 0  # another device
    assert box.acked == 3
    with pytest.raises(TrustError):
        box.apply_receipt(receipt(me, 5, key=SigningKey.generate()), SERVER.public)
    with pytest.raises(FormatError):
        box.apply_receipt(receipt(me, 5)[:-3], SERVER.public)
    assert box.acked == 3
    assert box.apply_receipt(receipt(me, 5), SERVER.public) == 2
    assert box.pending() == []


def test_a_receipt_beyond_what_is_held_moves_the_next_number_past_it(box: Outbox) -> None:
    who = fill(box, 2)
    assert box.apply_receipt(receipt(box.device_id, 10), SERVER.public) == 2
    assert box.record(who, "intro-stats", "en", "a.md", "opened", now=T0) == 11
    assert [r.seq for r in box.pending()] == [11]


def test_sealed_batches_are_resent_as_the_same_bytes_until_acknowledged(box: Outbox) -> None:
    who = fill(box, 3)
    first = box.sealed_batches(RECORDS.public)
    assert [(b.first_seq, b.last_seq) for b in first] == [(1, 3)]
    assert box.sealed_batches(RECORDS.public) == first  # same id: relays deduplicate
    opened = open_batch(first[0].data, RECORDS)
    assert opened.device == box.device_id and [r.seq for r in opened.records] == [1, 2, 3]
    assert opened.records == tuple(box.records())
    box.record(who, "intro-stats", "en", "b.md", "completed", now=T0)
    second = box.sealed_batches(RECORDS.public)
    assert second[0] == first[0] and [(b.first_seq, b.last_seq) for b in second[1:]] == [(4, 4)]
    box.apply_receipt(receipt(box.device_id, 3), SERVER.public)
    assert [b.batch_id for b in box.sealed_batches(RECORDS.public)] == [second[1].batch_id]
    assert box.obsolete_batches() == {first[0].batch_id}
    box.apply_receipt(receipt(box.device_id, 4), SERVER.public)
    assert box.sealed_batches(RECORDS.public) == []


def test_a_new_server_key_reseals_everything_pending(box: Outbox) -> None:
    fill(box, 2)
    old = box.sealed_batches(RECORDS.public)
    new_key = RecordsPrivateKey.generate()
    new = box.sealed_batches(new_key.public)
    assert [r.seq for r in open_batch(new[0].data, new_key).records] == [1, 2]
    assert box.obsolete_batches() == {old[0].batch_id}


def test_many_pending_records_are_cut_into_bounded_batches(box: Outbox) -> None:
    who = box.join("Ana", CODE, "intro-stats", "en", now=T0).learner
    long = "x" * 1900
    for _ in range(700):
        box.record(who, "intro-stats", "en", "a.md", "answered", question="q", answer=long, now=T0)
    batches = box.sealed_batches(RECORDS.public)
    assert len(batches) > 1
    seqs = [r.seq for b in batches for r in open_batch(b.data, RECORDS).records]
    assert seqs == list(range(1, 701))


def test_the_device_key_is_private_and_made_once(tmp_path: Path) -> None:
    root = tmp_path / "store"
    box = Outbox(root, durable=False)
    path = root / DEVICE_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_device_key(root)
    assert key is not None and key.public.keyid == box.device_id
    assert Outbox(root, durable=False).device_id == box.device_id


def test_a_lost_database_gives_the_laptop_a_new_device(tmp_path: Path) -> None:
    root = tmp_path / "store"
    box = Outbox(root, durable=False)
    fill(box, 2)
    old = box.device_id
    box.close()
    for name in os.listdir(root):
        if name.startswith(PROGRESS_FILE):
            (root / name).unlink()
    fresh = Outbox(root, durable=False)
    assert fresh.device_id != old  # new records must not reuse seqs the server may hold
    assert (root / f"device-key.{old[:16]}.retired.pem").exists()
    assert fresh.last_seq == 0


def test_a_lost_device_key_stops_sending_but_not_recording(tmp_path: Path) -> None:
    root = tmp_path / "store"
    box = Outbox(root, durable=False)
    who = fill(box, 1)
    (root / DEVICE_KEY_FILE).unlink()
    assert box.record(who, "intro-stats", "en", "a.md", "opened", now=T0) == 2
    with pytest.raises(StoreError, match="restore that key file"):
        box.sealed_batches(RECORDS.public)


def test_a_database_from_a_newer_satchel_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Outbox(root, durable=False).close()
    with sqlite3.connect(root / PROGRESS_FILE) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="update satchel"):
        Outbox(root, durable=False)
    (root / PROGRESS_FILE).write_bytes(b"not a database at all" * 100)
    for name in os.listdir(root):
        if name.startswith(PROGRESS_FILE + "-"):
            (root / name).unlink()
    with pytest.raises(StoreError, match="cannot be used"):
        Outbox(root, durable=False)


def test_two_writers_never_share_a_number(tmp_path: Path) -> None:
    root = tmp_path / "store"
    who = fill(Outbox(root, durable=False), 0)
    boxes = [Outbox(root, durable=False) for _ in range(4)]
    seqs: list[int] = []
    lock = threading.Lock()

    def write(b: Outbox) -> None:
        for _ in range(25):
            s = b.record(who, "intro-stats", "en", "a.md", "opened", now=T0)
            with lock:
                seqs.append(s)

    threads = [threading.Thread(target=write, args=(b,)) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 101))
