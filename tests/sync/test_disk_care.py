"""Disk care: free-space checks with a reserve, one writer at a time, keep N versions + gc."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from satchel.content.errors import StoreError
from satchel.server.repository import Repository
from satchel.sync.care import DiskSpaceError, collect_garbage, writer_lock
from satchel.sync.checkout import checkout
from satchel.sync.fsck import fsck
from satchel.sync.local import LocalStore
from satchel.sync.updater import Updater

from harness.e2e import SatchelServer, run_cli, sync_json
from harness.e2e import publish as publish_cli
from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    publish,
    sample_files,
    write_tree,
)


def version(seed: int) -> dict[str, bytes]:
    files = sample_files(0, scale=3)
    files[f"media/only-v{seed}.bin"] = random.Random(seed).randbytes(30_000)
    return files


def test_a_sync_that_would_not_fit_is_refused_and_says_how_much(
    repo: Repository, tmp_path: Path
) -> None:
    publish(repo, write_tree(tmp_path / "v1", version(1)))
    store = LocalStore(tmp_path / "s", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    publish(repo, write_tree(tmp_path / "v2", version(2)))
    # A reserve larger than any disk (free space moves while other programs run).
    tight = Updater(store, RepoFetcher(repo), reserve=10**18)
    before = set(store.objects)
    with pytest.raises(DiskSpaceError, match=r"needs up to .* MB but only .* MB are free"):
        tight.sync("course", "en")
    assert set(store.objects) == before  # nothing stored
    assert store.ref("course", "en").version == 1  # type: ignore[union-attr]
    ok = Updater(store, RepoFetcher(repo), reserve=10_000_000).sync("course", "en")
    assert ok.version == 2


def test_keep_n_versions_and_collect_what_nothing_kept_uses(
    repo: Repository, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    for v in (1, 2, 3):
        publish(repo, write_tree(tmp_path / f"v{v}", version(v)))
        Updater(store, RepoFetcher(repo)).sync("course", "en")
    ref = store.ref("course", "en")
    assert ref is not None and sorted(ref.versions) == [1, 2, 3]
    v1_only = {
        cid
        for cid, _ in store.load_manifest(ref.versions[1]).distinct_chunks()
        if cid
        not in {
            c for v in (2, 3) for c, _ in store.load_manifest(ref.versions[v]).distinct_chunks()
        }
    }
    assert v1_only and all(store.objects.has(c) for c in v1_only)
    result = collect_garbage(store, keep=2)
    assert result.versions_dropped == ["course/en v1"]
    assert result.objects_deleted == len(v1_only) and result.bytes_freed > 30_000
    assert not any(store.objects.has(c) for c in v1_only)
    assert sorted(store.ref("course", "en").versions) == [2, 3]  # type: ignore[union-attr]
    assert ref.versions[1] not in store.manifest_ids()
    assert fsck(store).clean
    for v in (2, 3):
        out = tmp_path / f"out{v}"
        checkout(store.load_manifest(ref.versions[v]), store.objects, out)
        assert_same_tree(version(v), out)
    assert collect_garbage(store, keep=2).objects_deleted == 0  # idempotent
    with pytest.raises(StoreError):
        collect_garbage(store, keep=0)


def test_gc_spares_a_version_still_arriving(repo: Repository, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    publish(repo, write_tree(tmp_path / "v1", version(1)))
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    publish(repo, write_tree(tmp_path / "v2", version(2) | {"big.bin": random.randbytes(90_000)}))
    cut = Updater(store, RepoFetcher(repo)).sync("course", "en", max_bytes=20_000)
    assert not cut.complete and cut.objects_fetched > 0
    arrived = set(store.objects)
    collect_garbage(store, keep=1)
    assert set(store.objects) == arrived  # the budget-stopped version's objects stay
    fetcher = RepoFetcher(repo)
    rest = Updater(store, fetcher).sync("course", "en")
    assert rest.complete and rest.objects_fetched == len(
        [
            c
            for c, _ in store.load_manifest(store.ref("course", "en").manifest).distinct_chunks()  # type: ignore[union-attr]
            if c not in arrived
        ]
    )


def test_narrowing_a_selection_then_gc_frees_the_rest(repo: Repository, tmp_path: Path) -> None:
    publish(repo, write_tree(tmp_path / "v1", version(1)))
    store = LocalStore(tmp_path / "s", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    Updater(store, RepoFetcher(repo)).sync("course", "en", only=["chapters"])
    freed = collect_garbage(store)
    assert freed.bytes_freed > 30_000  # media went
    assert fsck(store).clean


def test_one_writer_at_a_time(repo: Repository, tmp_path: Path) -> None:
    publish(repo, write_tree(tmp_path / "v1", version(1)))
    store = LocalStore(tmp_path / "s", durable=False)
    with writer_lock(store):
        res = run_cli("gc", "--store", store.root)
        assert res.code == 7 and "another satchel command" in res.stderr, res.describe()
        with pytest.raises(StoreError, match="another satchel command"), writer_lock(store):
            pass
    assert run_cli("gc", "--store", store.root).code == 0  # released


def test_cli_keep_reserve_and_status_update_cost(tmp_path: Path) -> None:
    with SatchelServer(tmp_path / "srv") as server:
        token = server.token("teacher")
        store = tmp_path / "store"
        for v in (1, 2, 3):
            src = write_tree(tmp_path / f"v{v}", version(v))
            assert publish_cli(server.url, token, src, "course").code == 0
            got = sync_json(server.url, "course", store, "--keep", "1")
        assert got["version"] == 3 and got["bytes_freed"] > 0
        status = json.loads(run_cli("status", "--store", store, "--json").stdout)
        assert status["bundles"][0]["versions"] == [3]
        assert (
            publish_cli(server.url, token, write_tree(tmp_path / "v4", version(4)), "course").code
            == 0
        )
        huge = run_cli(
            "sync",
            "--server",
            server.url,
            "--bundle",
            "course",
            "--store",
            store,
            "--reserve",
            "1000000g",
        )
        assert huge.code == 7 and "free" in huge.stderr and "--only" in huge.stderr, huge.describe()
        offline = run_cli("status", "--store", store)
        assert "version 4 pending (" in offline.stdout, offline.stdout
        assert "objects here), update needs at most" in offline.stdout, offline.stdout
        exact = json.loads(
            run_cli("status", "--store", store, "--server", server.url, "--json").stdout
        )
        line = exact["bundles"][0]
        assert line["pending_version"] == 4 and line["update_bytes"] > 0
        dry = json.loads(
            run_cli(
                "sync",
                "--server",
                server.url,
                "--bundle",
                "course",
                "--store",
                store,
                "--dry-run",
                "--json",
            ).stdout
        )
        assert dry["bytes_to_download"] == line["update_bytes"]
