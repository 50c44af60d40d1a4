"""Stateless replicas: several servers sharing one database and one object store.

In-process tests run two :class:`Repository` objects (separate engines and pools, so separate
database sessions, exactly what two processes have) on SQLite and PostgreSQL; the end-to-end
test runs two real ``satchel serve`` processes on PostgreSQL + S3 (moto) with one key.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from satchel.content.index import parse_index
from satchel.content.manifest import parse_manifest
from satchel.content.signing import SigningKey, verify_envelope
from satchel.server.repository import Repository
from satchel.sync.release import INDEX_VALIDITY
from satchel.sync.store import ChunkStore, FolderChunkStore

from harness.e2e import SatchelServer, checkout_ok, publish, run_cli, sync_json
from harness.e2e import assert_same_tree as assert_same_files
from harness.repo import publish as publish_in_process
from harness.repo import (
    sample_files,
    write_tree,
)
from harness.services import PostgresCluster, S3Server

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


Replica = Callable[..., Repository]


@pytest.fixture
def replica() -> Iterator[Replica]:
    """Makes Repository replicas; their connection pools are closed after the test."""
    made: list[Repository] = []

    def make(
        data: Path,
        db_url: str,
        store: ChunkStore,
        key: Path,
        clock: Callable[[], datetime] | None = None,
    ) -> Repository:
        if clock is None:
            repo = Repository(data, database_url=db_url, store=store, signing_key=key)
        else:
            repo = Repository(data, database_url=db_url, store=store, signing_key=key, clock=clock)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.engine.dispose()


@pytest.fixture
def shared_key(tmp_path: Path) -> Path:
    key = tmp_path / "shared.pem"
    SigningKey.generate().save(key)
    return key


def test_concurrent_publishes_on_two_replicas_get_consecutive_versions(
    db_url: str, shared_key: Path, tmp_path: Path, replica: Replica
) -> None:
    store = FolderChunkStore(tmp_path / "objects", durable=False)
    a = replica(tmp_path / "a", db_url, store, shared_key)
    b = replica(tmp_path / "b", db_url, store, shared_key)
    trees = {i: sample_files(100 + i) for i in range(6)}
    sources = {i: write_tree(tmp_path / f"src{i}", files) for i, files in trees.items()}
    barrier = threading.Barrier(len(trees))

    def run(i: int) -> int:
        barrier.wait()  # all six commits race, three through each replica
        return publish_in_process(a if i % 2 else b, sources[i]).version

    with ThreadPoolExecutor(len(trees)) as pool:
        versions = dict(zip(trees, pool.map(run, trees), strict=True))

    assert sorted(versions.values()) == [1, 2, 3, 4, 5, 6]
    for repo in (a, b):
        listed = repo.reads.catalog()[0].versions
        assert [v.version for v in listed] == [1, 2, 3, 4, 5, 6]
    # Every version is whole: its manifest names its own number and its parent, and holds
    # exactly the tree of the publish that was told that number.
    by_version = {v: i for i, v in versions.items()}
    for listed in a.reads.catalog()[0].versions:
        v = listed.version
        _env, manifest = parse_manifest(a.source.manifest_bytes(listed.manifest, _size(a, v)))
        assert (manifest.version, manifest.parent_version) == (v, v - 1 or None)
        assert sorted(f.path for f in manifest.files) == sorted(trees[by_version[v]])
    for repo in (a, b):
        env, index = parse_index(repo.source.index("course", "en")[0])
        verify_envelope(env, repo.key.public, what="index")
        assert [e.version for e in index.entries] == [6]


def _size(repo: Repository, version: int) -> int:
    from satchel.server.db import Version
    from sqlmodel import Session

    with Session(repo.engine) as s:
        row = s.get(Version, ("course", "en", version))
        assert row is not None
        return row.manifest_size


def test_one_index_serial_never_has_two_bodies(
    db_url: str, shared_key: Path, tmp_path: Path, replica: Replica
) -> None:
    """Replicas re-signing at the same moment: one moves the serial, the others serve it.

    Each replica's clock is a second apart, so two signatures of one serial would differ.
    """
    store = FolderChunkStore(tmp_path / "objects", durable=False)
    now = [START]
    a = replica(tmp_path / "a", db_url, store, shared_key, clock=lambda: now[0])
    b = replica(
        tmp_path / "b", db_url, store, shared_key, clock=lambda: now[0] + timedelta(seconds=1)
    )
    publish_in_process(a, write_tree(tmp_path / "src", sample_files(1)))
    seen: dict[int, set[bytes]] = defaultdict(set)
    lock = threading.Lock()
    callers = [a, b, a, b]
    rounds = 12

    def advance() -> None:  # run by the last thread to arrive, before any goes on
        now[0] += INDEX_VALIDITY

    start = threading.Barrier(len(callers), action=advance)

    def ask(repo: Repository) -> None:
        for _ in range(rounds):
            start.wait()  # every caller now finds the index past half its validity
            body, _etag = repo.source.index("course", "en")
            with lock:
                seen[parse_index(body)[1].serial].add(body)

    threads = [threading.Thread(target=ask, args=(r,)) for r in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(bodies) == 1 for bodies in seen.values()), {
        serial: len(bodies) for serial, bodies in seen.items()
    }
    # Each round re-signed exactly once (no round lost, none signed twice).
    assert len(seen) == rounds


# -- two real servers on PostgreSQL + S3 ------------------------------------------------------
def _index(url: str, key: SigningKey) -> tuple[int, list[tuple[str, int, tuple[int, ...]]], str]:
    r = httpx.get(f"{url}/v1/index/course/en", timeout=30)
    r.raise_for_status()
    env, index = parse_index(r.content)
    verify_envelope(env, key.public, what="index")  # signed by the shared key, whichever server
    return (
        index.serial,
        [(e.bundle, e.version, e.delta_from) for e in index.entries],
        r.headers["etag"],
    )


def test_two_serve_processes_on_postgresql_and_s3(
    pg_cluster: PostgresCluster, s3_server: S3Server, tmp_path: Path
) -> None:
    key_file = tmp_path / "replicas.pem"
    res = run_cli("keygen", "--out", key_file)
    assert res.code == 0, res.describe()
    key = SigningKey.load(key_file)
    db = pg_cluster.new_database()
    storage = f"s3://{s3_server.new_bucket()}/satchel"
    shared = ("--database-url", db, "--storage", storage, "--signing-key", str(key_file))
    env = s3_server.env()
    trees = [write_tree(tmp_path / f"v{i}", sample_files(200 + i)) for i in range(6)]

    # A token made once, with only the database URL, works on every replica, and making it
    # creates no key and no objects folder in the data folder it was given.
    admin_data = tmp_path / "admin"
    res = run_cli("token", "create", "--data", admin_data, "--database-url", db, "--role", "admin")
    assert res.code == 0, res.describe()
    token = res.stdout.strip()
    assert not (admin_data / "signing-key.pem").exists()
    assert not (admin_data / "objects").exists()

    with (
        SatchelServer(tmp_path / "a", extra=shared, env=env) as a,
        SatchelServer(tmp_path / "b", extra=shared, env=env) as b,
    ):
        assert a.fingerprint() == b.fingerprint() == key.public.fingerprint

        # Publish on A: B serves it at once, signed and current; a sync from B works.
        res = publish(a.url, token, trees[0], "course")
        assert (res.code, res.stdout.strip()) == (0, "1"), res.describe()
        serial_b, entries_b, etag_b = _index(b.url, key)
        assert entries_b == [("course", 1, ())]
        assert _index(a.url, key) == (serial_b, entries_b, etag_b)  # one body per serial
        store = tmp_path / "store"
        assert sync_json(b.url, "course", store)["version"] == 1
        assert_same_files(trees[0], checkout_ok(store, "course", tmp_path / "out1"))

        # Concurrent publishes of the same bundle on both: distinct, consecutive versions.
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(
                    lambda i: publish((a, b)[i % 2].url, token, trees[i], "course"),
                    range(1, 5),
                )
            )
        assert all(r.code == 0 for r in results), [r.describe() for r in results]
        got = {int(r.stdout.strip()): i for i, r in zip(range(1, 5), results, strict=True)}
        assert sorted(got) == [2, 3, 4, 5]
        for server in (a, b):
            catalog = httpx.get(f"{server.url}/v1/catalog", timeout=30).json()
            assert [v["version"] for v in catalog["bundles"][0]["versions"]] == [1, 2, 3, 4, 5]

        # Both serve the same current index: version 5, with the ready-made deltas that the
        # replica which committed v5 built (from v2..v4) into the shared store.
        serial, entries, etag = _index(a.url, key)
        assert _index(b.url, key) == (serial, entries, etag)
        assert entries[0][:2] == ("course", 5) and entries[0][2] == (4, 3, 2)

        # The client that holds v1 updates from the other replica; the files are v5's exactly.
        assert sync_json(a.url, "course", store)["version"] == 5
        assert_same_files(trees[got[5]], checkout_ok(store, "course", tmp_path / "out5"))
        # The ready-made pack v4 -> v5 is served the same by either replica.
        versions = httpx.get(f"{b.url}/v1/catalog", timeout=30).json()["bundles"][0]["versions"]
        m4, m5 = versions[3]["manifest"], versions[4]["manifest"]
        packs = [httpx.get(f"{s.url}/v1/deltas/{m4}/{m5}", timeout=30) for s in (a, b)]
        assert [p.status_code for p in packs] == [200, 200]
        assert packs[0].content == packs[1].content and len(packs[0].content) > 0


def test_serve_refuses_a_signing_key_file_that_does_not_exist(tmp_path: Path) -> None:
    """Replicas must share one key: a named but missing key file is a usage error, and no
    key is made up in its place (or in the data folder)."""
    missing = tmp_path / "nope.pem"
    res = run_cli("serve", "--data", tmp_path / "srv", "--signing-key", missing)
    assert res.code == 2, res.describe()
    assert len(res.error_lines()) == 1 and "keygen" in res.error_lines()[0]
    assert not missing.exists()
    assert not (tmp_path / "srv" / "signing-key.pem").exists()


def test_serve_refuses_a_signing_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    res = run_cli("serve", "--data", tmp_path / "srv", "--signing-key", bad)
    assert res.code == 3, res.describe()  # a FormatError: the file failed verification
    assert len(res.error_lines()) == 1
