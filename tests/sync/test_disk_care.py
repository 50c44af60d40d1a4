"""Disk care: free-space checks with a reserve, one writer at a time, keep N versions + gc."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.errors import StoreError
from satchel.server.repository import Repository
from satchel.sync.care import DiskSpaceError, collect_garbage, writer_lock
from satchel.sync.checkout import checkout
from satchel.sync.fsck import fsck
from satchel.sync.local import LocalStore
from satchel.sync.updater import Updater

from harness import diskfull
from harness.e2e import SATCHEL, SatchelServer, run_cli, sync_json
from harness.e2e import publish as publish_cli
from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    publish,
    sample_files,
    tree_files,
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


# -- issue 12, finding 11: what a checkout writes, a disk that fills, a killed checkout -------
NO_TMPFS = diskfull.tmpfs_unavailable()
# Run satchel commands with only the checkout's destination on a small private tmpfs; report
# each command's exit code and stderr, then every name left on the tmpfs.
DRIVER = """
import json, os, subprocess, sys
mount, satchel, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
steps = []
for args in commands:
    p = subprocess.run([satchel, *args], capture_output=True, text=True, timeout=120)
    steps.append({"code": p.returncode, "stderr": p.stderr})
names = sorted(
    os.path.relpath(os.path.join(d, n), mount) for d, ds, fs in os.walk(mount) for n in ds + fs
)
print(json.dumps({"steps": steps, "names": names}))
"""


def on_small_disk(tmp_path: Path, size: str, commands: list[list[str]]) -> dict[str, object]:
    mount = tmp_path / "mnt"
    mount.mkdir()
    argv = [sys.executable, "-c", DRIVER, str(mount), str(SATCHEL), json.dumps(commands)]
    proc = subprocess.run(
        diskfull.in_small_tmpfs(mount, size, argv), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def error_lines(step: dict[str, object]) -> list[str]:
    return [line for line in str(step["stderr"]).splitlines() if line.strip()]


@pytest.mark.skipif(NO_TMPFS is not None, reason=f"needs a private tmpfs: {NO_TMPFS}")
def test_checkout_counts_the_bytes_it_writes_not_the_bytes_the_store_holds(
    repo: Repository, tmp_path: Path
) -> None:
    """Deduplication lets a small draft describe a huge file (issue 12: 15 MB describing 26 GB):
    here 8 MB of zeros stored as one small object. The checkout's free-space check counts the
    8 MB it would write and refuses before writing anything."""
    publish(repo, write_tree(tmp_path / "src", {"README.md": b"hi", "big.bin": bytes(8_000_000)}))
    store = LocalStore(tmp_path / "s", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    assert sum(store.objects.stored_size(c) for c in store.objects) < 50_000
    checkout = ["checkout", "--store", str(store.root), "--bundle", "course"]
    got = on_small_disk(tmp_path, "2m", [[*checkout, "--to", str(tmp_path / "mnt" / "out")]])
    (step,) = got["steps"]  # type: ignore[misc]
    lines = error_lines(step)
    assert step["code"] == 7 and len(lines) == 1, step  # this machine cannot: a full disk
    assert "writes 8.0 MB but only" in lines[0] and "are free on the disk of" in lines[0], step
    assert got["names"] == []  # nothing written, no temp folder left


@pytest.mark.skipif(NO_TMPFS is not None, reason=f"needs a private tmpfs: {NO_TMPFS}")
def test_a_checkout_that_runs_out_of_disk_names_the_file_and_keeps_the_earlier_one(
    repo: Repository, tmp_path: Path
) -> None:
    """The bytes fit but the disk's files run out (a tmpfs with 16 inodes, like a FAT root
    folder's entries): the error names the file it stopped at, and the earlier checkout stays."""
    v1 = {"README.md": b"version one", "a.txt": b"a"}
    publish(repo, write_tree(tmp_path / "v1", v1))
    store = LocalStore(tmp_path / "s", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    v2 = {f"lessons/{i:02d}.md": f"lesson {i}".encode() for i in range(40)}
    publish(repo, write_tree(tmp_path / "v2", v2))
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    out = str(tmp_path / "mnt" / "out")
    checkout = ["checkout", "--store", str(store.root), "--bundle", "course", "--to", out]
    got = on_small_disk(tmp_path, "4m,nr_inodes=16", [[*checkout, "--version", "1"], checkout])
    first, second = got["steps"]  # type: ignore[misc]
    assert first["code"] == 0, first
    lines = error_lines(second)
    assert second["code"] == 7 and len(lines) == 1, second  # a full disk
    assert "is full: 'lessons/" in lines[0] and "could not be written" in lines[0], second
    assert "was left as it was" in lines[0], second
    assert got["names"] == ["out", "out/.satchel-checkout.json", "out/README.md", "out/a.txt"]


def _big_version(repo: Repository, tmp_path: Path) -> LocalStore:
    """v1 small; v2 adds 300 MB of zeros (one stored chunk), slow enough to kill mid-write."""
    chunker = Chunker(ChunkerParams(min_size=64 * 1024, avg_size=256 * 1024, max_size=1 << 20))
    store = LocalStore(tmp_path / "s", durable=False)
    publish(repo, write_tree(tmp_path / "v1", {"README.md": b"one"}), chunker=chunker)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    src = write_tree(tmp_path / "v2", {"README.md": b"two"})
    with open(src / "video.bin", "wb") as f:
        f.truncate(300 * 1024 * 1024)
    publish(repo, src, chunker=chunker)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    return store


def _temps(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".out.satchel-"))


