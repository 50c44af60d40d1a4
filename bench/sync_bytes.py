"""Bytes on the wire for real curriculum updates: first sync, update, publish, no-op.

For each pair of corpus versions this starts a real ``satchel serve``, publishes the old
version, syncs a fresh store with the real CLI through a loopback proxy (which counts what
really crosses the socket, HTTP heads included), publishes the new version through a second
proxy, and syncs again. Baselines are measured in the same run: ``tar --sort=name | zstd -19``
of the old tree (what shipping the course as one archive costs) and of just the changed and
added files of the new tree (what a file-level update would cost, compressed as well as it
can be).

Run from the repository root:  python bench/sync_bytes.py
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import zstandard  # noqa: E402

from harness.bench import corpus, table, tar_zstd_size  # noqa: E402
from harness.e2e import SatchelServer, run_cli, tree_differences  # noqa: E402
from harness.proxy import LoopbackProxy, ProxyStats  # noqa: E402


@dataclass
class Row:
    pair: str
    first_wire: int
    old_baseline: Future[int]
    update_wire: int
    update_requests: int
    update_chunks: int
    publish_up: int
    publish_requests: int
    changed_baseline: Future[int]
    changed_files: int
    noop_wire: int
    noop_requests: int


def wire(stats: ProxyStats) -> int:
    return stats.bytes_up + stats.bytes_down


def changed_paths(old: Path, new: Path) -> list[str]:
    """Paths of the new tree that are added or whose content changed."""
    out = []
    for path in sorted(new.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(new).as_posix()
        before = old / rel
        if not before.is_file() or before.read_bytes() != path.read_bytes():
            out.append(rel)
    return out


def tar_zstd_files(root: Path, rels: list[str], level: int = 19) -> int:
    """``tar --sort=name`` of just ``rels`` under ``root``, then ``zstd -LEVEL`` (as in harness)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel in sorted(rels):
            tar.add(root / rel, arcname=rel, recursive=False)
    return len(zstandard.ZstdCompressor(level=level, threads=-1).compress(buf.getvalue()))


def cli_ok(*args: object) -> str:
    res = run_cli(*args, timeout=600)
    if res.code != 0:
        sys.exit(f"satchel {' '.join(map(str, args))} failed:\n{res.describe()}")
    return res.stdout


def sync(proxy: LoopbackProxy, bundle: str, store: Path) -> tuple[dict[str, object], ProxyStats]:
    proxy.reset()
    out = cli_ok("sync", "--server", proxy.url, "--bundle", bundle, "--store", store, "--json")
    return json.loads(out), proxy.stats()


def publish(url: str, token: str, src: Path, bundle: str) -> int:
    return int(cli_ok("publish", src, "--server", url, "--token", token, "--bundle", bundle))


def check_checkout(store: Path, bundle: str, expected: Path, work: Path) -> None:
    out = work / f"checkout-{bundle}"
    cli_ok("checkout", "--store", store, "--bundle", bundle, "--to", out)
    problems = tree_differences(expected, out)
    if problems:
        sys.exit(f"checkout of {bundle} differs from {expected}: {problems[:5]}")
    shutil.rmtree(out)


def run_pairs(
    work: Path, bundle: str, old: Path, news: list[tuple[str, Path]], pool: ThreadPoolExecutor
) -> list[Row]:
    """One server: publish ``old``, first sync; then for each new version (in order) publish it
    and update a store still at ``old`` (the first update moves the original store, later ones a
    copy taken before any update, i.e. a client that skipped the versions in between)."""
    old_baseline = pool.submit(tar_zstd_size, old, 19)
    rows: list[Row] = []
    with (
        SatchelServer(work / f"srv-{bundle}") as server,
        LoopbackProxy("127.0.0.1", server.port) as client_link,
        LoopbackProxy("127.0.0.1", server.port) as publisher_link,
    ):
        token = server.token("teacher")
        publish(server.url, token, old, bundle)
        store = work / f"store-{bundle}"
        _first, first_wire = sync(client_link, bundle, store)
        untouched = work / f"store-{bundle}-at-old"
        if len(news) > 1:
            shutil.copytree(store, untouched)
        for i, (label, new) in enumerate(news):
            # Earlier entries of ``news`` are already on the server; the copied store never saw
            # them, so it updates across the versions it skipped.
            publisher_link.reset()
            publish(publisher_link.url, token, new, bundle)
            pub = publisher_link.stats()
            target = store if i == 0 else work / f"store-{bundle}-{i}"
            if i > 0:
                shutil.copytree(untouched, target)
            update, update_wire = sync(client_link, bundle, target)
            check_checkout(target, bundle, new, work)
            _noop, noop_wire = sync(client_link, bundle, target)
            rels = changed_paths(old, new)
            rows.append(
                Row(
                    pair=label,
                    first_wire=wire(first_wire),
                    old_baseline=old_baseline,
                    update_wire=wire(update_wire),
                    update_requests=update_wire.requests,
                    update_chunks=int(update["chunks_downloaded"]),  # type: ignore[call-overload]
                    publish_up=pub.bytes_up,
                    publish_requests=pub.requests,
                    changed_baseline=pool.submit(tar_zstd_files, new, rels, 19),
                    changed_files=len(rels),
                    noop_wire=wire(noop_wire),
                    noop_requests=noop_wire.requests,
                )
            )
    return rows


def main() -> None:
    started = time.monotonic()
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="satchel-bench-") as tmp,
        ThreadPoolExecutor(1) as pool,  # baselines compress while the servers work
    ):
        work = Path(tmp)
        rows += run_pairs(
            work,
            "intro-stats",
            corpus("intro-stats/v2"),
            [("intro-stats v2 -> v3", corpus("intro-stats/v3"))],
            pool,
        )
        rows += run_pairs(
            work,
            "shell-novice",
            corpus("shell-novice/v1"),
            [("shell-novice v1 -> v2", corpus("shell-novice/v2"))],
            pool,
        )
        rows += run_pairs(
            work,
            "intro-stats-1e",
            corpus("intro-stats/v1"),
            [
                ("intro-stats v1 -> v2", corpus("intro-stats/v2")),
                ("intro-stats v1 -> v3 (skipped v2)", corpus("intro-stats/v3")),
            ],
            pool,
        )
        headers = [
            "pair",
            "first sync wire",
            "tar.zst-19 old",
            "ratio",
            "update wire (down+up)",
            "update req",
            "update chunks",
            "publish new (up)",
            "publish req",
            "changed+added files",
            "changed+added tar.zst-19",
            "update / changed",
            "no-op wire",
            "no-op req",
        ]
        body = []
        for r in rows:
            base = r.old_baseline.result()
            changed = r.changed_baseline.result()
            body.append(
                [
                    r.pair,
                    r.first_wire,
                    base,
                    f"{r.first_wire / base:.3f}",
                    r.update_wire,
                    r.update_requests,
                    r.update_chunks,
                    r.publish_up,
                    r.publish_requests,
                    r.changed_files,
                    changed,
                    f"{r.update_wire / changed:.3f}",
                    r.noop_wire,
                    r.noop_requests,
                ]
            )
    print(table(headers, body))
    print()
    print(
        "Wire bytes are counted by a loopback proxy (HTTP heads included). 'ratio' is first-sync"
        " wire / tar.zst-19 of the old tree; 'update / changed' is update wire / tar.zst-19 of the"
        " new tree's changed and added files. 'publish new (up)' is what the teacher's publish of"
        f" the new version sent. Runtime {time.monotonic() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
