"""Replicas sharing one database and one object store: what the shared backends cost.

    .venv/bin/python -m bench.replicas [--versions 24] [--objects 300]

1. Concurrent publishes: two in-process replicas (separate engines, as two processes have),
   four threads each, all publishing new versions of ONE bundle, on SQLite and on PostgreSQL
   (a throwaway cluster). Prints versions/s and checks the versions are exactly 1..N.
2. Chunk store operations: put / has / get of 32 KiB objects on the folder store and on the S3
   store against moto's server on loopback (a stand-in: a real S3 adds its own latency).

Needs PostgreSQL's binaries (apt-get install postgresql) and the dev extra (moto).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from satchel.content.signing import SigningKey
from satchel.server.repository import Repository
from satchel.server.s3store import S3ChunkStore
from satchel.sync.store import ChunkStore, FolderChunkStore

from harness.repo import publish, sample_files, write_tree
from harness.services import start_postgres, start_s3


def race(url: str, work: Path, versions: int) -> tuple[float, list[int]]:
    work.mkdir(parents=True, exist_ok=True)
    key = work / "key.pem"
    if not key.exists():
        SigningKey.generate().save(key)
    store = FolderChunkStore(work / "objects", durable=False)
    replicas = [
        Repository(work / name, database_url=url, store=store, signing_key=key)
        for name in ("a", "b")
    ]
    trees = [write_tree(work / f"src{i}", sample_files(i)) for i in range(versions)]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(
                lambda i: publish(replicas[i % 2], trees[i], bundle="race").version, range(versions)
            )
        )
    seconds = time.perf_counter() - start
    for r in replicas:
        r.engine.dispose()
    return seconds, sorted(got)


def store_ops(store: ChunkStore, n: int) -> dict[str, float]:
    import hashlib

    objs = {
        hashlib.sha256(i.to_bytes(4, "big")).hexdigest(): os.urandom(32 * 1024) for i in range(n)
    }
    out: dict[str, float] = {}
    t = time.perf_counter()
    for cid, obj in objs.items():
        store.put(cid, obj)
    out["put/s"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for cid in objs:
        store.has(cid)
    out["has/s"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for cid in objs:
        store.get(cid)
    out["get/s"] = n / (time.perf_counter() - t)
    out["MB/s get"] = out["get/s"] * 32 * 1024 / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=24)
    parser.add_argument("--objects", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        base = Path(tmp)
        cluster = start_postgres(base)
        s3 = start_s3(base)
        try:
            print(f"concurrent publishes of one bundle: 2 replicas x 4 threads, {args.versions}")
            print(f"{'database':<12}{'seconds':>10}{'versions/s':>12}  consecutive")
            for name, url in (
                ("sqlite", f"sqlite:///{base / 'race.db'}"),
                ("postgresql", cluster.new_database()),
            ):
                seconds, got = race(url, base / name, args.versions)
                ok = got == list(range(1, args.versions + 1))
                print(f"{name:<12}{seconds:>10.2f}{args.versions / seconds:>12.1f}  {ok}")
            print()
            print(f"chunk store, {args.objects} objects of 32 KiB, one thread")
            print(f"{'store':<12}{'put/s':>10}{'has/s':>10}{'get/s':>10}{'MB/s get':>10}")
            stores: dict[str, ChunkStore] = {
                "folder": FolderChunkStore(base / "fs", durable=True),
                "s3 (moto)": S3ChunkStore(s3.new_bucket(), "b/", client=s3.client()),
            }
            for name, store in stores.items():
                r = store_ops(store, args.objects)
                print(
                    f"{name:<12}{r['put/s']:>10.0f}{r['has/s']:>10.0f}{r['get/s']:>10.0f}"
                    f"{r['MB/s get']:>10.1f}"
                )
        finally:
            s3.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
