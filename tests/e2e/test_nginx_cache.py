"""Acceptance: a classroom behind a caching HTTP proxy downloads each update from the origin once.

The second test counts origin hits per kind for a second client: chunks fetched one by one
(and resumed with Range) and the ready-made delta all come from the cache.

"A second client behind a caching HTTP proxy (nginx from Debian, on loopback) gets the static
delta from the proxy's cache: the origin serves it once."

The chain is real: the ``satchel`` CLI (sync, checkout) -> nginx with ``proxy_cache`` ->
a :class:`LoopbackProxy` that records every request line reaching the origin -> ``satchel
serve``. Publishing goes straight to the origin, so the recorded lines are exactly what the
two clients cost the origin through the cache. Content-addressed GETs (manifests, manifest
deltas, ready-made deltas) are immutable and must be served from the cache the second time;
the release index is ``no-cache`` and must reach the origin on every sync.

nginx comes from Debian (``apt-get install nginx``; ``.ci/run`` installs it). Without it the
test is skipped with that reason.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from satchel.content.index import parse_index
from satchel.content.manifest import parse_manifest
from satchel.content.objects import decode_object, verify_object
from satchel.sync.serving import etag as etag_of

from harness.e2e import (
    SatchelServer,
    assert_same_tree,
    checkout_ok,
    free_port,
    publish,
    sync_json,
    wait_healthy,
)
from harness.proxy import LoopbackProxy
from harness.repo import text_bytes, write_tree

NGINX = Path("/usr/sbin/nginx")
BUNDLE = "course"

pytestmark = pytest.mark.skipif(
    not NGINX.exists(), reason="nginx not installed (apt-get install nginx)"
)

NGINX_CONF = """\
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 64;
}}
http {{
    log_format cache '$request_method $request_uri $status $upstream_cache_status';
    access_log {dir}/access.log cache;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=satchel:1m max_size=256m inactive=1d
                     use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_cache satchel;
            proxy_cache_key $request_uri;
            proxy_cache_methods GET HEAD;
            # No proxy_cache_valid: only the origin's Cache-Control (max-age) makes a
            # response cacheable, and its no-cache keeps the index out of the cache.
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground (``daemon off``), everything it writes under ``root``."""

    def __init__(self, root: Path, upstream_port: int) -> None:
        self.root = root
        self.upstream_port = upstream_port
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> list[str]:
        path = self.root / "access.log"
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def log(self) -> str:
        path = self.root / "error.log"
        return path.read_text("utf-8", errors="replace") if path.exists() else ""

    def start(self, timeout: float = 15.0) -> Nginx:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "cache").mkdir(exist_ok=True)
        conf = self.root / "nginx.conf"
        # As root, workers would otherwise run as nobody and could not use the temp folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        for _attempt in range(3):  # another process may grab the free port in between
            self.port = free_port()
            conf.write_text(
                NGINX_CONF.format(
                    user=user, dir=self.root, port=self.port, upstream=self.upstream_port
                )
            )
            with open(self.root / "stderr.log", "ab") as err:
                self.proc = subprocess.Popen(
                    [str(NGINX), "-p", str(self.root), "-c", str(conf), "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: teardown reaches workers
                )
            if self._wait_listening(timeout):
                return self
            self.stop()
        stderr = (self.root / "stderr.log").read_text("utf-8", errors="replace")
        raise RuntimeError(f"nginx did not start:\n{stderr}\n{self.log()}")

    def _wait_listening(self, timeout: float) -> bool:
        assert self.proc is not None
        return wait_healthy(self.proc, self.url, timeout)

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown of master and workers
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace)


class Chain(NamedTuple):
    origin: SatchelServer
    counter: LoopbackProxy
    nginx: Nginx


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with (
        SatchelServer(tmp_path / "srv") as origin,
        LoopbackProxy("127.0.0.1", origin.port) as counter,
    ):
        nginx = Nginx(tmp_path / "nginx", counter.port).start()
        try:
            yield Chain(origin, counter, nginx)
        finally:
            nginx.stop()


def course(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "README.md": text_bytes(rng, 3_000),
        "lessons/01-counting.html": text_bytes(rng, 60_000),
        "lessons/02-fractions.html": text_bytes(rng, 50_000),
        "media/figure.bin": rng.randbytes(30_000),
    }


def edited(files: dict[str, bytes]) -> dict[str, bytes]:
    out = dict(files)
    page = out["lessons/02-fractions.html"]
    out["lessons/02-fractions.html"] = page[:25_000] + b"A corrected sentence. " + page[25_000:]
    out["README.md"] += b"Version 2 fixes a sentence in lesson 2.\n"
    return out


def test_the_second_client_gets_the_update_from_the_proxy_cache(
    chain: Chain, tmp_path: Path
) -> None:
    origin, counter, nginx = chain
    token = origin.token("teacher")
    v1 = write_tree(tmp_path / "v1", course(5))
    v2 = write_tree(tmp_path / "v2", edited(course(5)))
    stores = [tmp_path / "client-a", tmp_path / "client-b"]

    res = publish(origin.url, token, v1, BUNDLE)
    assert res.code == 0, res.describe()
    counter.reset()  # from here on: only what the clients, through nginx, cost the origin
    first = [sync_json(nginx.url, BUNDLE, store) for store in stores]
    assert [r["version"] for r in first] == [1, 1]
    after_v1 = counter.stats().request_lines

    res = publish(origin.url, token, v2, BUNDLE)
    assert res.code == 0, res.describe()
    index = httpx.get(f"{origin.url}/v1/index/course/en").json()["signed"]["entries"][0]
    assert index["version"] == 2 and index["delta_from"] == [1]
    catalog = httpx.get(f"{origin.url}/v1/catalog").json()["bundles"][0]["versions"]
    m1, m2 = catalog[0]["manifest"], catalog[1]["manifest"]
    assert m2 == index["manifest"]

    second = [sync_json(nginx.url, BUNDLE, store) for store in stores]
    assert [(r["previous_version"], r["version"]) for r in second] == [(1, 2), (1, 2)]
    assert all(r["chunks_downloaded"] > 0 for r in second)
    lines = counter.stats().request_lines

    for i, store in enumerate(stores):
        out = checkout_ok(store, BUNDLE, tmp_path / f"checkout-{i}")
        assert_same_tree(v2, out, modes=False)

    seen = Counter(lines)
    delta_url = f"/v1/deltas/{m1}/{m2}"
    detail = "\n  ".join(lines)
    # The ready-made delta: asked for by both clients, fetched from the origin once.
    assert [line for line in lines if " /v1/deltas/" in line] == [f"GET {delta_url} HTTP/1.1"], (
        detail
    )
    # The index is no-cache: every sync asks the origin (4 syncs).
    assert seen["GET /v1/index/course/en HTTP/1.1"] == 4, detail
    # Every other GET (manifests, manifest deltas, chunks) is immutable: once each.
    gets = [
        line for line in lines if line.startswith("GET ") and " /v1/index/course/en " not in line
    ]
    assert gets, detail
    assert all(seen[line] == 1 for line in gets), detail
    assert f"GET /v1/manifests/{m1} HTTP/1.1" in gets, detail
    assert f"GET /v1/manifests/{m2}?from={m1}&long=1 HTTP/1.1" in gets, detail
    # POSTs are never cached: one pack per first sync, none for the update (the delta did it).
    posts = [line for line in lines if line.startswith("POST ")]
    assert posts == ["POST /v1/pack HTTP/1.1"] * 2, detail
    assert [line for line in after_v1 if line.startswith("POST ")] == posts, detail
    assert set(seen) <= set(gets) | {"GET /v1/index/course/en HTTP/1.1", "POST /v1/pack HTTP/1.1"}

    # nginx's own account agrees: the first delta request missed, the second was a hit.
    delta_log = [line for line in nginx.access_log if f" {delta_url} " in line]
    assert delta_log == [f"GET {delta_url} 200 MISS", f"GET {delta_url} 200 HIT"], nginx.access_log

    # And the cached copy is the origin's, byte for byte, with its caching headers.
    counter.reset()
    cached = httpx.get(nginx.url + delta_url)
    direct = httpx.get(origin.url + delta_url)
    assert cached.status_code == direct.status_code == 200
    assert cached.headers["x-cache-status"] == "HIT"
    assert cached.content == direct.content
    assert cached.headers["etag"] == direct.headers["etag"] == etag_of(m1, "to", m2)
    assert cached.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert counter.stats().requests == 0


def test_a_second_client_gets_chunks_and_deltas_from_the_cache(
    chain: Chain, tmp_path: Path
) -> None:
    """Origin hit counts, per kind, for a second client behind the cache.

    Chunks are fetched one by one with GET (how the browser viewer, a peer or a Range resume
    after a cut asks for them), the update as the ready-made delta. The first client costs
    the origin one request per distinct object; the second client costs it nothing but the
    index, and its Range requests are served from the cached whole objects.
    """
    origin, counter, nginx = chain
    token = origin.token("teacher")
    for n, files in ((1, course(8)), (2, edited(course(8)))):
        res = publish(origin.url, token, write_tree(tmp_path / f"v{n}", files), BUNDLE)
        assert res.code == 0, res.describe()
    entry = parse_index(httpx.get(f"{origin.url}/v1/index/course/en").content)[1].entry(
        BUNDLE, "en"
    )
    assert entry is not None and entry.delta_from == (1,)
    catalog = httpx.get(f"{origin.url}/v1/catalog").json()["bundles"][0]["versions"]
    m1 = catalog[0]["manifest"]
    envelope = decode_object(
        httpx.get(f"{origin.url}/v1/manifests/{entry.manifest}").content, entry.size
    )
    distinct = parse_manifest(envelope)[1].distinct_chunks()
    assert len(distinct) >= 4
    delta_url = f"/v1/deltas/{m1}/{entry.manifest}"

    def one_client(ranged: bool) -> tuple[int, int]:
        """Fetch index, every chunk (verified) and the delta; returns origin (requests, bytes)."""
        counter.reset()
        with httpx.Client(base_url=nginx.url, headers={"Accept-Encoding": "identity"}) as http:
            assert http.get("/v1/index/course/en").status_code == 200
            for cid, length in distinct:
                r = http.get(f"/v1/chunks/{cid}")
                assert r.status_code == 200
                verify_object(r.content, cid, length)
                if ranged:  # a resume inside the object: the rest of it, from byte 5 on
                    part = http.get(f"/v1/chunks/{cid}", headers={"Range": "bytes=5-"})
                    assert part.status_code == 206 and part.content == r.content[5:]
                    assert part.headers["x-cache-status"] == "HIT"
            d = http.get(delta_url)
            assert d.status_code == 200 and len(d.content) > 0
        stats = counter.stats()
        lines = Counter(stats.request_lines)
        chunk_hits = sum(v for k, v in lines.items() if " /v1/chunks/" in k)
        delta_hits = lines[f"GET {delta_url} HTTP/1.1"]
        assert lines["GET /v1/index/course/en HTTP/1.1"] == 1  # the index always goes to the origin
        return chunk_hits + delta_hits, stats.bytes_down

    first_requests, first_bytes = one_client(ranged=False)
    second_requests, second_bytes = one_client(ranged=True)
    # First client: one origin request per distinct chunk, plus the delta.
    assert first_requests == len(distinct) + 1
    # Second client: chunks and delta all from the cache; only the index (a few hundred
    # bytes) crossed the origin link.
    assert second_requests == 0
    assert second_bytes < 2_000 < first_bytes
    statuses = [line for line in nginx.access_log if " /v1/chunks/" in line]
    assert sum(line.endswith(" MISS") for line in statuses) == len(distinct)
    assert sum(line.endswith(" HIT") for line in statuses) == 2 * len(distinct)
