"""Fault injection, end to end: cut links, killed servers, flipped bytes and full disks.

Every fault is injected from outside a real ``satchel serve`` and the real CLI (see
:mod:`harness.faults`); the promises checked are the product's: a cut sync resumes to a
byte-identical tree for little extra traffic, a killed publish leaves no partial version, a
corrupted byte is never stored or checked out, a full disk is a clear error that leaves the
previous version usable. ``bench/faults.py`` runs the same scenarios 100 and 20 times.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from satchel.sync.local import LocalStore

from harness import diskfull
from harness.e2e import (
    SATCHEL,
    SatchelRelay,
    SatchelServer,
    _env,
    assert_same_tree,
    checkout,
    checkout_ok,
    free_port,
    publish,
    run_cli,
    sync,
    sync_json,
    wait_healthy,
)
from harness.faults import (
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
from harness.proxy import LoopbackProxy

# Extra bytes a resumed sync may cost over one uninterrupted sync (issue 7: at most 10%).
MAX_EXTRA = 1.10


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SatchelServer, Path, Path]]:
    """A server with v1 and v2 of the course; yields (server, v1 tree, v2 tree)."""
    base = tmp_path_factory.mktemp("faults")
    v1 = course_tree(base / "v1", seed=1)
    v2 = edited_tree(v1, base / "v2", seed=2, new_kb=500)
    with SatchelServer(base / "srv") as srv:
        token = srv.token("teacher")
        assert published(publish(srv.url, token, v1, BUNDLE)) == 1
        v1_store = base / "v1-store"
        sync_json(srv.url, BUNDLE, v1_store)
        assert published(publish(srv.url, token, v2, BUNDLE)) == 2
        srv.v1_store = v1_store  # type: ignore[attr-defined]
        yield srv, v1, v2


# -- 1. cuts at random bytes -------------------------------------------------------------------
# A cut wastes at most the frame it fell in, up to 16 KiB (larger partial objects are kept and
# finished with a Range request), plus the index and HTTP heads of the next attempt: ~18 KB.
# Three cuts in a 1.3 MB first sync and two in a 0.5 MB update stay well inside 10% whatever
# the offsets; bench/faults.py measures 100 cuts.
@pytest.mark.parametrize(("case", "seed", "cuts"), [("first-sync", 11, 3), ("update", 12, 2)])
def test_a_sync_cut_at_random_bytes_resumes_to_the_same_tree_for_little_extra(
    tmp_path: Path, site: tuple[SatchelServer, Path, Path], case: str, seed: int, cuts: int
) -> None:
    srv, _v1, v2 = site
    start: Path | None = srv.v1_store if case == "update" else None  # type: ignore[attr-defined]

    def fresh(name: str) -> Path:
        store = tmp_path / name
        if start is not None:
            shutil.copytree(start, store)
        return store

    rng = random.Random(seed)
    with LoopbackProxy("127.0.0.1", srv.port) as proxy:
        sync_json(proxy.url, BUNDLE, fresh("measure"))
        full = proxy.stats().bytes_down
        run = sync_with_cuts(proxy, fresh("cut"), rng, full=full, cuts=cuts)
    assert run.cuts == cuts, run  # the cut points fall inside the transfer
    assert run.codes[-1] == 0 and set(run.codes[:-1]) <= {4}, run
    assert run.bytes_down <= MAX_EXTRA * full, (run, full)
    assert current_version(tmp_path / "cut") == 2
    assert_same_tree(v2, checkout_ok(tmp_path / "cut", BUNDLE, tmp_path / "out"))


# -- 2. the server killed mid-publish ----------------------------------------------------------
def test_a_server_killed_mid_publish_shows_no_partial_version_and_the_retry_succeeds(
    tmp_path: Path,
) -> None:
    rng = random.Random(21)
    data = tmp_path / "srv"
    srv = SatchelServer(data).start()
    try:
        token = srv.token("teacher")
        base = course_tree(tmp_path / "v1", seed=3)
        assert published(publish(srv.url, token, base, BUNDLE)) == 1
        began = time.monotonic()
        v2 = edited_tree(base, tmp_path / "v2", seed=4)
        assert published(publish(srv.url, token, v2, BUNDLE)) == 2
        took = time.monotonic() - began
        outcomes = []
        for i in range(2):
            src = edited_tree(base, tmp_path / f"k{i}", seed=100 + i, new_kb=300)
            before = _versions(data)
            run = publish_and_kill(srv, token, src, rng.uniform(0.2 * took, 0.6 * took))
            outcomes.append(run)
            after = _versions(data)
            # Only complete versions, numbered without gaps; a printed version is durable.
            assert after in (before, [*before, before[-1] + 1]), (before, after)
            if run.publish_code == 0:
                assert len(after) == len(before) + 1
            check = server_fsck(data)
            assert check.code == 0, check.describe()
            srv.start()  # same data folder, new port
            version = published(publish(srv.url, token, src, BUNDLE))
            assert version == _versions(data)[-1] == after[-1] + 1
            store = tmp_path / f"store{i}"
            sync_json(srv.url, BUNDLE, store)
            assert_same_tree(src, checkout_ok(store, BUNDLE, tmp_path / f"out{i}"))
        assert any(r.publish_code != 0 for r in outcomes), outcomes  # some kills landed mid-way
    finally:
        srv.stop()
    assert server_fsck(data).code == 0


def _versions(data: Path) -> list[int]:
    with sqlite3.connect(data / "satchel.db") as db:
        rows = db.execute("select version from version order by version").fetchall()
    return [int(r[0]) for r in rows]


def test_server_fsck_finds_a_version_whose_chunk_is_missing(
    tmp_path: Path, site: tuple[SatchelServer, Path, Path]
) -> None:
    srv, _v1, _v2 = site
    copy = _copy_data(srv.data, tmp_path / "copy")
    assert server_fsck(copy).code == 0
    cid, path = chunk_files(copy)[0]
    path.unlink()
    res = server_fsck(copy)
    assert res.code == 3, res.describe()
    assert cid in res.stderr and "missing or corrupt" in res.stderr
    assert run_cli("fsck", "--data", copy, "--store", tmp_path).code == 2
    assert run_cli("fsck", "--data", tmp_path / "nowhere").code == 2


# -- 3. a byte flipped on a server, a peer, a USB stick and the wire ---------------------------
def _copy_data(src: Path, dst: Path) -> Path:
    """A consistent copy of a live server's data folder (SQLite through its backup API)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("satchel.db*"))
    with sqlite3.connect(src / "satchel.db") as a, sqlite3.connect(dst / "satchel.db") as b:
        a.backup(b)
    return dst


