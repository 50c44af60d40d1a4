"""A store's records on the move (sync/records_sync.py) against a real ingest in process: one
request per exchange, receipts applied, relays forwarding and handing receipts back, sticks
both ways, cuts anywhere, and the reply parser against hostile bytes."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import FormatError, SatchelError, TransportError
from satchel.content.index import parse_index
from satchel.server.repository import Repository
from satchel.server.tokens import SYSTEM
from satchel.sync.inbox import BatchFolder
from satchel.sync.local import LocalStore
from satchel.sync.outbox import Outbox
from satchel.sync.records_exchange import InboxSink, RecordsReply, parse_reply, split_batches
from satchel.sync.records_sync import (
    open_inbox,
    records_from_stick,
    records_present,
    records_to_stick,
    send_records,
)
from satchel.sync.release import sign_index
from satchel.sync.updater import Updater

from harness.repo import RepoFetcher, make_repository, publish, sample_files, write_tree

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SECRET_NAME, SECRET_ANSWER = "Zoë Secretname", "my-answer-forty-two"


@dataclass
class Wire:
    """A transport to the server's ingest in process, counting requests; it can cut the
    exchange before the server sees it or after it stored the batches."""

    repo: Repository
    requests: list[int] = field(default_factory=list)  # batches per request
    cut: str | None = None  # "before" or "after" (the reply is lost)

    def send_records(self, batches: Sequence[bytes], device: str | None) -> RecordsReply:
        self.requests.append(len(batches))
        if self.cut == "before":
            raise TransportError("link cut while sending")
        reply = self.repo.records.receive(batches, device)
        if self.cut == "after":
            raise TransportError("link cut while receiving the reply")
        return parse_reply(reply.encode())


@dataclass
class ToRelay:
    """A transport to a relay's inbox (what ``satchel share`` serves)."""

    sink: InboxSink

    def send_records(self, batches: Sequence[bytes], device: str | None) -> RecordsReply:
        return parse_reply(self.sink.receive(batches, device).encode())


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", sample_files()))
    return repo


def synced(repo: Repository, root: Path) -> LocalStore:
    local = LocalStore(root, durable=False)
    Updater(local, RepoFetcher(repo)).sync("course", "en")
    return local


def laptop(repo: Repository, root: Path, code: str, n: int = 3) -> LocalStore:
    local = synced(repo, root)
    with Outbox(root, durable=False) as box:
        who = box.join(SECRET_NAME, code, "course", "en", now=NOW).learner
        for i in range(n):
            box.record(who, "course", "en", "a.md", "answered", question=f"q{i}",
                       answer=SECRET_ANSWER, correct=i % 2 == 0, score=1.0, now=NOW)  # fmt: skip
    return local


def summary(local: LocalStore) -> tuple[int, int]:
    with Outbox(local.root, durable=False) as box:
        s = box.summary()
    return s.acked_through, s.pending


def stored_count(repo: Repository) -> int:
    return sum(lr.records for lr in repo.classes.learners(SYSTEM, "course", "en"))


@pytest.fixture
def code(repo: Repository) -> str:
    return repo.classes.create(SYSTEM, "course", "en", "Class 5B").code


def test_one_request_sends_everything_pending_and_the_receipt_ends_it(
    repo: Repository, code: str, tmp_path: Path
) -> None:
    local = laptop(repo, tmp_path / "laptop", code)
    wire = Wire(repo)
    sent = send_records(local, wire)
    assert sent is not None and (sent.batches, sent.acked, sent.pending) == (1, 3, 0)
    assert wire.requests == [1] and summary(local) == (3, 0)
    assert send_records(local, wire) is None and wire.requests == [1]  # nothing to send: no request
    assert stored_count(repo) == 3


def test_a_store_that_records_nothing_makes_no_request_and_no_device_key(
    repo: Repository, tmp_path: Path
) -> None:
    local = synced(repo, tmp_path / "plain")
    assert send_records(local, Wire(repo)) is None
    assert not records_present(local.root) and not (local.root / "device-key.pem").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_cut_exchange_loses_nothing_and_counts_nothing_twice(
    repo: Repository, code: str, tmp_path: Path, where: str
) -> None:
    local = laptop(repo, tmp_path / "laptop", code)
    wire = Wire(repo, cut=where)
    with pytest.raises(TransportError):
        send_records(local, wire)
    assert summary(local) == (0, 3)  # no receipt: everything still pending
    with Outbox(local.root, durable=False) as box:
        who = box.learners()[0].learner
        box.record(who, "course", "en", "b.md", "opened", now=NOW)
    wire.cut = None
    sent = send_records(local, wire)
    assert sent is not None and sent.pending == 0 and summary(local) == (4, 0)
    assert stored_count(repo) == 4


