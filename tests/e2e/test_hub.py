"""``satchel share --viewer``: a classroom hub serving the viewer to another machine.

The other machine is a network namespace of our own (as root, where ``ip netns`` works: a
veth pair on 198.18.0.0/15, the benchmarking range, between this machine and the namespace,
both made and removed by the test), else a non-loopback address of this machine, else
127.0.0.2. The hub listens on that one address only. From there a browser-like client reads
the sample course's lesson in its frame, records an answer into the hub's own outbox, and a
foreign ``Host`` (DNS rebinding) gets 421; the write side of the protocol is not there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from satchel.sync.local import LocalStore
from satchel.sync.outbox import Outbox
from satchel.sync.updater import Updater

from harness import e2e
from harness.paths import REPO
from harness.repo import RepoFetcher, make_repository, publish

pytestmark = pytest.mark.slow
SAMPLE = REPO / "server" / "sample"


@dataclass(frozen=True)
class Machine:
    """Where the hub listens, and how to run a command on the other machine."""

    what: str
    hub_address: str
    prefix: tuple[str, ...]  # e.g. ("ip", "netns", "exec", NAME): runs there


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, timeout=30).returncode == 0


@contextmanager
def other_machine() -> Iterator[Machine]:
    ip = shutil.which("ip")
    if ip is not None and os.geteuid() == 0:
        n = random.Random(os.getpid()).randrange(1, 250)
        ns, host_if, peer_if = f"satchel-hub-{os.getpid()}", f"sh{os.getpid()}", "eth-hub"
        hub, peer = f"198.18.{n}.1", f"198.18.{n}.2"
        steps = [
            (ip, "netns", "add", ns),
            (ip, "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", ns),
            (ip, "addr", "add", f"{hub}/30", "dev", host_if),
            (ip, "link", "set", host_if, "up"),
            (ip, "netns", "exec", ns, ip, "addr", "add", f"{peer}/30", "dev", peer_if),
            (ip, "netns", "exec", ns, ip, "link", "set", peer_if, "up"),
            (ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"),
        ]
        made = all(_run(*step) for step in steps)
        try:
            if made:
                yield Machine(f"network namespace {ns}", hub, (ip, "netns", "exec", ns))
                return
        finally:
            _run(ip, "link", "del", host_if)
            _run(ip, "netns", "del", ns)
    import ifaddr

    own = [
        str(a.ip)
        for adapter in ifaddr.get_adapters()
        for a in adapter.ips
        if isinstance(a.ip, str) and not a.ip.startswith("127.")
    ]
    if own:
        yield Machine(f"this machine's address {own[0]}", own[0], ())
    else:
        yield Machine("127.0.0.2", "127.0.0.2", ())


CLIENT = textwrap.dedent(
    """
    import json, re, sys
    import httpx
    base, learner = sys.argv[1], sys.argv[2]
    out = {}
    with httpx.Client(base_url=base, timeout=20, trust_env=False) as c:
        page = c.get("/b/sample/en/current/page/lessons/01-counting.html")
        out["page"] = [page.status_code, page.text]
        frame = re.search(r'<iframe class="lesson" sandbox="" src="([^"]+)"', page.text)
        inner = c.get(frame.group(1)) if frame else None
        out["frame"] = [inner.status_code, inner.text] if inner else None
        out["search"] = c.get("/search", params={"q": "beans"}).text
        answer = c.post(
            "/api/events",
            content=json.dumps({"learner": learner, "bundle": "sample", "locale": "en",
                                "lesson": "lessons/01-counting.html", "kind": "completed"}),
            headers={"Content-Type": "application/json", "Origin": base},
        )
        out["event"] = [answer.status_code, answer.json()]
        out["foreign"] = c.get("/", headers={"Host": "evil.example"}).status_code
        out["foreign_port"] = c.get("/", headers={"Host": "evil.example:8001"}).status_code
        out["publish"] = c.post("/v1/publish/sample/en", content=b"{}").status_code
        out["index"] = c.get("/v1/index/sample/en").status_code
    print(json.dumps(out))
    """
)


def test_a_hub_serves_a_lesson_to_another_machine_and_refuses_a_foreign_host(
    tmp_path: Path,
) -> None:
    repo = make_repository(tmp_path / "srv")
    publish(repo, SAMPLE, bundle="sample", title="Numbers around us (sample)")
    store = LocalStore(tmp_path / "hub", durable=False)
    Updater(store, RepoFetcher(repo)).sync("sample", "en")
    with Outbox(store.root) as box:
        ana = box.join("Ana", "7KQ2-M9X7", "sample", "en", now=datetime.now(UTC)).learner
    with other_machine() as machine:
        port = e2e.free_port()
        log = tmp_path / "hub.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(e2e.SATCHEL), "share", "--store", str(store.root), "--viewer", "--host",
                 machine.hub_address, "--port", str(port), "--no-announce"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        base = f"http://{machine.hub_address}:{port}"
        try:
            assert e2e.wait_healthy(proc, base, 30), log.read_text()
            done = subprocess.run(
                [*machine.prefix, sys.executable, "-c", CLIENT, base, ana],
                capture_output=True,
                timeout=120,
            )
            assert done.returncode == 0, (machine.what, done.stderr.decode())
            seen = json.loads(done.stdout)
            # From inside the namespace, this machine's loopback is not the hub's: the
            # client reached it over the veth (or the address) alone.
            assert httpx.get(f"{base}/healthz", timeout=10, trust_env=False).json()["role"] == "hub"
        finally:
            proc.terminate()
            proc.wait(10)
    status, page = seen["page"]
    assert status == 200, machine.what
    assert 'aria-label="Breadcrumb"' in page and 'rel="next"' in page
    assert 'role="search"' in page and "lessons/02-fractions.html" in page
    assert seen["frame"][0] == 200 and "Ten groups of ten make" in seen["frame"][1]
    assert "Counting in groups" in seen["search"] and "<mark>beans</mark>" in seen["search"]
    assert seen["event"][0] == 201 and seen["event"][1]["recorded"] is True
    assert seen["foreign"] == 421 and seen["foreign_port"] == 421
    assert seen["publish"] in (404, 405) and seen["index"] == 200
    with Outbox(store.root) as box:  # recorded on the hub's own outbox
        assert [(r.learner, r.kind, r.lesson) for r in box.records()] == [
            (ana, "completed", "lessons/01-counting.html")
        ]