def _assert_refused_and_clean(res_code: int, store: Path, bad: str | None = None) -> None:
    assert current_version(store) is None
    if store.exists():
        local = LocalStore(store)
        if bad is not None:
            assert not local.objects.has(bad), "the corrupted object was stored"
        fsck = run_cli("fsck", "--store", store)
        assert fsck.code == 0, fsck.describe()


def test_a_flipped_byte_in_a_stored_chunk_is_caught_and_never_stored(
    tmp_path: Path, site: tuple[SatchelServer, Path, Path]
) -> None:
    origin, _v1, v2 = site
    rng = random.Random(31)
    data = _copy_data(origin.data, tmp_path / "data")
    with SatchelServer(data) as source:
        for attempt in range(2):
            cid, path = rng.choice(chunk_files(data))
            good = path.read_bytes()
            flip_byte(path, rng)
            store = tmp_path / f"store{attempt}"
            res = sync(source.url, BUNDLE, store, "--retries", 0)
            assert res.code == 3, res.describe()
            assert "nothing stored was changed" in res.stderr
            _assert_refused_and_clean(res.code, store, cid)
            check = server_fsck(data)
            assert check.code == 3 and cid in check.stderr, check.describe()
            path.write_bytes(good)
        store = tmp_path / "store-ok"
        sync_json(source.url, BUNDLE, store)
        assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / "out"))


