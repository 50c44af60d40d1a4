"""Load: N concurrent simulated laptops each syncing a real update from one `satchel serve`.

What one simulated client does is what ``satchel sync`` does for a laptop holding version 1
when version 2 is out (:mod:`satchel.sync.updater`), with the same sync/ code, over its own
HTTP connection (asyncio + httpx, loopback only):

1. ``GET /v1/index/BUNDLE/LOCALE`` with the ETag of the index it holds; verify the
   signature against the pinned key, the serial (no rollback) and the entry's version;
2. ``GET /v1/manifests/{v2}?from={v1}``; undo the manifest delta against the v1 envelope it
   holds and verify the manifest against the index and the key;
3. the objects it lacks: the ready-made ``GET /v1/deltas/{v1}/{v2}`` when the index lists one
   (``--route auto``, what the updater does) or ``POST /v1/pack`` with ``base`` (``--route
   dynamic``, what a client two versions behind or a server without static deltas gets);
   every frame is parsed, every range delta undone against the v1 files and every object
   checked against its SHA-256 before it is kept.

Each client keeps its new objects in memory over a shared, read-only v1 store, which was
fetched once before the run by the real :class:`~satchel.sync.updater.Updater`. The bench is
about the server: 500 laptops' CPUs are not on this 2-core machine, so the parts that are the
same for every client are shared. The signature checks and parsing of the index and manifest
run once per distinct byte string (each client still compares or hashes the bytes it got, so
a different answer is verified on its own), and one TLS context is made for all clients
instead of one each (66 ms of CPU apiece, for plain-HTTP loopback). Every pack frame is still
parsed, undone and SHA-256-checked per client. Clients start
together (a classroom at 9 o'clock), each on its own connection. A sync counts as an error if
any step raises or any status is unexpected; nothing is retried.

The server is the installed ``satchel serve`` (uvicorn, one process, SQLite + a folder),
started fresh for each client count so its peak RSS (VmHWM) belongs to that run; RSS is also
sampled every 50 ms ("RSS over time": the peak in each tenth of the run).

Data: ``../shared/corpus/intro-stats`` v2 -> v3 (OpenStax errata, 22 MB) when present, else a
synthetic tree (``--synthetic``). Run from the repository root:

    python bench/load.py                       # 50, 200, 500 clients
    python bench/load.py --clients 500 --route dynamic
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from satchel.clients.http import HttpClient  # noqa: E402
from satchel.content.delta import DELTA_OF, decode_delta  # noqa: E402
from satchel.content.index import IndexEntry  # noqa: E402
from satchel.content.manifest import Manifest  # noqa: E402
from satchel.content.objects import decode_object  # noqa: E402
from satchel.content.signing import PublicKey  # noqa: E402
from satchel.sync.delta import FileReader  # noqa: E402
from satchel.sync.local import LocalStore  # noqa: E402
from satchel.sync.pack import PackReader  # noqa: E402
from satchel.sync.plan import encode_want, missing  # noqa: E402
from satchel.sync.receive import receive_frames  # noqa: E402
from satchel.sync.store import MemoryChunkStore, store_lookup  # noqa: E402
from satchel.sync.trust import check_entry_version, verify_index, verify_manifest  # noqa: E402
from satchel.sync.updater import Updater  # noqa: E402

from harness.bench import CORPUS, MemorySampler, cpu_seconds, proc_status, table  # noqa: E402
from harness.e2e import SatchelServer, run_cli  # noqa: E402

BUNDLE = "course"
LOCALE = "en"


# -- the client side ----------------------------------------------------------------------------
class Overlay:
    """A client's chunk store: the shared v1 objects (read-only) plus what this client received."""

    def __init__(self, base: MemoryChunkStore) -> None:
        self.base = base
        self.own: dict[str, bytes] = {}

    def has(self, cid: str) -> bool:
        return cid in self.own or self.base.has(cid)

    def get(self, cid: str) -> bytes:
        obj = self.own.get(cid)
        return obj if obj is not None else self.base.get(cid)

    def put(self, cid: str, obj: bytes) -> bool:
        if self.has(cid):
            return False
        self.own[cid] = obj
        return True

    def delete(self, cid: str) -> None:
        self.own.pop(cid, None)

    def stored_size(self, cid: str) -> int:
        return len(self.get(cid))

    def __iter__(self) -> Iterator[str]:
        return iter([*self.base, *self.own])


@dataclass(frozen=True)
class Held:
    """What every simulated laptop holds before the run: version 1, verified, and its trust."""

    key: PublicKey
    index_raw: bytes
    index_etag: str | None
    serial: int
    version: int
    manifest_id: str
    envelope: bytes
    manifest: Manifest
    objects: MemoryChunkStore


