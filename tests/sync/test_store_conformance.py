"""One conformance suite for every ChunkStore (memory, folder, S3), plus FolderChunkStore
specifics (S3 specifics are in test_s3.py)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from satchel.content.errors import FormatError, NotFoundError, StoreError
from satchel.server.s3store import S3ChunkStore
from satchel.sync import store as store_module
from satchel.sync.store import ChunkStore, FolderChunkStore, MemoryChunkStore

from harness.services import S3Server


def cid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


OBJ = b"\x00some object bytes"

Factory = Callable[[Path], ChunkStore]
FACTORIES: dict[str, Factory] = {
    "memory": lambda _root: MemoryChunkStore(),
    "folder": lambda root: FolderChunkStore(root / "objects", durable=False),
    "folder-durable": lambda root: FolderChunkStore(root / "objects", durable=True),
}


@pytest.fixture(params=[*sorted(FACTORIES), "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ChunkStore:
    if request.param == "s3":
        # The S3 backend against a real S3 API server (moto, own process): a fresh bucket
        # and a prefix, so "empty store" and listings are this test's alone.
        s3: S3Server = request.getfixturevalue("s3_server")
        return S3ChunkStore.from_url(f"s3://{s3.new_bucket()}/objects", client=s3.client())
    return FACTORIES[request.param](tmp_path)


def test_empty_store(store: ChunkStore) -> None:
    assert not store.has(cid(1))
    assert list(store) == []
    with pytest.raises(NotFoundError):
        store.get(cid(1))
    with pytest.raises(NotFoundError):
        store.stored_size(cid(1))


def test_put_then_get(store: ChunkStore) -> None:
    assert store.put(cid(1), OBJ) is True
    assert store.has(cid(1))
    assert store.get(cid(1)) == OBJ
    assert store.stored_size(cid(1)) == len(OBJ)
    assert not store.has(cid(2))


def test_put_is_write_once(store: ChunkStore) -> None:
    assert store.put(cid(1), OBJ) is True
    assert store.put(cid(1), OBJ) is False
    assert store.put(cid(1), b"\x00different") is False  # the first object stays
    assert store.get(cid(1)) == OBJ


def test_put_accepts_any_bytes_like(store: ChunkStore) -> None:
    buf = bytearray(OBJ)
    store.put(cid(1), buf)  # type: ignore[arg-type]
    buf[0] = 0xFF  # the store must have copied it
    assert store.get(cid(1)) == OBJ


def test_empty_object(store: ChunkStore) -> None:
    assert store.put(cid(1), b"")
    assert store.get(cid(1)) == b""
    assert store.stored_size(cid(1)) == 0


def test_delete(store: ChunkStore) -> None:
    store.put(cid(1), OBJ)
    store.put(cid(2), OBJ)
    store.delete(cid(1))
    assert not store.has(cid(1))
    with pytest.raises(NotFoundError):
        store.get(cid(1))
    store.delete(cid(1))  # deleting what is absent is fine
    assert store.has(cid(2))
    assert store.put(cid(1), OBJ) is True  # and it can come back


def test_iteration_lists_every_id_once(store: ChunkStore) -> None:
    ids = {cid(n) for n in range(40)}
    for c in ids:
        store.put(c, OBJ)
        store.put(c, OBJ)
    listed = list(store)
    assert len(listed) == len(ids)
    assert set(listed) == ids


def test_iteration_survives_deletes_during_iteration(store: ChunkStore) -> None:
    for n in range(5):
        store.put(cid(n), OBJ)
    seen = []
    for c in store:
        seen.append(c)
        store.delete(c)
    assert len(seen) >= 1
    assert all(not store.has(c) for c in seen)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        cid(1).upper(),
        cid(1)[:63],
        cid(1) + "0",
        "../" + cid(1)[3:],
        "/" + cid(1)[1:],
        "z" * 64,
    ],
)
def test_invalid_ids_are_refused(store: ChunkStore, bad: str) -> None:
    with pytest.raises(FormatError):
        store.put(bad, OBJ)
    with pytest.raises((FormatError, NotFoundError)):
        store.get(bad)
    with contextlib.suppress(FormatError):  # refusing is fine; claiming to have it is not
        assert store.has(bad) is False
    assert list(store) == []


# -- FolderChunkStore ----------------------------------------------------------------------
def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]


def test_folder_layout_and_no_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    fs = FolderChunkStore(root)
    for n in range(20):
        fs.put(cid(n), OBJ + bytes([n]))
    c = cid(3)
    assert (root / c[:2] / c).read_bytes() == OBJ + bytes([3])
    assert json.loads((root / "store.json").read_text())["format"] == 1
    assert leftovers(root) == []


def test_reopened_folder_store_sees_objects(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    FolderChunkStore(root).put(cid(1), OBJ)
    again = FolderChunkStore(root)
    assert again.has(cid(1)) and again.get(cid(1)) == OBJ
    assert list(again) == [cid(1)]
    assert again.put(cid(1), OBJ) is False


@pytest.mark.parametrize(
    "content", ['{"format": 2}', '{"format": "1"}', "{}", "[]", "not json", '"x"']
)
def test_folder_store_with_another_format_is_refused(tmp_path: Path, content: str) -> None:
    root = tmp_path / "objects"
    FolderChunkStore(root)
    (root / "store.json").write_text(content)
    with pytest.raises(StoreError):
        FolderChunkStore(root)


def test_folder_store_iteration_ignores_strays(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    fs = FolderChunkStore(root)
    fs.put(cid(1), OBJ)
    sub = root / cid(1)[:2]
    (sub / ".tmp-abc").write_bytes(b"half")
    (sub / "README").write_bytes(b"x")
    (root / "notes.txt").write_text("x")
    (root / "zz").mkdir()
    (root / "zz" / ("zz" * 32)).write_bytes(b"x")  # not hex
    assert list(fs) == [cid(1)]


def test_failed_write_leaves_no_object_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "objects"
    fs = FolderChunkStore(root, durable=False)

    def disk_full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "replace", disk_full)
    with pytest.raises(StoreError):
        fs.put(cid(1), OBJ)
    monkeypatch.undo()
    assert not fs.has(cid(1))
    assert leftovers(root) == []
    assert fs.put(cid(1), OBJ) is True


def test_unwritable_root_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError):
        FolderChunkStore(blocker / "objects")


def test_a_fan_out_folder_removed_under_a_running_store_comes_back(tmp_path: Path) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=False)
    first = hashlib.sha256(b"one").hexdigest()
    assert fs.put(first, OBJ)
    shutil.rmtree(tmp_path / "objects" / first[:2])  # a person tidied up; the store remembers
    second = first[:2] + "f" * 62
    assert fs.put(second, OBJ) and fs.get(second) == OBJ and not fs.has(first)


def test_a_snapshot_holds_what_the_folders_held_and_no_temp_files(tmp_path: Path) -> None:
    fs = FolderChunkStore(tmp_path / "objects", durable=False)
    fs.put(cid(1), OBJ)
    staged = fs.stage(cid(2), OBJ)  # written aside, not committed: not an object yet
    assert staged is not None
    shot = fs.snapshot()
    fs.put(cid(3), OBJ)
    assert (shot.has(cid(1)), shot.has(cid(2)), shot.has(cid(3))) == (True, False, False)
    assert fs.snapshot().ids == {cid(1), cid(3)} == set(fs)
