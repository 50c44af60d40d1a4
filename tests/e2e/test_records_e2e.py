"""Learning comes back, end to end: a real ``satchel serve`` and the real CLI.

Two laptops: one syncs by network; one is offline, and its records travel by stick to a
classroom relay that forwards them on its own sync, with the receipts coming back the same
way. The report shows both learners exactly; the same stick imported twice and the same sync
run twice change nothing; a flipped byte on a stick loses that batch only; no name or answer
is in clear on the relay or the stick; a revoked laptop's new records are refused; and a
sync cut anywhere in the records exchange loses none and counts none twice.

Records are made through the sync layer's API (:class:`~satchel.sync.outbox.Outbox`), as the
viewer will make them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from satchel.sync.outbox import Outbox

from harness.e2e import SatchelRelay, SatchelServer, run_cli, sync_json
from harness.faults import BUNDLE, course_tree, published
from harness.proxy import LoopbackProxy

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ANA, BO, CHE = "Ana Secretova", "Bohdan Hiddenko", "Che Unseenova"
ANSWERS = {ANA: "ana-answer-7341", BO: "bo-answer-5517", CHE: "che-answer-9902"}


@dataclass
class Site:
    server: SatchelServer
    teacher: str
    code: str
    root: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("records")
    src = course_tree(root / "course", seed=3, text_kb=40, binary_kb=60)
    with SatchelServer(root / "srv") as srv:
        teacher = srv.token("teacher", "--bundle", BUNDLE)
        assert published(
            run_cli("publish", src, "--server", srv.url, "--token", teacher, "--bundle", BUNDLE)
        )
        made = run_cli("class", "create", "--data", srv.data, "--bundle", BUNDLE, "--name", "5B")
        assert made.code == 0, made.describe()
        yield Site(srv, teacher, made.stdout.strip(), root)


def ok(*args: object) -> str:
    res = run_cli(*args)
    assert res.code == 0, res.describe()
    return res.stdout


def join(store: Path, code: str, name: str, *extra: object) -> str:
    learner = ok("join", "--store", store, "--code", code, "--learner", name, *extra).strip()
    assert len(learner) == 26
    return learner


def record(store: Path, learner: str, name: str, lesson: str, *, right: bool = True) -> None:
    """What the viewer records when a learner opens a lesson and answers its question."""
    with Outbox(store) as box:
        box.record(learner, BUNDLE, "en", lesson, "opened", now=NOW)
        score = 1.0 if right else 0.0
        box.record(learner, BUNDLE, "en", lesson, "answered", question="q1",
                   answer=ANSWERS[name], correct=right, score=score, now=NOW)  # fmt: skip


def progress(store: Path) -> dict[str, Any]:
    value = json.loads(ok("progress", "--store", store, "--json"))
    assert isinstance(value, dict)
    return value


def report(site: Site) -> dict[str, Any]:
    value = json.loads(
        ok(
            "report",
            "--server",
            site.server.url,
            "--token",
            site.teacher,
            "--bundle",
            BUNDLE,
            "--json",
        )
    )
    assert isinstance(value, dict)
    return value


def learners(site: Site) -> dict[str, list[tuple[str, int, bool | None]]]:
    """name -> [(lesson, attempts of q1, last result)] from the teacher's report."""
    return {
        lr["learner"]: sorted(
            (x["lesson"], a["attempts"], a["correct"]) for x in lr["lessons"] for a in x["answers"]
        )
        for lr in report(site)["learners"]
    }