def hold_first_version(url: str, root: Path) -> Held:
    """Sync version 1 once with the real Updater, then keep it in memory for every client."""
    store = LocalStore(root, durable=False)
    with HttpClient(url) as http:
        Updater(store, http).sync(BUNDLE, LOCALE)
    ref = store.ref(BUNDLE, LOCALE)
    key = store.pinned_key()
    raw = store.last_index(BUNDLE, LOCALE)
    etag, serial = store.index_meta(BUNDLE, LOCALE)
    envelope = store.manifest_bytes(ref.manifest) if ref else None
    assert ref and key and raw and serial is not None and envelope
    objects = MemoryChunkStore()
    for cid in store.objects:
        objects.put(cid, store.objects.get(cid))
    return Held(
        key, raw, etag, serial, ref.version, ref.manifest, envelope,
        store.load_manifest(ref.manifest), objects,
    )  # fmt: skip


@dataclass
class Outcome:
    seconds: float = 0.0
    bytes: int = 0
    requests: int = 0
    route: str = ""
    error: str | None = None


class Unexpected(Exception):
    pass


# Verified once per distinct bytes (see the module docstring); keys are the full bytes / hash.
_INDEXES: dict[bytes, object] = {}
_MANIFESTS: dict[tuple[str, str], Manifest] = {}
_TLS = ssl.create_default_context()  # made once, like a laptop's process does


def _verified_index(raw: bytes, held: Held) -> IndexEntry:
    index = _INDEXES.get(raw)
    if index is None:
        trusted = verify_index(
            raw,
            bundle=BUNDLE,
            locale=LOCALE,
            pinned=held.key,
            expected_fingerprint=None,
            now=datetime.now(UTC),
            last_serial=held.serial,
            last_raw=held.index_raw,
        )
        index = _INDEXES.setdefault(raw, trusted.index)
    entry = index.entry(BUNDLE, LOCALE)  # type: ignore[attr-defined]
    if entry is None:
        raise Unexpected("bundle missing from the index")
    check_entry_version(entry, held.version, held.manifest_id)
    return entry  # type: ignore[no-any-return]


def _verified_manifest(data: bytes, entry: IndexEntry, held: Held) -> Manifest:
    digest = hashlib.sha256(data).hexdigest()  # every client hashes what it received
    if digest != entry.manifest:
        raise Unexpected("manifest does not match its index entry")
    key = (digest, entry.manifest)
    manifest = _MANIFESTS.get(key)
    if manifest is None:
        manifest = _MANIFESTS.setdefault(key, verify_manifest(data, entry, held.key))
    return manifest


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise Unexpected(f"{what}: HTTP {resp.status_code}")


async def one_sync(http: httpx.AsyncClient, held: Held, route: str) -> Outcome:
    """One laptop's update from held version 1, as the updater would do it, fully verified."""
    out = Outcome()
    start = time.perf_counter()
    store = Overlay(held.objects)
    headers = {"If-None-Match": held.index_etag} if held.index_etag else {}
    r = await http.get(f"/v1/index/{BUNDLE}/{LOCALE}", headers=headers)
    out.requests += 1
    _expect(r, 200, "index")
    out.bytes += len(r.content)
    entry = _verified_index(r.content, held)

    r = await http.get(f"/v1/manifests/{entry.manifest}", params={"from": held.manifest_id})
    out.requests += 1
    _expect(r, 200, "manifest")
    out.bytes += len(r.content)
    obj = r.content
    if obj[:1] == bytes([DELTA_OF]):
        data = decode_delta(obj, held.envelope, entry.size)
    else:
        data = decode_object(obj, entry.size)
    manifest = _verified_manifest(data, entry, held)

    distinct = manifest.distinct_chunks()
    need = missing(distinct, store)
    if route == "auto" and _static_route(entry, distinct, need, held):
        request = http.build_request("GET", f"/v1/deltas/{held.manifest_id}/{entry.manifest}")
        out.route = "static"
    else:
        want = encode_want(distinct, {cid for cid, _ in need})
        body = {
            "manifest": entry.manifest,
            "want": base64.b64encode(want).decode("ascii"),
            "base": held.manifest_id,
        }
        request = http.build_request("POST", "/v1/pack", json=body)
        out.route = "dynamic"
    base_reader = FileReader(
        held.manifest, store, store_lookup(store, dict(held.manifest.dictionaries))
    )
    resp = await http.send(request, stream=True)
    out.requests += 1
    try:
        _expect(resp, 200, out.route + " pack")
        reader = PackReader()
        count = 0
        async for piece in resp.aiter_raw():
            out.bytes += len(piece)
            count += receive_frames(
                reader.feed(piece),
                dict(need),
                store,
                dictionaries=dict(manifest.dictionaries),
                base=base_reader,
            )
        reader.close()
    finally:
        await resp.aclose()
    if count != len(need) or missing(distinct, store):
        raise Unexpected(f"pack held {count} objects, {len(need)} were needed")
    out.seconds = time.perf_counter() - start
    return out


