"""WriteBatch: durability paid once per batch, and never an id naming bytes that a cut could
lose (sync/store.py)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from satchel.content.errors import StoreError
from satchel.sync import store as store_module
from satchel.sync.store import FolderChunkStore, MemoryChunkStore, WriteBatch


def cid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def obj(n: int, size: int = 100) -> bytes:
    return b"\x00" + bytes([n % 256]) * (size - 1)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


def test_staged_objects_are_seen_through_the_batch_and_stored_at_flush(tmp_path: Path) -> None:
    fs = FolderChunkStore(tmp_path / "objects")
    committed: list[list[str]] = []
    with WriteBatch(fs, on_commit=committed.append) as batch:
        for n in range(5):
            assert batch.put(cid(n), obj(n)) is True
        assert batch.put(cid(2), obj(2)) is False  # write-once inside the batch too
        assert all(batch.has(cid(n)) for n in range(5))
        assert batch.get(cid(3)) == obj(3) and batch.stored_size(cid(3)) == 100
        assert not any(fs.has(cid(n)) for n in range(5))  # not durable yet: not under its id
        assert sorted(batch) == sorted(cid(n) for n in range(5))
    assert all(fs.get(cid(n)) == obj(n) for n in range(5))
    assert committed == [[cid(n) for n in range(5)]]
    assert temp_files(fs.root) == []
    assert batch.put(cid(1), obj(1)) is False  # already in the store


def test_a_batch_commits_when_it_holds_enough_bytes(tmp_path: Path) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=False)
    batch = WriteBatch(fs, max_bytes=250, max_seconds=3600)
    batch.put(cid(1), obj(1))
    batch.put(cid(2), obj(2))
    assert not fs.has(cid(1))
    batch.put(cid(3), obj(3))  # 300 bytes >= 250: the batch commits
    assert all(fs.has(cid(n)) for n in (1, 2, 3))
    batch.put(cid(4), obj(4))
    assert not fs.has(cid(4))


def test_a_batch_commits_when_it_is_old_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: now[0])
    fs = FolderChunkStore(tmp_path / "objects", durable=False)
    batch = WriteBatch(fs, max_bytes=1 << 30, max_seconds=1.0)
    batch.put(cid(1), obj(1))
    now[0] += 0.5
    batch.put(cid(2), obj(2))
    assert not fs.has(cid(1))
    now[0] += 0.6  # the first staged object is now 1.1 s old
    batch.put(cid(3), obj(3))
    assert all(fs.has(cid(n)) for n in (1, 2, 3))


def test_a_failing_block_still_keeps_what_was_put(tmp_path: Path) -> None:
    fs = FolderChunkStore(tmp_path / "objects")
    with pytest.raises(RuntimeError), WriteBatch(fs) as batch:
        batch.put(cid(1), obj(1))
        raise RuntimeError("a refused frame")
    assert fs.get(cid(1)) == obj(1)


def test_bytes_are_fsynced_before_any_id_names_them_and_folders_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=True)
    fs._whole_fs = False  # a file system syncfs cannot stand for (NFS, say): file by file
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    monkeypatch.setattr(store_module.os, "replace", replace)
    with WriteBatch(fs) as batch:
        for n in range(40):
            batch.put(cid(n), obj(n))
        assert events == []  # nothing paid while the batch fills
    kinds = [kind for kind, _ in events]
    first_replace = kinds.index("replace")
    files = [p for kind, p in events[:first_replace] if kind == "fsync"]
    assert len(files) == 40 and all(Path(p).name.startswith(".tmp-") for p in files)
    assert kinds[first_replace : first_replace + 40] == ["replace"] * 40
    folders = {p for kind, p in events[first_replace + 40 :]}
    assert kinds[first_replace + 40 :] == ["fsync"] * len(folders)
    assert folders == {os.fspath(fs.root / cid(n)[:2]) for n in range(40)}


def test_one_syncfs_before_any_id_names_the_bytes_and_one_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=True)
    fs._whole_fs = True  # a local file system on Linux 5.8 or later
    events: list[str] = []
    real_replace = os.replace

    def fsync(fd: int) -> None:
        raise AssertionError("an fsync per file where one syncfs stands for them")

    def replace(src: str, dst: str) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    monkeypatch.setattr(store_module.os, "replace", replace)
    monkeypatch.setattr(store_module, "syncfs", lambda path: events.append(f"syncfs {path}"))
    with WriteBatch(fs) as batch:
        for n in range(40):
            batch.put(cid(n), obj(n))
    flush = f"syncfs {fs.root}"
    assert events == [flush] + ["replace"] * 40 + [flush]
    assert all(fs.get(cid(n)) == obj(n) for n in range(40))


def test_a_failed_syncfs_is_a_store_error_and_no_id_names_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=True)
    fs._whole_fs = True

    def write_back_failed(path: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(store_module, "syncfs", write_back_failed)
    batch = WriteBatch(fs)
    batch.put(cid(1), obj(1))
    batch.put(cid(2), obj(2))
    with pytest.raises(StoreError, match=r"cannot write chunk.*Input/output error"):
        batch.flush()
    assert not fs.has(cid(1)) and not fs.has(cid(2))
    assert temp_files(fs.root) == []


def test_a_cut_before_the_flush_leaves_no_object_under_its_id(tmp_path: Path) -> None:
    fs = FolderChunkStore(tmp_path / "objects")
    batch = WriteBatch(fs)
    batch.put(cid(1), obj(1))
    del batch  # the process dies: the batch never commits
    again = FolderChunkStore(tmp_path / "objects")
    assert not again.has(cid(1)) and list(again) == []  # a resumed sync asks for it again
    assert again.put(cid(1), obj(1)) is True


def test_a_failed_commit_is_a_store_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=False)
    batch = WriteBatch(fs)
    batch.put(cid(1), obj(1))
    batch.put(cid(2), obj(2))

    def disk_full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "replace", disk_full)
    with pytest.raises(StoreError, match="cannot write chunk"):
        batch.flush()
    monkeypatch.undo()
    assert not fs.has(cid(1)) and not fs.has(cid(2))
    assert temp_files(fs.root) == []
    assert not batch.has(cid(1))


def test_over_another_store_puts_go_straight_through() -> None:
    mem = MemoryChunkStore()
    committed: list[list[str]] = []
    batch = WriteBatch(mem, on_commit=committed.append)
    assert batch.put(cid(1), obj(1)) is True
    assert mem.get(cid(1)) == obj(1) and committed == [[cid(1)]]
    assert batch.put(cid(1), obj(1)) is False and committed == [[cid(1)]]
    assert batch.flush() == []


def test_temp_files_a_killed_batch_left_are_swept_by_age_and_never_an_object(
    tmp_path: Path,
) -> None:
    """A process killed mid-batch leaves its staged temp files (never under an id). A sweep
    removes those at least as old as it is told, and no stored object."""
    fs = FolderChunkStore(tmp_path / "objects")
    fs.put(cid(0), obj(0))
    left = [fs.stage(cid(n), obj(n)) for n in range(1, 5)]  # staged, never committed: "killed"
    assert all(s is not None for s in left) and len(temp_files(fs.root)) == 4
    old = [Path(s.tmp) for s in left[:2] if s is not None]
    for p in old:
        os.utime(p, (1_000_000_000, 1_000_000_000))
    assert fs.sweep_temp(min_age=3600) == 2  # a shared folder: only what no writer can own
    assert sorted(temp_files(fs.root)) == sorted(Path(s.tmp) for s in left[2:] if s is not None)
    assert fs.sweep_temp() == 2 and temp_files(fs.root) == []
    assert fs.get(cid(0)) == obj(0) and list(fs) == [cid(0)]


def test_gc_sweeps_what_a_killed_sync_left(tmp_path: Path) -> None:
    from satchel.sync.care import collect_garbage
    from satchel.sync.local import LocalStore

    store = LocalStore(tmp_path / "store", durable=False)
    staged = store.objects.stage(cid(1), obj(1))
    assert staged is not None and temp_files(store.objects.root)
    result = collect_garbage(store)
    assert result.object_temps_removed == 1 and temp_files(store.objects.root) == []


def test_a_temp_name_a_killed_process_left_is_stepped_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Temp names are this process's pid and a counter: one a dead process with the same pid
    left behind is never opened again, and the object goes to the next name."""
    import itertools

    fs = FolderChunkStore(tmp_path / "objects", durable=False)
    folder = fs.root / cid(1)[:2]
    folder.mkdir(parents=True)
    left = folder / f".tmp-{os.getpid()}-0"
    left.write_bytes(b"half an object of a killed sync")
    monkeypatch.setattr(store_module, "_temp_names", itertools.count())
    staged = fs.stage(cid(1), obj(1))
    assert staged is not None and staged.tmp == os.fspath(folder / f".tmp-{os.getpid()}-1")
    assert left.read_bytes() == b"half an object of a killed sync"
    fs.commit([staged])
    assert fs.get(cid(1)) == obj(1)
    assert (os.stat(fs._path(cid(1))).st_mode & 0o777) == 0o600  # as mkstemp made them
