"""The server's records: ingest under the device lock (SQLite and PostgreSQL), revocation,
quarantine, reports, and POST /v1/records against hostile bodies."""

from __future__ import annotations

import csv
import io
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.content.batch import MAGIC, MAX_SEALED_BYTES, batch_id, seal_batch
from satchel.content.errors import ForbiddenError, FormatError, NotFoundError, UsageError
from satchel.content.index import parse_index
from satchel.content.joincode import generate_join_code
from satchel.content.receipts import verify_answer, verify_receipt
from satchel.content.records import Learner, Record
from satchel.content.recordskey import derive_records_key
from satchel.content.signing import SigningKey
from satchel.content.xapi import VERBS
from satchel.server.app import create_app
from satchel.server.records import LEARNER_REVOKED, UNKNOWN_CLASS
from satchel.server.repository import Repository
from satchel.server.tokens import SYSTEM
from satchel.sync.records_exchange import parse_reply
from satchel.sync.store import MemoryChunkStore

from harness.http import TestClient
from harness.records import body, learner, record, records, seal_body

SEALED = {"Content-Type": "application/vnd.satchel.sealed"}


@pytest.fixture
def server(tmp_path: Path) -> Repository:
    return Repository(tmp_path / "srv", store=MemoryChunkStore())


@pytest.fixture
def client(server: Repository) -> Iterator[TestClient]:
    with TestClient(create_app(server), raise_server_exceptions=False) as c:
        yield c


def new_class(repo: Repository, bundle: str = "intro-stats", locale: str = "en") -> str:
    return repo.classes.create(SYSTEM, bundle, locale, "Class 5B").code


def seal(repo: Repository, who: Learner, recs: list[Record], device: SigningKey) -> bytes:
    return seal_batch([who], recs, device, repo.records.records_key.public)


def stored(repo: Repository, device: str) -> list[int]:
    from satchel.server.db import RecordRow
    from sqlmodel import col, select

    with repo.db.session() as s:
        rows = s.exec(
            select(RecordRow.seq).where(RecordRow.device == device).order_by(col(RecordRow.seq))
        ).all()
    return [int(x) for x in rows]


# -- ingest ------------------------------------------------------------------------------------
def test_a_delivery_stores_each_record_once_and_signs_receipts(db_url: str, tmp_path: Path) -> None:
    repo = Repository(tmp_path / "srv", database_url=db_url, store=MemoryChunkStore())
    try:
        who = learner(code=new_class(repo))
        device = SigningKey.generate()
        first = seal(repo, who, records(1, 5, who), device)
        done = repo.records.deliver([first], device.public.keyid)
        assert (done.inserted, done.duplicates, done.refused) == (5, 0, ())
        receipt = verify_receipt(done.reply.receipts[0], repo.key.public)
        assert (receipt.device, receipt.acked_through) == (device.public.keyid, 5)
        assert verify_answer(done.reply.answer or b"", repo.key.public).accepted == (
            batch_id(first),
        )
        # The same bytes again, and the same records resealed (new bytes, new batch id).
        again = repo.records.deliver([first, seal(repo, who, records(1, 7, who), device)])
        assert (again.inserted, again.duplicates) == (2, 10)
        assert stored(repo, device.public.keyid) == [1, 2, 3, 4, 5, 6, 7]
        assert verify_receipt(again.reply.receipts[0], repo.key.public).acked_through == 7
    finally:
        repo.engine.dispose()