def _static_route(
    entry: IndexEntry, distinct: list[tuple[str, int]], need: list[tuple[str, int]], held: Held
) -> bool:
    """The updater's rule: the ready-made pack when the need is exactly the update from v1."""
    if held.manifest.version not in entry.delta_from:
        return False
    old = {cid for cid, _ in held.manifest.distinct_chunks()}
    return {cid for cid, _ in need} == {cid for cid, _ in distinct if cid not in old}


async def laptop(url: str, held: Held, route: str, syncs: int, timeout: float) -> list[Outcome]:
    """One simulated client: its own connection, ``syncs`` updates from v1 one after another."""
    results = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=url,
        limits=limits,
        timeout=httpx.Timeout(timeout),
        headers={"Accept-Encoding": "identity", "User-Agent": "satchel-load/1"},
        verify=_TLS,
    ) as http:
        for _ in range(syncs):
            started = time.perf_counter()
            try:
                results.append(await one_sync(http, held, route))
            except Exception as exc:  # every failure counts; the message says which
                text = str(exc).splitlines()[0][:120] if str(exc) else ""
                results.append(
                    Outcome(
                        seconds=time.perf_counter() - started,
                        error=f"{type(exc).__name__}: {text}",
                    )
                )
    return results


# -- one run -----------------------------------------------------------------------------------
@dataclass
class Row:
    clients: int
    syncs: int
    route: str
    seconds: float
    syncs_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_peak_rss_mb: float
    server_cpu_s: float
    client_cpu_s: float
    bytes_per_sync: int
    requests_per_sync: float
    rss_over_time_mb: list[int] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    server_ms: dict[str, float] = field(default_factory=dict)  # mean time per route template


