"""Reliability figures: syncs cut at random bytes, servers killed mid-publish, flipped bytes.

The same scenarios as ``tests/e2e/test_faults.py``, many more times, against a real
``satchel serve`` and the real CLI:

- **cuts**: syncs (first sync and v1 -> v2 update) cut at seeded random byte offsets by a
  loopback proxy, each resumed until done; every result is checked out and compared byte for
  byte, and all bytes received are compared with one uninterrupted sync from the same start;
- **kills**: the server SIGKILLed at random moments during publishes; after each kill the
  server's data is checked (``satchel fsck --data``: no partial version, store and database
  agree), the server restarted, the publish retried and the result synced and compared;
- **flips**: one bit flipped in a stored chunk on the server, on a peer, in a USB pack file,
  and on the wire; each must be refused (never stored, never checked out) or leave an
  identical tree.

Run from the repository root:  python bench/faults.py [--cuts 100] [--kills 20] [--flips 20]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness.bench import table  # noqa: E402
from harness.e2e import (  # noqa: E402
    SatchelRelay,
    SatchelServer,
    checkout,
    publish,
    run_cli,
    sync,
    tree_differences,
)
from harness.faults import (  # noqa: E402
    BUNDLE,
    FlipProxy,
    chunk_files,
    course_tree,
    current_version,
    edited_tree,
    flip_byte,
    publish_and_kill,
    published,
    server_fsck,
    sync_with_cuts,
)
from harness.proxy import LoopbackProxy  # noqa: E402


def identical(store: Path, tree: Path, out: Path) -> bool:
    res = checkout(store, BUNDLE, out)
    return res.code == 0 and not tree_differences(tree, out)


def ok_sync(url: str, store: Path) -> None:
    res = sync(url, BUNDLE, store)
    if res.code != 0:
        raise SystemExit(f"sync failed: {res.describe()}")


def bench_cuts(tmp: Path, total: int, per_sync: int, seed: int) -> list[list[object]]:
    tmp.mkdir(parents=True)
    rng = random.Random(seed)
    v1 = course_tree(tmp / "v1", seed=1)
    v2 = edited_tree(v1, tmp / "v2", seed=2, new_kb=200)
    rows: list[list[object]] = []
    with SatchelServer(tmp / "srv") as srv:
        token = srv.token("teacher")
        published(publish(srv.url, token, v1, BUNDLE))
        held = tmp / "held-v1"
        ok_sync(srv.url, held)
        published(publish(srv.url, token, v2, BUNDLE))
        with LoopbackProxy("127.0.0.1", srv.port) as proxy:
            for case in ("first sync", "update v1->v2"):
                start = held if case.startswith("update") else None

                def fresh(path: Path, start: Path | None = start) -> Path:
                    if start is not None:
                        shutil.copytree(start, path)
                    return path

                proxy.reset()
                ok_sync(proxy.url, fresh(tmp / f"measure-{len(rows)}"))
                full = proxy.stats().bytes_down
                cuts = syncs = same = attempts = 0
                ratios: list[float] = []
                offsets: list[int] = []
                while cuts < total // 2:
                    store = fresh(tmp / f"cut-{len(rows)}-{syncs}")
                    run = sync_with_cuts(
                        proxy, store, rng, full=full, cuts=min(per_sync, total // 2 - cuts)
                    )
                    cuts += run.cuts
                    syncs += 1
                    attempts += run.attempts
                    offsets += run.offsets
                    ratios.append(run.bytes_down / full)
                    same += identical(store, v2, tmp / f"out-{len(rows)}-{syncs}")
                    shutil.rmtree(store)
                print(f"  {case}: cut offsets {offsets}", file=sys.stderr)
                rows.append(
                    [
                        case,
                        full,
                        syncs,
                        cuts,
                        attempts,
                        f"{same}/{syncs}",
                        f"{statistics.mean(ratios):.3f}",
                        f"{max(ratios):.3f}",
                    ]
                )
    return rows


def bench_kills(tmp: Path, kills: int, seed: int) -> list[list[object]]:
    tmp.mkdir(parents=True)
    rng = random.Random(seed)
    data = tmp / "kill-srv"
    srv = SatchelServer(data).start()
    killed_mid = before = fsck_clean = retried = same = 0
    delays: list[float] = []
    try:
        token = srv.token("teacher")
        base = course_tree(tmp / "k-v1", seed=3)
        published(publish(srv.url, token, base, BUNDLE))
        began = time.monotonic()
        published(publish(srv.url, token, edited_tree(base, tmp / "k-v2", seed=4), BUNDLE))
        took = time.monotonic() - began
        for i in range(kills):
            src = edited_tree(base, tmp / f"k{i}", seed=100 + i, new_kb=300)
            delay = rng.uniform(0.3 * took, 1.1 * took)
            delays.append(round(delay, 2))
            run = publish_and_kill(srv, token, src, delay)
            killed_mid += run.publish_code != 0
            before += run.publish_code == 0
            fsck_clean += server_fsck(data).code == 0
            srv.start()
            res = publish(srv.url, token, src, BUNDLE)
            retried += res.code == 0
            store = tmp / f"k-store{i}"
            ok_sync(srv.url, store)
            same += identical(store, src, tmp / f"k-out{i}")
            shutil.rmtree(store)
    finally:
        srv.stop()
    print(f"  kill delays (s, publish took {took:.2f} s): {delays}", file=sys.stderr)
    return [[kills, killed_mid, before, f"{fsck_clean}/{kills}", f"{retried}/{kills}", same]]


def bench_flips(tmp: Path, flips: int, seed: int) -> list[list[object]]:
    tmp.mkdir(parents=True)
    rng = random.Random(seed)
    tree = course_tree(tmp / "f-v1", seed=5)
    rows: list[list[object]] = []
    with SatchelServer(tmp / "f-srv") as srv:
        token = srv.token("teacher")
        published(publish(srv.url, token, tree, BUNDLE))
        fingerprint = srv.fingerprint()

        def judge(code: int, store: Path, out: Path) -> str:
            if code == 0:
                return "accepted, identical" if identical(store, tree, out) else "CORRUPTED"
            if current_version(store) is not None:
                return "CORRUPTED"
            if store.exists() and run_cli("fsck", "--store", store).code != 0:
                return "CORRUPTED"
            return f"refused (exit {code})"

        def tally(where: str, outcomes: list[str]) -> None:
            caught = sum(o.startswith("refused") for o in outcomes)
            bad = sum(o == "CORRUPTED" for o in outcomes)
            rows.append([where, len(outcomes), caught, len(outcomes) - caught - bad, bad])

        outcomes = []
        for i in range(flips):
            _cid, path = rng.choice(chunk_files(srv.data))
            good = path.read_bytes()
            flip_byte(path, rng)
            store = tmp / f"fs{i}"
            outcomes.append(judge(sync(srv.url, BUNDLE, store, "--retries", 0).code, store, tmp))
            path.write_bytes(good)
            shutil.rmtree(store, ignore_errors=True)
        tally("stored chunk on the server", outcomes)

        source, stick = tmp / "f-source", tmp / "f-stick"
        ok_sync(srv.url, source)
        held = [p for p in (source / "objects").rglob("*") if len(p.name) == 64]
        outcomes = []
        with SatchelRelay(source) as relay:  # a classroom relay serving that store
            for i in range(flips):
                path = rng.choice(held)
                good = path.read_bytes()
                flip_byte(path, rng)
                store = tmp / f"fp{i}"
                res = sync(relay.url, BUNDLE, store, "--retries", 0, "--trust", fingerprint)
                outcomes.append(judge(res.code, store, tmp / f"fp-out{i}"))
                path.write_bytes(good)
                shutil.rmtree(store, ignore_errors=True)
        tally("stored object on a peer (satchel share)", outcomes)

        run_cli("export", "--store", source, "--bundle", BUNDLE, "--to", stick)
        packs = sorted((stick / "packs").iterdir())
        outcomes = []
        for i in range(flips):
            pack = rng.choice(packs)
            good = pack.read_bytes()
            flip_byte(pack, rng)
            store = tmp / f"fu{i}"
            res = run_cli("import", stick, "--store", store, "--trust", fingerprint)
            outcomes.append(judge(res.code, store, tmp / f"fu-out{i}"))
            pack.write_bytes(good)
            shutil.rmtree(store, ignore_errors=True)
        tally("USB pack file", outcomes)

        outcomes = []
        with FlipProxy(srv.port) as proxy:
            proxy.arm(None)
            ok_sync(proxy.url, tmp / "f-measure")
            total = proxy.down
            for i in range(flips):
                proxy.arm(rng.randrange(total), rng.randrange(8))
                store = tmp / f"ft{i}"
                res = sync(proxy.url, BUNDLE, store, "--retries", 0)
                outcomes.append(judge(res.code, store, tmp / f"ft-out{i}"))
                shutil.rmtree(store, ignore_errors=True)
        tally("in transit (any byte of the responses)", outcomes)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuts", type=int, default=100)
    ap.add_argument("--per-sync", type=int, default=1, help="cuts per sync before it may finish")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--flips", type=int, default=20, help="per place")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(f"seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="satchel-faults-") as tmp:
        root = Path(tmp)
        if args.cuts:
            rows = bench_cuts(root / "cuts", args.cuts, args.per_sync, args.seed)
            print("\nCuts at random bytes, each sync resumed until done (bytes vs one sync)")
            heads = ["case", "one sync B", "syncs", "cuts", "runs", "identical", "mean", "max"]
            print(table(heads, rows))
        if args.kills:
            rows = bench_kills(root / "kills", args.kills, args.seed + 1)
            print("\nServer SIGKILLed during publishes")
            heads = ["kills", "publish cut", "done first", "fsck clean", "retry ok", "identical"]
            print(table(heads, rows))
        if args.flips:
            rows = bench_flips(root / "flips", args.flips, args.seed + 2)
            print("\nOne bit flipped (refused = never stored or checked out)")
            print(table(["where", "flips", "refused", "harmless", "CORRUPTED"], rows))


if __name__ == "__main__":
    main()