def test_concurrent_deliveries_of_one_device_store_each_record_once(
    db_url: str, tmp_path: Path
) -> None:
    """A laptop and a relay deliver overlapping batches of one device at once (replicas
    sharing the database do the same): the device row lock serialises them."""
    repo = Repository(tmp_path / "srv", database_url=db_url, store=MemoryChunkStore())
    try:
        who = learner(code=new_class(repo))
        device = SigningKey.generate()
        batches = [seal(repo, who, records(1 + 10 * (i // 2), 20 + 10 * (i // 2), who), device)
                   for i in range(8)]  # fmt: skip
        errors: list[BaseException] = []

        def deliver(data: bytes) -> None:
            try:
                repo.records.deliver([data])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert stored(repo, device.public.keyid) == list(range(1, 51))
        final = repo.records.deliver([], device.public.keyid).reply.receipts
        assert verify_receipt(final[0], repo.key.public).acked_through == 50
    finally:
        repo.engine.dispose()


def test_records_ahead_of_a_gap_wait_for_it(server: Repository) -> None:
    who = learner(code=new_class(server))
    device = SigningKey.generate()
    late = server.records.deliver([seal(server, who, records(4, 6, who), device)])
    assert verify_receipt(late.reply.receipts[0], server.key.public).acked_through == 0
    filled = server.records.deliver([seal(server, who, records(1, 3, who), device)])
    assert verify_receipt(filled.reply.receipts[0], server.key.public).acked_through == 6


def test_a_revoked_device_is_refused_with_its_reason_in_the_answer_and_report(
    server: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    who = learner(code=new_class(server))
    device = SigningKey.generate()
    server.records.deliver([seal(server, who, records(1, 2, who), device)])
    server.classes.revoke_device(SYSTEM, device.public.keyid, "stolen from the school bus")
    late = seal(server, who, records(1, 4, who), device)
    with caplog.at_level("WARNING", logger="satchel.records"):
        done = server.records.deliver([late])
    assert done.accepted == () and done.inserted == 0
    ((bid, reason),) = done.refused
    assert bid == batch_id(late) and "revoked: stolen from the school bus" in reason
    assert "stolen from the school bus" in caplog.text
    assert verify_answer(done.reply.answer or b"", server.key.public).refused == done.refused
    assert stored(server, device.public.keyid) == [1, 2]
    (seen,) = server.reports.report(SYSTEM, "intro-stats", "en").devices
    assert (seen.revoked, seen.revoked_reason, seen.refused_batches) == (
        True,
        "stolen from the school bus",
        1,
    )


def test_unknown_class_codes_are_kept_aside_and_reported_apart(server: Repository) -> None:
    new_class(server)
    stray = learner(code=generate_join_code())  # a code this server never issued
    device = SigningKey.generate()
    done = server.records.deliver([seal(server, stray, records(1, 3, stray), device)])
    assert (done.inserted, done.quarantined) == (3, 3)  # stored (acknowledged), not lost
    assert verify_receipt(done.reply.receipts[0], server.key.public).acked_through == 3
    report = server.reports.report(SYSTEM, "intro-stats", "en")
    assert report.learners == ()
    assert [(q.class_code, q.reason, q.records) for q in report.quarantined] == [
        (stray.class_code, UNKNOWN_CLASS, 3)
    ]


def test_a_revoked_learners_later_records_are_kept_aside(server: Repository) -> None:
    code = new_class(server)
    who, other = learner(code=code), learner("Bo", code=code)
    device = SigningKey.generate()
    both = [record(1, who, "opened", lesson="a.md"), record(2, other, "opened", lesson="a.md")]
    server.records.deliver(
        [seal_batch([who, other], both, device, server.records.records_key.public)]
    )
    server.classes.revoke_learner(SYSTEM, who.learner, "left the school")
    later = [
        record(3, who, "completed", lesson="a.md"),
        record(4, other, "completed", lesson="a.md"),
    ]
    done = server.records.deliver(
        [seal_batch([who, other], later, device, server.records.records_key.public)]
    )
    assert (done.inserted, done.quarantined) == (2, 1)
    report = server.reports.report(SYSTEM, "intro-stats", "en")
    by_name = {lr.learner: lr for lr in report.learners}
    assert by_name[who.name].revoked and not by_name[who.name].lessons[0].completed
    assert by_name["Bo"].lessons[0].completed
    assert [(q.reason, q.records) for q in report.quarantined] == [(LEARNER_REVOKED, 1)]


def test_a_device_cannot_write_into_another_devices_learner(server: Repository) -> None:
    who = learner(code=new_class(server))
    server.records.deliver([seal(server, who, records(1, 2, who), SigningKey.generate())])
    thief = SigningKey.generate()
    done = server.records.deliver([seal(server, who, records(1, 2, who), thief)])
    assert done.accepted == () and "another device" in done.refused[0][1]
    assert stored(server, thief.public.keyid) == []


# -- reports -----------------------------------------------------------------------------------
def test_the_report_has_the_issues_shape_and_counts_attempts_and_last_results(
    client: TestClient, server: Repository
) -> None:
    code = new_class(server)
    ana, bo = learner("Ана Петренко", code=code), learner("=Bo", code=code)  # "=": a formula
    at = {"lesson": "ch1/mean.md", "question": "q1"}
    wrong, right = {"correct": False, "score_milli": 0}, {"correct": True, "score_milli": 1000}
    recs = [
        record(1, ana, "opened", lesson="ch1/mean.md"),
        record(2, ana, answer="3", **at, **wrong),
        record(3, ana, answer="4", **at, **right),
        record(4, ana, "completed", lesson="ch1/mean.md"),
        record(5, bo, answer="=2+2", **at, **wrong),
    ]
    server.records.deliver(
        [seal_batch([ana, bo], recs, SigningKey.generate(), server.records.records_key.public)]
    )
    teacher = server.tokens.create("teacher", bundle="intro-stats")
    auth = {"Authorization": f"Bearer {teacher}"}
    data = client.get("/v1/report/intro-stats/en", headers=auth).json()
    learners = {lr["learner"]: lr for lr in data["learners"]}
    assert learners["Ана Петренко"]["lessons"] == [
        {
            "lesson": "ch1/mean.md",
            "bundle": "intro-stats",
            "locale": "en",
            "opened": True,
            "completed": True,
            "answers": [{"question": "q1", "attempts": 2, "correct": True, "score": 1.0}],
            "last_activity": "2026-11-23T10:00:04+00:00",
        }
    ]
    assert learners["=Bo"]["lessons"][0]["answers"][0] == {
        "question": "q1", "attempts": 1, "correct": False, "score": 0.0,
    }  # fmt: skip
    assert data["missed"] == [
        {"lesson": "ch1/mean.md", "question": "q1", "missed": 2, "attempts": 3, "learners": 2}
    ]
    rows = list(csv.reader(io.StringIO(client.get(
        "/v1/report/intro-stats/en?format=csv", headers=auth).text)))  # fmt: skip
    assert rows[0][:3] == ["learner", "learner_id", "class"]
    # A spreadsheet must not run a name as a formula (CSV injection): it is quoted with '.
    assert [r[8:12] for r in rows[1:] if r[0] == "'=Bo"] == [["q1", "1", "no", "0"]]
    statements = client.get("/v1/report/intro-stats/en?format=xapi", headers=auth).json()
    assert len(statements) == 5
    assert {s["verb"]["id"] for s in statements} == {v[0] for v in VERBS.values()}
    again = client.get("/v1/report/intro-stats/en?format=xapi", headers=auth).json()
    assert [s["id"] for s in again] == [s["id"] for s in statements]  # an LRS keeps one each
    assert client.get("/v1/report/intro-stats/en?format=pdf", headers=auth).status_code == 400


def test_curators_and_other_bundles_teachers_see_no_report(server: Repository) -> None:
    new_class(server)
    grants = [
        ("curator", "intro-stats", "es"),
        ("teacher", "other", None),
        ("teacher", "intro-stats", "uk"),
    ]
    for role, bundle, locale in grants:
        who = server.tokens.authenticate(server.tokens.create(role, bundle=bundle, locale=locale))
        with pytest.raises(ForbiddenError):
            server.reports.report(who, "intro-stats", "en")


# -- classes -----------------------------------------------------------------------------------
def test_a_join_code_names_its_class_and_typos_are_told_apart(
    client: TestClient, server: Repository
) -> None:
    code = new_class(server, "intro-stats", "uk")
    assert client.get(f"/v1/join/{code.lower().replace('-', '')}").json() == {
        "bundle": "intro-stats",
        "locale": "uk",
    }
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    assert client.get(f"/v1/join/{typo}").status_code == 400
    assert client.get(f"/v1/join/{generate_join_code()}").status_code == 404
    with pytest.raises(UsageError):
        server.classes.create(SYSTEM, "intro-stats", "en", "  ")
    with pytest.raises(NotFoundError):
        server.classes.revoke_device(SYSTEM, "a" * 64, "lost")
    with pytest.raises(FormatError):
        server.classes.revoke_device(SYSTEM, "../etc", "lost")


# -- the index ---------------------------------------------------------------------------------
def test_every_line_index_names_the_records_key(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    expected = derive_records_key(repo.key).public
    for bundle in ("course", "other"):
        (tmp_path / bundle).mkdir()
        (tmp_path / bundle / "a.txt").write_bytes(bundle.encode())
        repo.publishing.publish_folder(tmp_path / bundle, bundle=bundle, locale="en", title="C")
        assert parse_index(repo.source.index(bundle, "en")[0])[1].records_key == expected


# -- POST /v1/records, hostile -----------------------------------------------------------------
def test_post_records_answers_receipts_for_the_asking_device(
    client: TestClient, server: Repository
) -> None:
    who = learner(code=new_class(server))
    device = SigningKey.generate()
    data = seal(server, who, records(1, 3, who), device)
    r = client.post("/v1/records", content=data, headers=SEALED)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    reply = parse_reply(r.content)
    assert verify_receipt(reply.receipts[0], server.key.public).acked_through == 3
    # Asking again with no batch: the receipt for the named device comes back.
    r = client.post(
        "/v1/records", params={"device": device.public.keyid}, content=b"", headers=SEALED
    )
    (again,) = parse_reply(r.content).receipts
    assert verify_receipt(again, server.key.public).acked_through == 3


def test_hostile_bodies_to_post_records_are_refused_and_store_nothing(
    client: TestClient, server: Repository
) -> None:
    who = learner(code=new_class(server))
    device = SigningKey.generate()
    good = seal(server, who, records(1, 3, who), device)

    def post(body: bytes, **params: str) -> int:
        return client.post("/v1/records", content=body, params=params, headers=SEALED).status_code

    assert post(good[:-1]) == 422  # truncated: cut inside a batch
    assert post(good + good[:50]) == 422  # a whole batch, then a cut one: refused whole
    assert post(b"not a sealed batch at all, but longer than a header is....") == 422
    old = bytearray(good)
    old[7] = 2  # format version 2
    assert post(bytes(old)) == 422
    huge = MAGIC + bytes(32) + struct.pack(">I", MAX_SEALED_BYTES)  # declares over 4 MiB
    assert post(huge) == 422
    assert post(b"", device="../../etc/passwd") == 422
    assert post(b"", device="A" * 64) == 422
    r = client.post(
        "/v1/records", content=b"", headers={**SEALED, "Content-Length": str(64 * 1024 * 1024)}
    )
    assert r.status_code == 413
    assert stored(server, device.public.keyid) == []
    # Well-framed but bad inside: refused by name in the signed answer, the others stored.
    flipped = bytearray(good)
    flipped[-5] ^= 1
    foreign = seal_batch(
        [who], records(1, 3, who), device, derive_records_key(SigningKey.generate()).public
    )
    forged = seal_body(
        body(device, [who], records(4, 5, who)),
        SigningKey.generate(),
        server.records.records_key.public,
    )  # names the device's key, signed by another
    r = client.post("/v1/records", content=bytes(flipped) + foreign + forged + good, headers=SEALED)
    assert r.status_code == 200
    answer = verify_answer(parse_reply(r.content).answer or b"", server.key.public)
    assert answer.accepted == (batch_id(good),)
    reasons = dict(answer.refused)
    assert "does not decrypt" in reasons[batch_id(bytes(flipped))]
    assert "not this server's" in reasons[batch_id(foreign)]
    assert "device key" in reasons[batch_id(forged)]
    assert stored(server, device.public.keyid) == [1, 2, 3]


def test_hostile_bodies_to_the_class_routes_are_refused(
    client: TestClient, server: Repository
) -> None:
    auth = {"Authorization": f"Bearer {server.tokens.create('admin')}"}

    def create(**kw: object) -> int:
        return client.post("/v1/classes", headers=auth, **kw).status_code  # type: ignore[arg-type]

    assert create(content=b"not json") == 400
    assert create(json=["bundle", "intro-stats"]) == 400
    assert create(json={"bundle": "intro-stats", "name": "5B", "teacher": "me"}) == 400
    assert create(json={"bundle": "intro-stats", "name": "x" * 201}) == 400
    assert create(json={"bundle": "../x", "name": "5B"}) == 400
    assert create(json={"bundle": "intro-stats", "name": 7}) == 400
    assert create(content=b"{" + b" " * 20_000 + b"}") == 413
    assert server.classes.list_classes(SYSTEM, "intro-stats", "en") == []
    who = learner(code=new_class(server))
    device = SigningKey.generate()
    server.records.deliver([seal(server, who, records(1, 2, who), device)])
    revoke = f"/v1/devices/{device.public.keyid}/revoke"
    assert client.post(revoke, json={}, headers=auth).status_code == 400  # no reason
    assert client.post(revoke, json={"reason": "\x00\x01"}, headers=auth).status_code == 400
    assert client.post("/v1/devices/../revoke", json={"reason": "x"}, headers=auth).status_code in (
        404,
        422,
    )
    assert not server.classes.devices(SYSTEM, "intro-stats", "en")[0].revoked