def server_route_means(url: str) -> dict[str, float]:
    """Mean milliseconds per route template, from the server's own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, dict[str, float]] = {}
    page = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(page):
        if family.name != "satchel_http_request_duration_seconds":
            continue
        for s in family.samples:
            kind = s.name.rsplit("_", 1)[1]
            if kind in ("sum", "count"):
                sums.setdefault(s.labels["route"], {})[kind] = s.value
    return {
        route: round(1000 * v["sum"] / v["count"], 1)
        for route, v in sums.items()
        if v.get("count") and route.startswith("/v1/")
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _all(
    url: str, held: Held, n: int, route: str, syncs: int, timeout: float
) -> list[Outcome]:
    tasks = [laptop(url, held, route, syncs, timeout) for _ in range(n)]
    return [o for per in await asyncio.gather(*tasks) for o in per]


def run_level(
    server: SatchelServer, held: Held, n: int, route: str, syncs: int, timeout: float
) -> Row:
    assert server.proc is not None
    pid = server.proc.pid
    cpu0, ccpu0 = cpu_seconds(pid), time.process_time()
    with MemorySampler(pid) as rss:
        t0 = time.perf_counter()
        outcomes = asyncio.run(_all(server.url, held, n, route, syncs, timeout))
        wall = time.perf_counter() - t0
    ok = [o for o in outcomes if o.error is None]
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.error:
            errors[o.error] = errors.get(o.error, 0) + 1
    routes: dict[str, int] = {}
    for o in ok:
        routes[o.route] = routes.get(o.route, 0) + 1
    total_bytes = sum(o.bytes for o in ok)
    latencies = [o.seconds * 1000 for o in ok]
    return Row(
        clients=n,
        syncs=len(outcomes),
        route=route,
        seconds=round(wall, 2),
        syncs_per_s=round(len(ok) / wall, 1),
        mb_per_s=round(total_bytes / wall / 1e6, 2),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        errors=len(outcomes) - len(ok),
        server_peak_rss_mb=round(proc_status(pid, "VmHWM") / 1e6, 1),
        server_cpu_s=round(cpu_seconds(pid) - cpu0, 2),
        client_cpu_s=round(time.process_time() - ccpu0, 2),
        bytes_per_sync=total_bytes // max(len(ok), 1),
        requests_per_sync=round(sum(o.requests for o in ok) / max(len(ok), 1), 2),
        rss_over_time_mb=rss.tenths(),
        error_kinds=errors,
        routes=routes,
        server_ms=server_route_means(server.url),
    )


# -- data --------------------------------------------------------------------------------------
def synthetic(root: Path, version: int, files: int, size: int) -> Path:
    """A course of text pages and a few binary files; version 2 corrects a few pages."""
    rng = random.Random(1234)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(800)
    ]
    for i in range(files):
        path = root / f"lessons/{i // 20:02d}/page-{i:04d}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i % 10 == 9:
            data = rng.randbytes(size)  # a figure: incompressible
        else:
            data = " ".join(rng.choice(words) for _ in range(size // 5)).encode()[:size]
        if version >= 2 and i % 25 == 3:
            cut = len(data) // 2
            data = data[:cut] + b" A corrected sentence for version two. " + data[cut:]
        path.write_bytes(data)
    return root


def trees(args: argparse.Namespace, work: Path) -> tuple[Path, Path, str]:
    if not args.synthetic:
        old, new = CORPUS / "intro-stats" / "v2", CORPUS / "intro-stats" / "v3"
        if old.is_dir() and new.is_dir():
            return old, new, "intro-stats v2 -> v3"
        print("(../shared/corpus absent: using a synthetic tree)", file=sys.stderr)
    size = args.file_size
    return (
        synthetic(work / "v1", 1, args.files, size),
        synthetic(work / "v2", 2, args.files, size),
        f"synthetic {args.files} files x {size:,} B, v1 -> v2",
    )


def publish(server: SatchelServer, token: str, src: Path) -> int:
    res = run_cli(
        "publish", src, "--server", server.url, "--token", token, "--bundle", BUNDLE, timeout=900
    )
    if res.code != 0:
        raise SystemExit(f"publish failed: {res.describe()}")
    return int(res.stdout.strip())


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="50,200,500", help="comma-separated client counts")
    ap.add_argument("--syncs", type=int, default=1, help="updates each client does in turn")
    ap.add_argument(
        "--route",
        default="auto",
        help="auto (the updater's choice: the ready-made delta), dynamic (POST /v1/pack with"
        " base), or both as 'auto,dynamic' (each client count runs once per route)",
    )
    ap.add_argument("--synthetic", action="store_true", help="synthetic tree even with a corpus")
    ap.add_argument("--files", type=int, default=200, help="synthetic: number of files")
    ap.add_argument("--file-size", type=int, default=20_000, help="synthetic: bytes per file")
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON lines too")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    route_list = [r.strip() for r in args.route.split(",") if r.strip()]
    if not route_list or any(r not in ("auto", "dynamic") for r in route_list):
        ap.error("--route takes auto, dynamic or auto,dynamic")

    work = args.keep or Path(tempfile.mkdtemp(prefix="satchel-load-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        old, new, label = trees(args, work)
        data = work / "srv"
        serve_args = ("--log-format", "json", "--no-access-log")
        with SatchelServer(data, extra=serve_args) as server:
            token = server.token("teacher")
            t0 = time.perf_counter()
            publish(server, token, old)
            held = hold_first_version(server.url, work / "laptop")
            publish(server, token, new)
            setup = time.perf_counter() - t0
        print(f"# {label}; setup (2 publishes + 1 first sync) {setup:.1f} s", file=sys.stderr)
        rows = []
        for n, route in [(n, r) for n in counts for r in route_list]:
            # A fresh server process per level: its VmHWM is this level's peak.
            with SatchelServer(data, extra=serve_args) as server:
                row = run_level(server, held, n, route, args.syncs, args.timeout)
            rows.append(row)
            print(
                f"# {n} clients, route {route}: {row.errors} errors {row.error_kinds or ''}"
                f" routes {row.routes}"
                f" RSS over time (MB, peak per tenth) {row.rss_over_time_mb};"
                f" server mean ms per route {row.server_ms}",
                file=sys.stderr,
            )
            if args.json:
                print(json.dumps(asdict(row)), flush=True)
        headers = [
            "clients",
            "syncs",
            "route",
            "syncs/s",
            "MB/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server peak RSS MB",
            "server CPU s",
            "server CPU ms/sync",
            "client CPU s",
            "bytes/sync",
            "req/sync",
        ]
        body: list[list[object]] = [
            [
                r.clients, r.syncs, r.route, r.syncs_per_s, r.mb_per_s, r.p50_ms, r.p99_ms,
                r.errors, r.server_peak_rss_mb, r.server_cpu_s,
                round(1000 * r.server_cpu_s / max(r.syncs - r.errors, 1), 1), r.client_cpu_s,
                r.bytes_per_sync, r.requests_per_sync,
            ]
            for r in rows
        ]  # fmt: skip
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{label}, {os.cpu_count()} CPUs, load average {load}\n")
        print(table(headers, body))
        return 1 if any(r.errors for r in rows) else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