def every_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_records_travel_by_network_and_by_stick_through_a_relay(site: Site) -> None:
    url, root = site.server.url, site.root
    # -- laptop A, by network -----------------------------------------------------------------
    a = root / "laptop-a"
    sync_json(url, BUNDLE, a)
    ana = join(a, site.code.lower(), ANA, "--server", url)
    record(a, ana, ANA, "lessons/01/index.html")
    sent = sync_json(url, BUNDLE, a)
    assert (sent["progress_sent"], sent["progress_acked"], sent["progress_pending"]) == (1, 2, 0)
    assert sent["requests"] <= 2  # nothing new to download: the index (304) and the records
    again = sync_json(url, BUNDLE, a)
    assert (again["progress_sent"], again["requests"]) == (0, 1)  # nothing pending: 1 exchange

    # -- the relay fetches the lessons and writes them to a stick for the offline laptop ---------
    relay = root / "relay"
    sync_json(url, BUNDLE, relay)
    stick = root / "stick"
    ok("export", "--store", relay, "--bundle", BUNDLE, "--to", stick)

    # -- laptop B, offline: lessons from the stick, records back on it ----------------------------
    b = root / "laptop-b"
    ok("import", stick, "--store", b)
    bo = join(b, site.code, BO)  # offline: the class's bundle is the store's only one
    record(b, bo, BO, "lessons/01/index.html", right=False)
    record(b, bo, BO, "lessons/02/index.html")
    assert progress(b)["pending"] == 4
    ok("export", "--store", b, "--to", stick)  # records only: no --bundle

    # -- neither the stick nor the relay can read them -------------------------------------------
    ok("import", stick, "--store", relay)
    ok("import", stick, "--store", relay)  # the same stick twice: nothing new
    assert progress(relay)["inbox"]["batches"] == 1
    for where in (stick, relay):
        data = every_byte(where)
        for secret in (BO, ANSWERS[BO], bo):
            assert secret.encode() not in data, f"{secret!r} in clear under {where}"

    # -- the relay forwards on its next sync; a second sync changes nothing ----------------------
    forwarded = sync_json(url, BUNDLE, relay)
    assert (forwarded["progress_sent"], forwarded["progress_forwarded"]) == (1, 1)
    assert sync_json(url, BUNDLE, relay)["progress_sent"] == 0
    assert learners(site) == {
        ANA: [("lessons/01/index.html", 1, True)],
        BO: [("lessons/01/index.html", 1, False), ("lessons/02/index.html", 1, True)],
    }

    # -- the receipt goes back by stick; the delivered batch leaves it ---------------------------
    ok("export", "--store", relay, "--bundle", BUNDLE, "--to", stick)
    ok("import", stick, "--store", b)
    assert progress(b)["pending"] == 0
    ok("export", "--store", b, "--to", stick)
    assert not any((stick / "records").iterdir())
    assert learners(site)[BO] == [
        ("lessons/01/index.html", 1, False),
        ("lessons/02/index.html", 1, True),
    ]  # every delivery above changed nothing


def test_a_flipped_byte_on_a_stick_loses_that_batch_only(site: Site) -> None:
    url, root = site.server.url, site.root / "flip"
    relay = root / "relay"
    sync_json(url, BUNDLE, relay)
    stick = root / "stick"
    ok("export", "--store", relay, "--bundle", BUNDLE, "--to", stick)
    names = {"b": BO + " Two", "c": CHE}
    ids = {}
    for k, name in names.items():
        ok("import", stick, "--store", root / k)
        ids[k] = join(root / k, site.code, name)
        ANSWERS.setdefault(name, ANSWERS[BO])
        record(root / k, ids[k], name, "lessons/02/index.html")
    ok("export", "--store", root / "b", "--to", stick)
    (damaged,) = list((stick / "records").iterdir())
    ok("export", "--store", root / "c", "--to", stick)
    data = bytearray(damaged.read_bytes())
    data[random.Random(5).randrange(44, len(data))] ^= 0x10
    damaged.write_bytes(bytes(data))
    res = run_cli("import", stick, "--store", relay)
    assert res.code == 0 and "refused" in res.stderr, res.describe()
    forwarded = sync_json(url, BUNDLE, relay)
    assert forwarded["progress_forwarded"] == 1
    seen = learners(site)
    assert CHE in seen and names["b"] not in seen
    # Nothing of b's is lost: it is still pending there, and a fresh stick delivers it.
    assert progress(root / "b")["pending"] == 2
    damaged.unlink()
    ok("export", "--store", root / "b", "--to", stick)
    ok("import", stick, "--store", relay)
    sync_json(url, BUNDLE, relay)
    assert learners(site)[names["b"]] == [("lessons/02/index.html", 1, True)]


def test_a_revoked_laptops_new_records_are_refused(site: Site) -> None:
    url, lap = site.server.url, site.root / "revoked-laptop"
    sync_json(url, BUNDLE, lap)
    name = "Dmytro Revokedko"
    ANSWERS[name] = "dmytro-answer"
    who = join(lap, site.code, name)
    record(lap, who, name, "lessons/01/index.html")
    assert sync_json(url, BUNDLE, lap)["progress_acked"] == 2
    device = progress(lap)["device"]
    ok("device", "revoke", device, "--data", site.server.data, "--reason", "lost on the bus")
    record(lap, who, name, "lessons/02/index.html")
    refused = sync_json(url, BUNDLE, lap)
    assert refused["progress_acked"] == 0 and refused["progress_pending"] == 2
    assert "lost on the bus" in refused["progress_refused"][0]["reason"]
    assert learners(site)[name] == [("lessons/01/index.html", 1, True)]
    (dev,) = [d for d in report(site)["devices"] if d["device"] == device]
    assert (dev["revoked"], dev["revoked_reason"], dev["refused_batches"]) == (
        True,
        "lost on the bus",
        1,
    )
    assert "lost on the bus" in site.server.log()


