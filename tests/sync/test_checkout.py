"""Checkout: a stored version becomes a plain folder, atomically, re-verifying every chunk."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from satchel.content.chunking import ChunkerParams, chunk_id
from satchel.content.errors import ContentError, NotFoundError, UnsafePathError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import RAW, ZSTD, encode_object
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.local import LocalStore
from satchel.sync.store import MemoryChunkStore
from satchel.sync.updater import Updater

from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    publish,
    sample_files,
    tree_files,
    write_tree,
)

MODES = {"tools/run.sh": 0o755}


@pytest.fixture
def synced(
    repo: Repository, client_store: LocalStore, tmp_path: Path
) -> tuple[Manifest, dict[str, bytes]]:
    files = sample_files(3)
    publish(repo, write_tree(tmp_path / "src", files, MODES))
    Updater(client_store, RepoFetcher(repo)).sync("course", "en")
    ref = client_store.ref("course", "en")
    assert ref is not None
    return client_store.load_manifest(ref.manifest), files


def siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def test_checkout_is_byte_identical_with_modes(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    manifest, files = synced
    dest = tmp_path / "work" / "course"
    checkout(manifest, client_store.objects, dest)
    assert_same_tree(files, dest)
    assert stat.S_IMODE((dest / "tools/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "README.md").stat().st_mode) == 0o644
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert (dest / "media/empty.txt").read_bytes() == b""
    assert siblings(dest) == ["course"]  # no temp folders left behind


def test_checkout_replaces_an_existing_folder_whole(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    manifest, files = synced
    dest = tmp_path / "course"
    write_tree(dest, {"stale.txt": b"old", "README.md": b"old readme", "deep/old/x": b"x"})
    checkout(manifest, client_store.objects, dest)
    assert_same_tree(files, dest)
    assert siblings(dest) == ["client", "course", "src", "srv"]


def test_checkout_replaces_a_file_at_dest(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    manifest, files = synced
    dest = tmp_path / "course"
    dest.write_bytes(b"I am a file")
    checkout(manifest, client_store.objects, dest)
    assert_same_tree(files, dest)


def store_path(store: LocalStore, cid: str) -> Path:
    return store.objects.root / cid[:2] / cid


@pytest.mark.parametrize("fmt", [RAW, ZSTD])
@pytest.mark.parametrize("where", ["first", "last"])
def test_rotten_object_is_caught_and_dest_stays(
    synced: tuple[Manifest, dict[str, bytes]],
    client_store: LocalStore,
    tmp_path: Path,
    fmt: int,
    where: str,
) -> None:
    manifest, _files = synced
    dest = tmp_path / "course"
    before = {"keep.txt": b"the previous checkout"}
    write_tree(dest, before)
    ids = [c for c, _ in manifest.distinct_chunks() if client_store.objects.get(c)[0] == fmt]
    assert ids, f"the sample tree has objects of format {fmt}"
    path = store_path(client_store, ids[0])
    data = bytearray(path.read_bytes())
    data[1 if where == "first" else -1] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ContentError):
        checkout(manifest, client_store.objects, dest)
    assert tree_files(dest) == before
    assert siblings(dest) == ["client", "course", "src", "srv"]


def test_missing_object_leaves_dest_as_it_was(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    manifest, _files = synced
    dest = tmp_path / "course"
    checkout(manifest, client_store.objects, dest)
    snapshot = tree_files(dest)
    client_store.objects.delete(manifest.files[-1].chunks[0][0])
    with pytest.raises(NotFoundError):
        checkout(manifest, client_store.objects, dest)
    assert tree_files(dest) == snapshot


def unchecked_manifest(paths: list[str]) -> tuple[Manifest, MemoryChunkStore]:
    """A Manifest built directly (as a bug elsewhere might), bypassing the parser's checks."""
    store = MemoryChunkStore()
    store.put(chunk_id(b"evil"), encode_object(b"evil"))
    files = tuple(FileEntry(p, 4, 0o644, "text/plain", ((chunk_id(b"evil"), 4),)) for p in paths)
    m = Manifest(
        bundle="b",
        locale="en",
        version=1,
        parent_version=None,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        title="",
        chunker=ChunkerParams(),
        files=files,
    )
    return m, store


@pytest.mark.parametrize(
    "bad", ["../escape.txt", "a/../../escape.txt", "/tmp/satchel-checkout-escape.txt"]
)
def test_checkout_refuses_paths_that_leave_the_folder(tmp_path: Path, bad: str) -> None:
    manifest, store = unchecked_manifest(["a.txt", bad])
    dest = tmp_path / "inner" / "course"
    dest.mkdir(parents=True)
    (dest / "keep").write_bytes(b"k")
    with pytest.raises(UnsafePathError):
        checkout(manifest, store, dest)
    assert tree_files(dest) == {"keep": b"k"}
    assert not (tmp_path / "inner" / "escape.txt").exists()
    assert not Path("/tmp/satchel-checkout-escape.txt").exists()
    assert sorted(os.listdir(tmp_path / "inner")) == ["course"]
