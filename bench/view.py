"""``satchel view`` on a whole real course: page latency, image throughput, Range seeks, RSS.

Publishes intro-stats v2 (473 files, 22 MB) in-process, syncs it into a fresh store, starts the
real ``satchel view`` and fetches, over loopback: the catalog and the table of contents (cold:
titles read from the chunk store; warm), all 102 lesson pages, every image, and random 64 KiB
ranges of the largest file; then lesson pages per second (each with the viewer's frame: search
box, contents, previous/next) and search result pages per second. The baseline, measured in
the same run, is the same files checked out to a folder and served by Python's own
``http.server`` (a plain file server that verifies nothing, renders nothing): the ratios are
what verifying every chunk on every read, and rendering, cost.

Run from the repository root:  python bench/view.py
"""

from __future__ import annotations

import functools
import http.server
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from satchel.sync.checkout import checkout  # noqa: E402
from satchel.sync.local import LocalStore  # noqa: E402
from satchel.sync.publish import Publisher  # noqa: E402
from satchel.sync.updater import Updater  # noqa: E402

from harness import e2e  # noqa: E402
from harness.bench import corpus, table  # noqa: E402
from harness.repo import RepoFetcher, admin_target, make_repository  # noqa: E402


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def timed(client: httpx.Client, url: str) -> tuple[float, int]:
    start = time.perf_counter()
    r = client.get(url)
    r.raise_for_status()
    return time.perf_counter() - start, len(r.content)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    source = corpus("intro-stats/v2")
    tmp = Path(tempfile.mkdtemp(prefix="satchel-bench-view-"))
    repo = make_repository(tmp / "srv")
    Publisher(admin_target(repo), level=3).publish(
        source, bundle="intro-stats", locale="en", title="Introductory Statistics 2e"
    )
    store = LocalStore(tmp / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("intro-stats", "en")
    ref = store.ref("intro-stats", "en")
    assert ref is not None
    manifest = store.load_manifest(ref.manifest)
    checkout(manifest, store.objects, tmp / "checkout")

    port = e2e.free_port()
    proc = subprocess.Popen(
        [str(e2e.SATCHEL), "view", "--store", str(store.root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    files = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp / "checkout"))
    )
    threading.Thread(target=files.serve_forever, daemon=True).start()
    plain = f"http://127.0.0.1:{files.server_address[1]}"
    url = f"http://127.0.0.1:{port}"
    try:
        assert e2e.wait_healthy(proc, url, 30)
        rows: list[list[object]] = []
        with (
            httpx.Client(base_url=url, timeout=60) as client,
            httpx.Client(base_url=plain, timeout=60) as base,
        ):
            for name, path in (("catalog", "/"), ("contents", "/b/intro-stats/en/")):
                cold, _ = timed(client, path)
                warm = statistics.median(timed(client, path)[0] for _ in range(5))
                rows.append([f"{name} cold / warm", f"{cold * 1000:.0f} / {warm * 1000:.0f} ms"])
            toc = client.get("/b/intro-stats/en/").text.split("<details")[0]
            pages = re.findall(r'href="(/b/intro-stats/en/current/page/[^"]+)"', toc)
            page_times = []
            images: list[str] = []
            for page in pages:
                r = client.get(page)
                r.raise_for_status()
                page_times.append(r.elapsed.total_seconds())
                images += re.findall(r'<img src="([^"]+)"', r.text)
            page_times.sort()
            # Pages per second, sequential (one student clicking), against the plain server
            # sending the same lessons' source files.
            sources = [p.split("/current/page/", 1)[1] for p in pages]
            start = time.perf_counter()
            for page in pages:
                client.get(page).raise_for_status()
            view_pps = len(pages) / (time.perf_counter() - start)
            start = time.perf_counter()
            for src in sources:
                base.get("/" + src).raise_for_status()
            base_pps = len(sources) / (time.perf_counter() - start)
            words = [
                "mean", "median", "probability", "hypothesis", "sample", "distribution",
                "variance", "regression", "correlation", "normal", "binomial", "poisson",
                "confidence interval", "standard deviation", "histogram", "outlier", "survey",
                "population", "random", "chi", "test statistic", "quartile", "percentile",
                "frequency", "data", "stat", "error", "uniform", "exponential", "central limit",
            ]  # fmt: skip
            start = time.perf_counter()
            for word in words:
                r = client.get("/search", params={"q": word})
                r.raise_for_status()
            search_pps = len(words) / (time.perf_counter() - start)
            rows.append(
                [
                    f"{len(pages)} lesson pages, median / p95",
                    f"{statistics.median(page_times) * 1000:.1f} / "
                    f"{page_times[int(len(page_times) * 0.95)] * 1000:.1f} ms",
                ]
            )
            images = sorted(set(images))
            paths = [i.split("/file/", 1)[1] for i in images]
            start = time.perf_counter()
            total = sum(timed(client, i)[1] for i in images)
            view_s = time.perf_counter() - start
            start = time.perf_counter()
            base_total = sum(timed(base, "/" + p)[1] for p in paths)
            base_s = time.perf_counter() - start
            assert base_total == total
            rows.append(
                [
                    f"{len(images)} images ({total:,} B), satchel view",
                    f"{total / view_s / 1e6:.1f} MB/s",
                ]
            )
            rows.append(
                [
                    "same images, http.server over a checkout",
                    f"{base_total / base_s / 1e6:.1f} MB/s",
                ]
            )
            rows.append(
                ["view throughput / plain file server throughput", f"{base_s / view_s:.2f}x"]
            )
            rows.append(["lesson pages/s (framed, with the search box)", f"{view_pps:.0f}"])
            rows.append(["same lessons' source files/s, http.server", f"{base_pps:.0f}"])
            rows.append(["lesson pages/s / plain files/s", f"{view_pps / base_pps:.2f}x"])
            rows.append([f"search result pages/s ({len(words)} queries)", f"{search_pps:.0f}"])
            big = max(manifest.files, key=lambda f: f.size)
            rng = random.Random(1)
            seeks = []
            for _ in range(50):
                a = rng.randrange(0, max(1, big.size - 65536))
                t0 = time.perf_counter()
                r = client.get(
                    f"/b/intro-stats/en/current/file/{big.path}",
                    headers={"Range": f"bytes={a}-{a + 65535}"},
                )
                assert r.status_code == 206 and len(r.content) == min(65536, big.size - a)
                seeks.append(time.perf_counter() - t0)
            rows.append(
                [
                    f"64 KiB Range of {big.path} ({big.size:,} B), median",
                    f"{statistics.median(seeks) * 1000:.1f} ms",
                ]
            )
        rows.append(["viewer RSS after the run", f"{rss_kib(proc.pid) / 1024:.0f} MiB"])
        print(table(["satchel view, intro-stats v2", "value"], rows))
    finally:
        proc.terminate()
        proc.wait(10)
        files.shutdown()


if __name__ == "__main__":
    main()