def test_a_laptop_syncing_from_a_relay_hands_it_records(site: Site) -> None:
    url, root = site.server.url, site.root / "share"
    relay = root / "relay"
    sync_json(url, BUNDLE, relay)
    with SatchelRelay(relay) as peer:
        lap = root / "laptop"
        sync_json(peer.url, BUNDLE, lap)
        name = "Eva Relayed"
        ANSWERS[name] = "eva-answer"
        who = join(lap, site.code, name)
        record(lap, who, name, "lessons/01/index.html")
        handed = sync_json(peer.url, BUNDLE, lap)
        assert (handed["progress_sent"], handed["progress_acked"]) == (1, 0)
        assert sync_json(url, BUNDLE, relay)["progress_forwarded"] == 1  # while it serves
        back = sync_json(peer.url, BUNDLE, lap)
        assert (back["progress_acked"], back["progress_pending"]) == (2, 0)
    assert learners(site)[name] == [("lessons/01/index.html", 1, True)]


def test_a_sync_cut_anywhere_in_the_records_exchange_loses_none_and_doubles_none(
    site: Site,
) -> None:
    url, lap = site.server.url, site.root / "cut-laptop"
    sync_json(url, BUNDLE, lap)
    name = "Fedir Cutmany"
    ANSWERS[name] = "fedir-answer"
    who = join(lap, site.code, name)
    rng = random.Random(11)
    fired = failed = 0
    with LoopbackProxy("127.0.0.1", site.server.port) as proxy:
        # One uncut sync with a record to send: its bytes each way bound where a cut may land.
        record(lap, who, name, "lessons/01/index.html")
        proxy.reset()
        assert sync_json(proxy.url, BUNDLE, lap)["progress_acked"] == 2
        up, down = proxy.stats().bytes_up, proxy.stats().bytes_down
        for round_ in range(8):
            record(lap, who, name, f"lessons/0{round_ % 2 + 1}/index.html", right=round_ % 3 != 0)
            proxy.reset()
            cut_up = rng.random() < 0.5
            (proxy.cut_up_after if cut_up else proxy.cut_down_after)(
                rng.randrange(1, up if cut_up else down)
            )
            res = run_cli("sync", "--server", proxy.url, "--bundle", BUNDLE, "--store", lap,
                          "--json", "--retries", 0)  # fmt: skip
            assert res.code in (0, 4), res.describe()
            fired += proxy.stats().cuts
            failed += (
                res.code == 4 or json.loads(res.stdout or "{}").get("progress_error") is not None
            )
            proxy.cut_up_after(None)
            proxy.cut_down_after(None)
        final = sync_json(proxy.url, BUNDLE, lap)
    assert fired == 8 and failed == 8  # every cut landed and cost that sync something
    assert final["progress_pending"] == 0 and progress(lap)["pending"] == 0
    answers = learners(site)[name]
    assert sum(attempts for _, attempts, _ in answers) == 9  # each answer exactly once
    assert progress(lap)["acked_through"] == 18


def test_a_stick_goes_laptop_to_server_through_a_connected_laptop(site: Site) -> None:
    url, root = site.server.url, site.root / "direct"
    teacher = root / "teacher-laptop"
    sync_json(url, BUNDLE, teacher)
    stick = root / "stick"
    ok("export", "--store", teacher, "--bundle", BUNDLE, "--to", stick)
    offline = root / "offline"
    ok("import", stick, "--store", offline)
    name = "Galyna Sticked"
    ANSWERS[name] = "galyna-answer"
    who = join(offline, site.code, name)
    record(offline, who, name, "lessons/02/index.html")
    ok("export", "--store", offline, "--to", stick)
    res = run_cli("import", stick, "--store", teacher, "--server", url)
    assert res.code == 0 and "1 receipts written" in res.stderr, res.describe()
    assert learners(site)[name] == [("lessons/02/index.html", 1, True)]
    ok("import", stick, "--store", offline)
    assert progress(offline)["pending"] == 0