def test_a_flipped_byte_on_a_peer_is_caught_and_never_stored(
    tmp_path: Path, site: tuple[SatchelServer, Path, Path]
) -> None:
    """A classroom relay (satchel share) whose disk rotted: laptops refuse what it sends."""
    origin, _v1, v2 = site
    rng = random.Random(32)
    relay_store = tmp_path / "relay"
    sync_json(origin.url, BUNDLE, relay_store)
    held = [p for p in (relay_store / "objects").rglob("*") if len(p.name) == 64]
    with SatchelRelay(relay_store) as relay:
        for attempt in range(2):
            path = rng.choice(held)
            good = path.read_bytes()
            flip_byte(path, rng)
            store = tmp_path / f"laptop{attempt}"
            res = sync(relay.url, BUNDLE, store, "--retries", 0, "--trust", origin.fingerprint())
            assert res.code == 3, res.describe()
            assert "nothing stored was changed" in res.stderr
            _assert_refused_and_clean(res.code, store, path.name)
            path.write_bytes(good)
        store = tmp_path / "laptop-ok"
        sync_json(relay.url, BUNDLE, store)
        assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / "out"))


def test_a_flipped_byte_in_a_usb_pack_is_caught(
    tmp_path: Path, site: tuple[SatchelServer, Path, Path]
) -> None:
    """The CLI path; tests/sync/test_usb.py flips bytes at chosen offsets through the library."""
    srv, _v1, v2 = site
    rng = random.Random(41)
    source = tmp_path / "source"
    sync_json(srv.url, BUNDLE, source)
    stick = tmp_path / "stick"
    res = run_cli("export", "--store", source, "--bundle", BUNDLE, "--to", stick)
    assert res.code == 0, res.describe()
    packs = sorted((stick / "packs").iterdir())
    refused = 0
    for attempt in range(3):
        pack = rng.choice(packs)
        good = pack.read_bytes()
        flip_byte(pack, rng)
        store = tmp_path / f"b{attempt}"
        res = run_cli("import", stick, "--store", store, "--trust", srv.fingerprint())
        if res.code == 0:  # never seen; allowed only if what was stored is the exact tree
            assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / f"out{attempt}"))
        else:
            assert res.code == 3, res.describe()
            _assert_refused_and_clean(res.code, store)
            refused += 1
        pack.write_bytes(good)
    assert refused == 3
    res = run_cli("import", stick, "--store", tmp_path / "ok", "--trust", srv.fingerprint())
    assert res.code == 0, res.describe()
    assert_same_tree(v2, checkout_ok(tmp_path / "ok", BUNDLE, tmp_path / "out-ok"))


def test_a_flipped_bit_in_transit_is_caught_and_never_stored(
    tmp_path: Path, site: tuple[SatchelServer, Path, Path]
) -> None:
    srv, _v1, v2 = site
    rng = random.Random(51)
    with FlipProxy(srv.port) as proxy:
        proxy.arm(None)
        sync_json(proxy.url, BUNDLE, tmp_path / "measure")
        total = proxy.down
        outcomes = []
        for attempt in range(3):
            # Most of the stream is the pack; the first tenth is HTTP heads, index, manifest.
            proxy.arm(rng.randrange(total // 10, total), rng.randrange(8))
            store = tmp_path / f"s{attempt}"
            res = sync(proxy.url, BUNDLE, store, "--retries", 0)
            assert proxy.flipped
            outcomes.append(res.code)
            if res.code == 0:  # a bit in an HTTP head that changed nothing that matters
                assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / f"o{attempt}"))
                continue
            assert res.code in (3, 4), res.describe()
            _assert_refused_and_clean(res.code, store)
            proxy.arm(None)
            sync_json(proxy.url, BUNDLE, store)  # the same store then completes, intact
            assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / f"o{attempt}"))
        assert outcomes.count(3) >= 2, outcomes  # flips in the pack are refused as bad data