def test_a_request_is_bounded_and_the_rest_goes_next_time(
    repo: Repository, code: str, tmp_path: Path
) -> None:
    relay_store = synced(repo, tmp_path / "relay")
    sink = InboxSink(relay_store)
    for i in range(3):  # three laptops hand the relay one batch each
        send_records(laptop(repo, tmp_path / f"l{i}", code), ToRelay(sink))
    one = len(open_inbox(relay_store).read_batch(open_inbox(relay_store).batch_ids()[0]))
    wire = Wire(repo)
    first = send_records(relay_store, wire, max_bytes=one * 2 + 10)
    assert first is not None and first.forwarded == 2 and first.finished == 2
    second = send_records(relay_store, wire)
    assert second is not None and second.forwarded == 1 and wire.requests == [2, 1]
    assert open_inbox(relay_store).batch_ids() == [] and stored_count(repo) == 9


def test_a_relay_forwards_and_hands_each_laptop_its_receipt(
    repo: Repository, code: str, tmp_path: Path
) -> None:
    relay_store = synced(repo, tmp_path / "relay")
    sink = InboxSink(relay_store)
    local = laptop(repo, tmp_path / "laptop", code)
    to_relay = send_records(local, ToRelay(sink))
    assert to_relay is not None and to_relay.acked == 0 and summary(local) == (0, 3)
    forwarded = send_records(relay_store, Wire(repo))
    assert forwarded is not None and (forwarded.forwarded, forwarded.receipts_kept) == (1, 1)
    back = send_records(local, ToRelay(sink))  # the next sync from the relay
    assert back is not None and back.acked == 3 and summary(local) == (3, 0)
    assert stored_count(repo) == 3


def test_a_stick_carries_records_to_a_relay_and_receipts_back(
    repo: Repository, code: str, tmp_path: Path
) -> None:
    local = laptop(repo, tmp_path / "laptop", code)
    relay_store = synced(repo, tmp_path / "relay")
    stick = tmp_path / "stick"
    out = records_to_stick(local, stick)
    assert out is not None and (out.written, out.pending) == (1, 3)
    got = records_from_stick(relay_store, stick)
    assert got is not None and (got.collected, got.already) == (1, 0)
    again = records_from_stick(relay_store, stick)  # the same stick twice
    assert again is not None and (again.collected, again.already) == (0, 1)
    send_records(relay_store, Wire(repo))
    assert records_from_stick(relay_store, stick) is not None  # writes the receipt back
    home = records_from_stick(local, stick)
    assert home is not None and home.acked == 3 and home.collected == 0  # never its own
    assert records_to_stick(local, stick) is not None
    assert BatchFolder(stick).batch_ids() == []  # delivered batches leave the stick
    assert stored_count(repo) == 3
    everything = b"".join(p.read_bytes() for p in stick.rglob("*") if p.is_file())
    everything += b"".join(
        p.read_bytes() for p in (relay_store.root / "inbox").rglob("*") if p.is_file()
    )
    for secret in (SECRET_NAME, SECRET_ANSWER, code):
        assert secret.encode() not in everything


def test_a_relay_hands_no_receipt_it_cannot_verify(repo: Repository, tmp_path: Path) -> None:
    relay_store = LocalStore(tmp_path / "never-synced", durable=False)
    reply = InboxSink(relay_store).receive([], "a" * 64)
    assert reply == RecordsReply((), None)


# -- the wire format ---------------------------------------------------------------------------
def test_hostile_replies_are_format_errors() -> None:
    ok = RecordsReply((b"r1", b"r2"), b"answer")
    assert parse_reply(ok.encode()) == ok
    bad = [
        b"",
        b"[]",
        b'{"receipts": []}',
        b'{"receipts": "x", "answer": null}',
        b'{"receipts": ["not base64!"], "answer": null}',
        b'{"receipts": [], "answer": 7}',
        b'{"receipts": [], "answer": null, "extra": 1}',
        json.dumps({"receipts": [base64.b64encode(bytes(5000)).decode()], "answer": None}).encode(),
        b"[" * 100_000,
    ]
    for body in bad:
        with pytest.raises(FormatError):
            parse_reply(body)


@given(st.binary(max_size=300))
def test_any_bytes_split_or_raise_a_satchel_error(data: bytes) -> None:
    with contextlib.suppress(SatchelError):
        split_batches(data)
    with contextlib.suppress(SatchelError):
        parse_reply(data)


def test_records_wait_with_a_reason_when_the_index_names_no_records_key(
    repo: Repository, code: str, tmp_path: Path
) -> None:
    local = laptop(repo, tmp_path / "laptop", code)
    # An index from a server before records (signed by the pinned key, no records_key).
    for bundle, locale in local.indexed_lines():
        held = local.last_index(bundle, locale)
        assert held is not None
        old = sign_index(parse_index(held)[1].entries, serial=10_000, key=repo.key, now=NOW)
        local.save_index(bundle, locale, old, None, 10_000)
    wire = Wire(repo)
    sent = send_records(local, wire)
    assert sent is not None and sent.batches == 0 and "records key" in sent.waiting
    assert wire.requests == [] and summary(local) == (0, 3)
