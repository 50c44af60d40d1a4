"""The classroom relay: ``satchel share`` serves a store; laptops sync from it as from a server.

Real processes on loopback: ``satchel serve`` (the origin), a counting proxy in front of it,
``satchel share`` on a laptop's store, and ``satchel sync`` runs against the relay. The
origin serves each update once; every laptop verifies what the relay sends against the
publisher's key, so a tampered relay can only fail a sync.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from satchel.clients.share import create_share_app
from satchel.sync.local import LocalStore
from satchel.sync.pack import read_pack
from satchel.sync.plan import encode_want
from satchel.sync.updater import Updater

from harness.e2e import (
    SATCHEL,
    SatchelRelay,
    SatchelServer,
    assert_same_tree,
    checkout_ok,
    publish,
    sync,
    sync_json,
)
from harness.http import TestClient
from harness.proxy import LoopbackProxy
from harness.repo import RepoFetcher, make_repository, sample_files, write_tree
from harness.repo import publish as publish_in_process

BUNDLE = "course"


def v2_of(files: dict[str, bytes]) -> dict[str, bytes]:
    v2 = dict(files)
    v2["chapters/03-new.html"] = random.Random(3).randbytes(9000)
    v2["README.md"] = files["README.md"][:900] + b" errata " + files["README.md"][900:]
    return v2


def published_version(res: object) -> int:
    assert getattr(res, "code", None) == 0, getattr(res, "describe", lambda: res)()
    return int(res.stdout.strip())  # type: ignore[attr-defined]


@pytest.fixture
def origin(tmp_path: Path):  # type: ignore[no-untyped-def]
    with SatchelServer(tmp_path / "origin") as server:
        yield server


def test_relay_serves_three_laptops_while_origin_serves_once(
    origin: SatchelServer, tmp_path: Path
) -> None:
    v1 = write_tree(tmp_path / "v1", sample_files(1, scale=4))
    v2 = write_tree(tmp_path / "v2", v2_of(sample_files(1, scale=4)))
    token = origin.token("teacher")
    assert published_version(publish(origin.url, token, v1, BUNDLE)) == 1
    relay_store = tmp_path / "relay"
    laptops = [tmp_path / f"laptop{i}" for i in range(3)]
    with LoopbackProxy("127.0.0.1", origin.port) as to_origin:
        first = sync_json(to_origin.url, BUNDLE, relay_store)
        origin_v1 = to_origin.stats().bytes_down
        assert first["version"] == 1 and origin_v1 >= first["bytes_downloaded"]
        with (
            SatchelRelay(relay_store) as relay,
            LoopbackProxy("127.0.0.1", relay.port) as to_relay,
        ):
            for laptop in laptops:
                got = sync_json(to_relay.url, BUNDLE, laptop)
                assert got["version"] == 1 and got["requests"] == 3, got
                assert_same_tree(v1, checkout_ok(laptop, BUNDLE, tmp_path / f"{laptop.name}-1"))
            relay_v1 = to_relay.stats().bytes_down
            assert to_origin.stats().bytes_down == origin_v1  # the laptops never reached it

            assert published_version(publish(origin.url, token, v2, BUNDLE)) == 2
            to_origin.reset()
            update = sync_json(to_origin.url, BUNDLE, relay_store)  # the relay keeps serving
            origin_v2 = to_origin.stats().bytes_down
            assert update["version"] == 2
            to_relay.reset()
            for laptop in laptops:
                got = sync_json(to_relay.url, BUNDLE, laptop)
                assert got["version"] == 2 and got["previous_version"] == 1, got
                assert got["requests"] <= 3, got
                assert_same_tree(v2, checkout_ok(laptop, BUNDLE, tmp_path / f"{laptop.name}-2"))
            relay_v2 = to_relay.stats().bytes_down
            assert to_origin.stats().bytes_down == origin_v2
    # The update from the relay costs about what it cost from the origin: deltas, not files.
    assert relay_v2 < 3 * origin_v2 * 1.5, (relay_v2, origin_v2)
    assert relay_v1 >= 3 * origin_v1 * 0.9, (relay_v1, origin_v1)


def test_relay_keeps_serving_while_its_store_syncs(origin: SatchelServer, tmp_path: Path) -> None:
    files = sample_files(2, scale=20)
    v1 = write_tree(tmp_path / "v1", files)
    v2 = write_tree(tmp_path / "v2", v2_of(files) | {"media/big.bin": random.randbytes(300_000)})
    token = origin.token("teacher")
    published_version(publish(origin.url, token, v1, BUNDLE))
    relay_store = tmp_path / "relay"
    sync_json(origin.url, BUNDLE, relay_store)
    published_version(publish(origin.url, token, v2, BUNDLE))
    failures: list[str] = []
    versions: set[int] = set()
    with SatchelRelay(relay_store) as relay:
        done = threading.Event()

        def laptops() -> None:
            n = 0
            while not done.is_set() or n < 2:
                laptop = tmp_path / f"laptop-{n}"
                res = sync(relay.url, BUNDLE, laptop)
                if res.code != 0:
                    failures.append(res.describe())
                else:
                    versions.add(json.loads(res.stdout)["version"])
                n += 1

        worker = threading.Thread(target=laptops)
        worker.start()
        try:
            # A slow sync of the relay's own store, so laptops sync from it meanwhile.
            slow = sync_json(origin.url, BUNDLE, relay_store, "--rate-limit", "150k")
            assert slow["version"] == 2
        finally:
            done.set()
            worker.join(120)
        last = sync_json(relay.url, BUNDLE, tmp_path / "after")
    assert not failures, failures[0]
    assert 1 in versions, versions  # served v1 while v2 was arriving
    assert last["version"] == 2
    assert_same_tree(v2, checkout_ok(tmp_path / "after", BUNDLE, tmp_path / "out"))


def test_a_tampered_relay_cannot_change_what_a_laptop_stores(
    origin: SatchelServer, tmp_path: Path
) -> None:
    v1 = write_tree(tmp_path / "v1", sample_files(4, scale=2))
    published_version(publish(origin.url, origin.token("teacher"), v1, BUNDLE))
    relay_store = tmp_path / "relay"
    sync_json(origin.url, BUNDLE, relay_store)
    # Flip one byte of the largest stored object on the relay's disk.
    objects = sorted((relay_store / "objects").rglob("*"), key=lambda p: p.stat().st_size)
    victim = [p for p in objects if p.is_file() and len(p.name) == 64][-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    with SatchelRelay(relay_store) as relay:
        res = sync(relay.url, BUNDLE, tmp_path / "laptop")
    assert res.code == 3, res.describe()
    errors = [line for line in res.error_lines() if line.startswith("error:")]
    assert len(errors) == 1 and "intact" in errors[0], res.describe()
    laptop = LocalStore(tmp_path / "laptop")
    assert laptop.ref(BUNDLE, "en") is None
    assert not laptop.objects.has(victim.name)


def test_a_relay_fed_by_another_publisher_is_refused(origin: SatchelServer, tmp_path: Path) -> None:
    v1 = write_tree(tmp_path / "v1", sample_files(5))
    published_version(publish(origin.url, origin.token("teacher"), v1, BUNDLE))
    laptop = tmp_path / "laptop"
    sync_json(origin.url, BUNDLE, laptop)  # pins the real publisher's key
    with SatchelServer(tmp_path / "evil") as evil:
        published_version(publish(evil.url, evil.token("teacher"), v1, BUNDLE))
        published_version(publish(evil.url, evil.token("teacher"), v1, BUNDLE))
        sync_json(evil.url, BUNDLE, tmp_path / "evil-relay")
    with SatchelRelay(tmp_path / "evil-relay") as relay:
        res = sync(relay.url, BUNDLE, laptop)
    assert res.code == 3, res.describe()
    assert "key changed" in res.stderr
    assert LocalStore(laptop).ref(BUNDLE, "en").version == 1  # type: ignore[union-attr]


# -- the relay's protocol, in process ---------------------------------------------------------
@pytest.fixture
def relay_client(tmp_path: Path):  # type: ignore[no-untyped-def]
    repo = make_repository(tmp_path / "srv")
    files = sample_files(6, scale=3)
    publish_in_process(repo, write_tree(tmp_path / "src1", files))
    store = LocalStore(tmp_path / "relay", durable=False)
    Updater(store, RepoFetcher(repo)).sync(BUNDLE, "en")
    publish_in_process(repo, write_tree(tmp_path / "src2", v2_of(files)))
    Updater(store, RepoFetcher(repo)).sync(BUNDLE, "en")
    with TestClient(create_share_app(store)) as client:
        yield client, store


def test_relay_is_read_only_and_refuses_hostile_requests(relay_client) -> None:  # type: ignore[no-untyped-def]
    client, store = relay_client
    ref = store.ref(BUNDLE, "en")
    assert ref is not None
    assert client.post(f"/v1/publish/{BUNDLE}/en", content=b"{}").status_code in (404, 405)
    assert client.post("/v1/uploads/x/commit", json={}).status_code in (404, 405)
    for path in (
        "/v1/chunks/..%2F..%2Fsatchel.json",
        "/v1/chunks/" + "0" * 63,
        "/v1/manifests/" + "z" * 64,
        "/v1/manifests/..%2Ftrust.json",
    ):
        r = client.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code)
    assert client.get("/v1/chunks/" + "ab" * 32).status_code == 404
    for body in (b"", b"[]", b"{", b'{"manifest": 5}', b'{"manifest": "' + b"a" * 64 + b'"}'):
        r = client.post("/v1/pack", content=body)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    r = client.post("/v1/pack", json={"manifest": ref.manifest, "want": "!!"})
    assert r.status_code == 422 and "base64" in r.json()["error"]
    r = client.post("/v1/pack", content=b"{" + b" " * (9 * 1024 * 1024) + b"}")
    assert 400 <= r.status_code < 500
    other = "cd" * 32
    r = client.get(f"/v1/deltas/{other}/{ref.manifest}")
    assert r.status_code == 404


def test_relay_packs_are_exact_and_use_deltas(relay_client) -> None:  # type: ignore[no-untyped-def]
    client, store = relay_client
    ref = store.ref(BUNDLE, "en")
    assert ref is not None
    old, new = ref.versions[1], ref.versions[2]
    manifest = store.load_manifest(new)
    distinct = manifest.distinct_chunks()
    held = {cid for cid, _ in store.load_manifest(old).distinct_chunks()}
    need = {cid for cid, _ in distinct if cid not in held}
    want = base64.b64encode(encode_want(distinct, need)).decode()
    plain = client.post("/v1/pack", json={"manifest": new, "want": want})
    assert plain.status_code == 200
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert {f.chunk_id for f in read_pack([plain.content])} == need
    dry = client.post("/v1/pack", json={"manifest": new, "want": want, "dry_run": True})
    assert dry.json()["bytes"] == len(plain.content)
    based = client.post("/v1/pack", json={"manifest": new, "want": want, "base": old})
    assert {f.chunk_id for f in read_pack([based.content])} == need
    assert len(based.content) < len(plain.content)
    ready = client.get(f"/v1/deltas/{old}/{new}")
    assert ready.status_code == 200 and ready.headers["cache-control"].endswith("immutable")
    assert {f.chunk_id for f in read_pack([ready.content])} == need
    head = client.head(f"/v1/deltas/{old}/{new}")
    assert int(head.headers["content-length"]) == len(ready.content)
    assert (
        client.get(f"/v1/chunks/{next(iter(need))}", headers={"Range": "bytes=0-3"}).status_code
        == 206
    )
    index = client.get("/v1/index/course/en")
    again = client.get("/v1/index/course/en", headers={"If-None-Match": index.headers["etag"]})
    assert again.status_code == 304


def test_relay_offers_only_versions_it_holds_whole(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "srv")
    files = sample_files(8, scale=3)
    publish_in_process(repo, write_tree(tmp_path / "src1", files))
    store = LocalStore(tmp_path / "relay", durable=False)
    Updater(store, RepoFetcher(repo)).sync(BUNDLE, "en")
    held = store.held_index("course", "en")
    publish_in_process(repo, write_tree(tmp_path / "src2", v2_of(files)))
    # A sync of v2 cut by a tiny budget: the new index is accepted, v2 is not whole here.
    partial = Updater(store, RepoFetcher(repo)).sync(BUNDLE, "en", max_bytes=1)
    assert not partial.complete
    assert store.last_index("course", "en") != held
    with TestClient(create_share_app(store)) as client:
        assert client.get("/v1/index/course/en").content == held
    with TestClient(create_share_app(LocalStore(tmp_path / "empty", durable=False))) as client:
        r = client.get("/v1/index/course/en")
        assert r.status_code == 404 and "holds no whole version" in r.json()["error"]


# -- mDNS: announced and found, inside a private network namespace ------------------------------
def _netns_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=10
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _netns_available(),
    reason="needs 'unshare -n' (root or CAP_SYS_ADMIN) for a private network with multicast",
)
def test_peers_finds_a_relay_announced_by_mdns(origin: SatchelServer, tmp_path: Path) -> None:
    v1 = write_tree(tmp_path / "v1", sample_files(9))
    published_version(publish(origin.url, origin.token("teacher"), v1, BUNDLE))
    relay_store = tmp_path / "relay"
    sync_json(origin.url, BUNDLE, relay_store)
    # A private network namespace whose loopback carries multicast: real mDNS packets, and
    # nothing leaves the machine. Both processes live in it; the shell ends them both.
    script = f"""
set -e
ip link set lo up
ip link set lo multicast on
ip route add 224.0.0.0/4 dev lo
"{SATCHEL}" share --store "{relay_store}" --host 127.0.0.1 --port 8765 --name room-12 &
relay=$!
sleep 2
"{SATCHEL}" peers --timeout 3 --json
kill $relay
"""
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    peers = json.loads(proc.stdout.strip().splitlines()[-1])["peers"]
    assert [p["name"] for p in peers] == ["room-12"], peers
    assert peers[0]["url"] == "http://127.0.0.1:8765"
    assert peers[0]["publisher"] == origin.fingerprint()
    assert f"{BUNDLE}/en v1" in peers[0]["bundles"]


def test_the_relay_refuses_a_foreign_host(relay_client) -> None:  # type: ignore[no-untyped-def]
    """Finding 11: a web site that points its own name at the relay's address (DNS rebinding)
    gets 421 and no content; the relay's own names and addresses are served."""
    client, _store = relay_client
    refused = client.get("/v1/index/course/en", headers={"Host": "evil.example"})
    assert refused.status_code == 421 and b"SATPACK" not in refused.content
    assert "signatures" not in refused.text
    for host in ("testserver", "localhost:80", "127.0.0.1"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