# -- 4. disk full --------------------------------------------------------------------------------
NO_TMPFS = diskfull.tmpfs_unavailable()


@pytest.mark.skipif(NO_TMPFS is not None, reason=f"needs a private tmpfs: {NO_TMPFS}")
def test_disk_full_during_sync_is_a_clear_error_and_the_held_version_stays(
    tmp_path: Path,
) -> None:
    v1 = course_tree(tmp_path / "v1", seed=61, text_kb=200, binary_kb=400)
    v2 = edited_tree(v1, tmp_path / "v2", seed=62, new_kb=3000)
    mount = tmp_path / "mnt"
    mount.mkdir()
    with SatchelServer(tmp_path / "srv") as srv:
        token = srv.token("teacher")
        assert published(publish(srv.url, token, v1, BUNDLE)) == 1
        out = tmp_path / "out"
        driver = [sys.executable, diskfull.__file__, str(SATCHEL), srv.url, str(mount), str(out)]
        proc = subprocess.Popen(
            diskfull.in_small_tmpfs(mount, "1500k", driver),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert proc.stdin is not None and proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["code"] == 0, first
        assert published(publish(srv.url, token, v2, BUNDLE)) == 2
        proc.stdin.write("go\n")
        proc.stdin.flush()
        steps = {s["step"]: s for s in (json.loads(line) for line in proc.stdout)}
        proc.stdin.close()
        proc.stdout.close()
        proc.wait(60)
    precheck = steps["precheck"]
    lines = [line for line in str(precheck["stderr"]).splitlines() if line.startswith("error:")]
    assert precheck["code"] == 7 and len(lines) == 1, precheck  # the machine's disk: code 7
    assert "needs up to" in lines[0] and "are free" in lines[0], precheck
    full = steps["full"]
    assert full["code"] == 7, full
    lines = [line for line in str(full["stderr"]).splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0], full
    assert steps["checkout"]["code"] == 0, steps["checkout"]  # the held version, whole
    assert_same_tree(v1, out)
    assert steps["fsck"]["code"] == 0, steps["fsck"]


@pytest.mark.skipif(NO_TMPFS is not None, reason=f"needs a private tmpfs: {NO_TMPFS}")
def test_disk_full_during_publish_is_a_clear_error_and_the_previous_version_stays(
    tmp_path: Path,
) -> None:
    v1 = course_tree(tmp_path / "v1", seed=71, text_kb=200, binary_kb=400)
    v2 = edited_tree(v1, tmp_path / "v2", seed=72, new_kb=3000)
    data, mount = tmp_path / "data", tmp_path / "mnt"
    mount.mkdir()
    port = free_port()
    # The objects (the bulk of a server's data) on a small disk; database and key beside it.
    serve = [str(SATCHEL), "serve", "--data", str(data), "--storage", str(mount / "objects")]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        diskfull.in_small_tmpfs(mount, "1500k", [*serve, "--port", str(port)]),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(proc, url, 30), (tmp_path / "serve.log").read_text()
        # The server made its data folder; a token is made for it (never for a folder first).
        token = run_cli("token", "create", "--data", data, "--role", "teacher").stdout.strip()
        assert published(publish(url, token, v1, BUNDLE)) == 1
        res = publish(url, token, v2, BUNDLE)
        assert res.code != 0, res.describe()
        lines = res.error_lines()
        assert len(lines) == 1 and "No space left on device" in lines[0], res.describe()
        index = httpx.get(f"{url}/v1/catalog", timeout=10).json()
        assert index["bundles"][0]["latest_version"] == 1
        store = tmp_path / "store"
        got = sync_json(url, BUNDLE, store)
        assert got["version"] == 1
        assert_same_tree(v1, checkout_ok(store, BUNDLE, tmp_path / "out"))
        assert checkout(store, BUNDLE, tmp_path / "none", "--version", 2).code != 0
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
