"""Learning records: bytes on the wire for a learner's week, and the server's ingest rate.

Part 1 builds one learner's week as the viewer would record it (40 lessons opened, 40
completed, 200 answers of short realistic strings, over five school days) and prints what
each form of it costs: the records as compact JSON (the baseline), that JSON compressed
(gzip -9, zstd -19), the device-signed document, and the sealed batch that actually travels
(one for the week, and one a day if the laptop synced every day).

Part 2 seals one such week for each of ``--laptops`` laptops (distinct device keys and
learners), then times the server's side in process, sans-IO: ``open_batch`` (HPKE open,
bounded zstd, Ed25519 check, every field) plus the ingest decision and applying it to an
in-memory ledger, as records per second. The baseline in the same run is ``json.loads`` of
the same records as compact JSON: the floor of merely parsing them. Times are CPU seconds of
this process (on a shared machine wall time measures the neighbours), best of ``--rounds``.

Part 3 does the same over the wire, with real processes: a ``satchel serve`` on 127.0.0.1,
a laptop store that joins a class and records the week through the sync layer
(``Outbox.record``, as the viewer will), then ``satchel sync --json`` through a counting
proxy: the bytes each way of the records exchange, against the same week as compact JSON and
the sealed batch measured in the same run.

Part 4 posts ``--laptops`` sealed weeks (distinct devices, learners of a real class) to that
server over HTTP (``--clients`` connections at once) and reports the server's records/s and
its CPU seconds (psutil on the server process), against the in-process ingest of part 2 in the
same run.

Run from the repository root:  python bench/records.py [--laptops 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import zstandard  # noqa: E402
from satchel.content.batch import (  # noqa: E402
    SEALED_MEDIA_TYPE,
    open_batch,
    seal_batch,
    signed_body,
)
from satchel.content.index import parse_index  # noqa: E402
from satchel.content.joincode import generate_join_code  # noqa: E402
from satchel.content.records import Learner, Record, new_learner_id  # noqa: E402
from satchel.content.recordskey import derive_records_key  # noqa: E402
from satchel.content.signing import SigningKey  # noqa: E402
from satchel.sync.carry import records_key_of  # noqa: E402
from satchel.sync.ingest import Ingest, MemoryLedger  # noqa: E402
from satchel.sync.local import LocalStore  # noqa: E402
from satchel.sync.outbox import Outbox  # noqa: E402

from harness.bench import table  # noqa: E402
from harness.e2e import SatchelServer, run_cli, sync_json  # noqa: E402
from harness.proxy import LoopbackProxy  # noqa: E402

MONDAY = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
CHAPTERS = ["sampling-and-data", "descriptive-statistics", "probability-topics", "the-normal"]
ANSWERS = [
    "12.5", "median", "mean", "the mode", "True", "False", "0.25", "3/8", "histogram",
    "bar graph", "skewed to the right", "7", "42", "independent", "mutually exclusive",
    "a sample", "the population", "stratified", "1.96", "about 68%",
]  # fmt: skip


def week(rng: random.Random, who: Learner) -> list[Record]:
    """40 lessons opened and completed, 5 answers in each, over five school days."""
    out: list[Record] = []
    seq = 0

    def add(**fields: object) -> None:
        nonlocal seq
        seq += 1
        minute = timedelta(minutes=seq * 2 + rng.randint(0, 1))
        out.append(
            Record(
                seq=seq,
                learner=who.learner,
                class_code=who.class_code,
                bundle="intro-stats",
                locale="en",
                time=MONDAY + timedelta(days=(seq * 5) // 281) + minute,
                **fields,  # type: ignore[arg-type]
            )
        )

    blank = {"question": None, "answer": None, "correct": None, "score_milli": None}
    for n in range(40):
        lesson = f"{CHAPTERS[n // 10]}/{n % 10 + 1}-lesson.md"
        add(lesson=lesson, kind="opened", **blank)
        for q in range(5):
            correct = rng.random() < 0.7
            add(
                lesson=lesson,
                kind="answered",
                question=f"q{q + 1}",
                answer=rng.choice(ANSWERS),
                correct=correct,
                score_milli=1000 if correct else 0,
            )
        add(lesson=lesson, kind="completed", **blank)
    return out


def learner(rng: random.Random, n: int) -> Learner:
    return Learner(
        new_learner_id(rng.randbytes),
        f"Learner {n:03d} Petrenko",
        generate_join_code(rng.randbytes),
        "intro-stats",
        "en",
        MONDAY,
    )


def sizes(rng: random.Random) -> None:
    device, server = SigningKey.generate(), derive_records_key(SigningKey.generate())
    who = learner(rng, 1)
    records = week(rng, who)
    raw = json.dumps([r.to_json() for r in records], separators=(",", ":")).encode()
    envelope = device.sign(signed_body(device.public, [who], records))
    started = time.process_time()
    sealed = seal_batch([who], records, device, server.public)
    seal_ms = (time.process_time() - started) * 1000
    days: dict[int, list[Record]] = {}
    for r in records:
        days.setdefault((r.time - MONDAY).days, []).append(r)
    daily = [seal_batch([who], d, device, server.public) for d in days.values()]
    base = len(raw)
    rows = [
        ["records as JSON (baseline)", base, f"{base / len(records):.0f}", "1.00"],
        ["  gzip -9", len(gzip.compress(raw, 9)), "", ""],
        ["  zstd -19", len(zstandard.ZstdCompressor(level=19).compress(raw)), "", ""],
        ["device-signed document", len(envelope), "", ""],
        ["sealed batch, one for the week", len(sealed), "", ""],
        [f"sealed batches, one a day ({len(daily)})", sum(len(b) for b in daily), "", ""],
    ]
    for row in rows[1:]:
        row[2] = f"{row[1] / len(records):.1f}"  # type: ignore[operator]
        row[3] = f"{row[1] / base:.3f}"  # type: ignore[operator]
    kinds = {k: sum(r.kind == k for r in records) for k in ("opened", "completed", "answered")}
    print(f"One learner's week: {len(records)} records {kinds}")
    print(table(["form", "bytes", "bytes/record", "vs JSON"], rows))
    print(f"sealing the week's batch on the laptop: {seal_ms:.1f} ms of CPU (zstd -19)\n")


def ingest(rng: random.Random, laptops: int, rounds: int) -> float:
    signing = SigningKey.generate()
    server = derive_records_key(signing)
    sealed: list[bytes] = []
    plain: list[bytes] = []
    started = time.process_time()
    for n in range(laptops):
        who = learner(rng, n)
        records = week(rng, who)
        sealed.append(seal_batch([who], records, SigningKey.generate(), server.public))
        plain.append(json.dumps([r.to_json() for r in records], separators=(",", ":")).encode())
    seal_s = time.process_time() - started
    total = sum(len(json.loads(p)) for p in plain)

    def best(run: Callable[[], None]) -> float:
        # CPU seconds of this process: on a shared machine wall time measures the neighbours.
        times = []
        for _ in range(rounds):
            t0 = time.process_time()
            run()
            times.append(time.process_time() - t0)
        return min(times)

    def parse_only() -> None:
        for p in plain:
            json.loads(p)

    def open_only() -> None:
        for s in sealed:
            open_batch(s, server)

    def open_and_ingest() -> None:
        ledger = MemoryLedger()
        step = Ingest(ledger)
        for s in sealed:
            ledger.apply(step.decide(open_batch(s, server)))
        assert len(ledger.records) == total

    t_json, t_open, t_all = best(parse_only), best(open_only), best(open_and_ingest)
    rows = [
        ["json.loads of the records (baseline)", f"{t_json:.3f}", f"{total / t_json:,.0f}", "1.0"],
        ["open_batch", f"{t_open:.3f}", f"{total / t_open:,.0f}", f"{t_open / t_json:.1f}"],
        [
            "open_batch + ingest decision + apply",
            f"{t_all:.3f}",
            f"{total / t_all:,.0f}",
            f"{t_all / t_json:.1f}",
        ],
    ]
    print(
        f"{laptops} laptops, one week each: {total:,} records in"
        f" {sum(map(len, sealed)):,} sealed bytes (sealing took {seal_s:.1f} CPU s);"
        f" CPU seconds, best of {rounds}"
    )
    print(table(["server step (in process, one core)", "CPU s", "records/s", "x baseline"], rows))
    per = t_all / laptops * 1000
    print(f"per laptop batch: {per:.2f} ms")
    return total / t_all


def on_the_wire(rng: random.Random, work: Path, laptops: int, clients: int, floor: float) -> None:
    """Parts 3 and 4: a real server, a real sync, and many laptops' batches over HTTP."""
    src = work / "course"
    for rel in ("lessons/01/index.md", "lessons/02/index.md"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("# A lesson\n\n" + "Some words of a lesson. " * 200)
    with SatchelServer(work / "srv") as srv:
        token = srv.token("teacher", "--bundle", "intro-stats")
        ran = run_cli("publish", src, "--server", srv.url, "--token", token,
                      "--bundle", "intro-stats")  # fmt: skip
        made = run_cli("class", "create", "--data", srv.data, "--bundle", "intro-stats",
                       "--name", "Bench class")  # fmt: skip
        if ran.code or made.code:
            sys.exit(f"setting up the server failed:\n{ran.describe()}\n{made.describe()}")
        code = made.stdout.strip()
        store = work / "laptop"
        sync_json(srv.url, "intro-stats", store)
        with Outbox(store) as box:
            joined = box.join("Learner 001 Petrenko", code, "intro-stats", "en", now=MONDAY)
            week_records = week(rng, joined)
            for r in week_records:
                box.record(joined.learner, r.bundle, r.locale, r.lesson, r.kind,
                           question=r.question, answer=r.answer, correct=r.correct,
                           score=r.scaled_score, now=r.time)  # fmt: skip
            recipient = records_key_of(LocalStore(store))
            assert recipient is not None
            sealed = sum(len(b.data) for b in box.sealed_batches(recipient))
        raw = len(json.dumps([r.to_json() for r in week_records], separators=(",", ":")))
        with LoopbackProxy("127.0.0.1", srv.port) as proxy:
            result = sync_json(proxy.url, "intro-stats", store)
            stats = proxy.stats()
        if result["progress_acked"] != len(week_records):
            sys.exit(f"the week was not acknowledged: {result}")
        uploaded = int(result["bytes_uploaded"])
        measured = [
            ("records as JSON (baseline)", raw),
            ("sealed batch (the request body)", sealed),
            ("request body as the client counts it", uploaded),
            ("sync, up: every byte on the wire", stats.bytes_up),
            ("sync, down: every byte on the wire", stats.bytes_down),
        ]
        rows: list[list[object]] = [[what, n, f"{n / raw:.3f}"] for what, n in measured]
        print(
            f"A week of one learner through a real sync ({len(week_records)} records):"
            f" {result['requests']} exchanges (index 304 + records),"
            f" progress_sent {result['progress_sent']}"
        )
        print(table(["what", "bytes", "vs JSON"], rows))
        print()
        http_ingest(rng, srv, code, laptops, clients, floor)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc, as bench/load.py reads it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_ingest(
    rng: random.Random, srv: SatchelServer, code: str, laptops: int, clients: int, floor: float
) -> None:
    key = httpx.get(f"{srv.url}/v1/index", timeout=10).content
    recipient = parse_index(key)[1].records_key
    assert recipient is not None
    bodies: list[bytes] = []
    total = 0
    for n in range(laptops):
        who = replace(learner(rng, n), class_code=code)
        records = week(rng, who)
        total += len(records)
        bodies.append(seal_batch([who], records, SigningKey.generate(), recipient))
    assert srv.proc is not None
    pid = srv.proc.pid
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    errors: list[str] = []

    def post(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            for body in chunk:
                r = http.post("/v1/records", content=body,
                              headers={"Content-Type": SEALED_MEDIA_TYPE})  # fmt: skip
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=post, args=(bodies[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    if errors:
        sys.exit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    rows: list[list[object]] = [
        ["in process: open_batch + decision + apply (part 2)", "", f"{floor:,.0f}", "1.00"],
        [f"over HTTP, {clients} clients: wall", f"{wall:.2f}", f"{total / wall:,.0f}",
         f"{total / wall / floor:.2f}"],
        ["over HTTP: server CPU (user+system)", f"{cpu:.2f}", f"{total / cpu:,.0f}",
         f"{total / cpu / floor:.2f}"],
    ]  # fmt: skip
    print(
        f"{laptops} laptops' weeks ({total:,} records, {sum(map(len, bodies)):,} sealed bytes)"
        f" posted to satchel serve (SQLite) as {laptops} requests"
    )
    print(table(["server ingest", "seconds", "records/s", "vs in process"], rows))
    print(
        f"per laptop: {wall / laptops * 1000:.1f} ms wall, {cpu / laptops * 1000:.1f} ms server CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--laptops", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-http", action="store_true", help="Only parts 1 and 2.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sizes(rng)
    floor = ingest(rng, args.laptops, args.rounds)
    if args.no_http:
        return
    print()
    with tempfile.TemporaryDirectory() as tmp:
        on_the_wire(rng, Path(tmp), args.laptops, args.clients, floor)


if __name__ == "__main__":
    main()