def _kill_mid_checkout(store: LocalStore, out: Path) -> int:
    """Start `satchel checkout`, SIGKILL it once its temp folder holds a file; its pid."""
    args = ["checkout", "--store", str(store.root), "--bundle", "course", "--to", str(out)]
    proc = subprocess.Popen(
        [str(SATCHEL), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        temps = [out.parent / n for n in _temps(out.parent) if f"-{proc.pid}-" in n]
        if any(any(t.iterdir()) for t in temps if t.is_dir()):
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the checkout finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return proc.pid


def test_a_killed_checkout_leaves_a_temp_folder_that_the_next_checkout_and_gc_remove(
    repo: Repository, tmp_path: Path
) -> None:
    store = _big_version(repo, tmp_path)
    out = tmp_path / "work" / "out"
    assert run_cli("checkout", "--store", store.root, "--bundle", "course", "--to", out,
                   "--version", "1").code == 0  # fmt: skip
    before = tree_files(out)
    dead = _kill_mid_checkout(store, out)
    (stale,) = _temps(out.parent)
    assert f".out.satchel-{dead}-" in stale and tree_files(out) == before  # v1 untouched
    # Never touched: a folder a live process made (this test's pid), one whose lock a live
    # process holds (a checkout in another pid namespace), names of another pattern, a link.
    parent = out.parent
    live = parent / f".out.satchel-{os.getpid()}-abcdefgh"
    locked = parent / f".out.satchel-{dead}-lockedxx"
    other = parent / ".out.satchel-notes"
    keep = tmp_path / "keep"
    for folder in (live, locked, other, keep):
        folder.mkdir()
        (folder / "f").write_bytes(b"f")
    (parent / f".out.satchel-old-{dead}-linkxxxx").symlink_to(keep)
    fd = os.open(locked, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        # gc knows the destination (the store recorded it) and removes the stale folder.
        assert run_cli("gc", "--store", store.root).code == 0
        assert stale not in _temps(parent)
        assert _temps(parent) == sorted(
            [live.name, locked.name, other.name, f".out.satchel-old-{dead}-linkxxxx"]
        )
        # Killed again; this time the next checkout removes what it left, and finishes.
        again = _kill_mid_checkout(store, out)
        assert any(f"-{again}-" in n for n in _temps(parent))
        res = run_cli("checkout", "--store", store.root, "--bundle", "course", "--to", out)
        assert res.code == 0, res.describe()
    finally:
        os.close(fd)
    assert not any(f"-{again}-" in n for n in _temps(parent))
    assert len(_temps(parent)) == 4 and all((f / "f").exists() for f in (live, locked, other))
    assert (keep / "f").read_bytes() == b"f"
    assert (out / "README.md").read_bytes() == b"two"
    assert (out / "video.bin").stat().st_size == 300 * 1024 * 1024
