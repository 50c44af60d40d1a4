"""Checkout: a stored version becomes a plain folder, atomically, re-verifying every chunk."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from satchel.content.chunking import ChunkerParams, chunk_id
from satchel.content.errors import ContentError, NotFoundError, UnsafePathError, UsageError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import RAW, ZSTD, encode_object
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout, checkout_line, read_marker
from satchel.sync.local import LocalStore
from satchel.sync.store import MemoryChunkStore
from satchel.sync.updater import Updater

from harness.e2e import CliResult, run_cli
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


def test_checkout_replaces_an_earlier_checkout_of_the_same_line_whole(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    manifest, files = synced
    dest = tmp_path / "course"
    checkout(manifest, client_store.objects, dest)
    assert read_marker(dest) == ("course", "en")
    write_tree(dest, {"stale.txt": b"old", "README.md": b"old readme", "deep/old/x": b"x"})
    (dest / "README.md").write_bytes(b"edited by hand")
    checkout(manifest, client_store.objects, dest)
    assert_same_tree(files, dest)
    assert siblings(dest) == ["client", "course", "src", "srv"]


def test_checkout_refuses_a_file_at_dest(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    manifest, _files = synced
    dest = tmp_path / "course"
    dest.write_bytes(b"I am a file")
    with pytest.raises(UsageError, match="is a file"):
        checkout(manifest, client_store.objects, dest)
    assert dest.read_bytes() == b"I am a file"


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
    checkout(manifest, client_store.objects, dest)
    (dest / "keep.txt").write_bytes(b"added to the previous checkout")
    before = tree_files(dest)
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
    checkout(unchecked_manifest(["a.txt"])[0], store, dest)  # an earlier checkout of the line
    (dest / "keep").write_bytes(b"k")
    with pytest.raises(UnsafePathError):
        checkout(manifest, store, dest)
    assert tree_files(dest) == {"a.txt": b"evil", "keep": b"k"}
    assert not (tmp_path / "inner" / "escape.txt").exists()
    assert not Path("/tmp/satchel-checkout-escape.txt").exists()
    assert sorted(os.listdir(tmp_path / "inner")) == ["course"]


# -- issue 12, finding 7: checkout --to a folder that holds something else -----------------------
def _cli_checkout(store: Path, to: Path, *extra: object) -> CliResult:
    return run_cli("checkout", "--store", store, "--bundle", "course", "--to", to, *extra)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("documents", "not empty and not an earlier checkout"),
        ("other-line", "holds a checkout of other/en, not course/en"),
        ("store", "is the store itself"),
        (".", "holds the store"),
        ("store/objects", "inside the store"),
        ("store/lessons", "inside the store"),
        ("link-to-home", "is a link"),
        ("store-via-link", "is the store itself"),
        ("above-via-link", "holds the store"),
        ("a-file", "is a file"),
    ],
)
def test_checkout_never_deletes_what_the_target_holds(
    synced: tuple[Manifest, dict[str, bytes]],
    client_store: LocalStore,
    tmp_path: Path,
    target: str,
    words: str,
) -> None:
    """The attack of issue 12, finding 7: `satchel checkout --to DIR` used to replace DIR
    whatever it held, the store itself included (and with it the pinned key, so the next sync
    would pin whatever key it met). Every such target is refused, one line, exit 2, and
    everything the folder and the store held is still there."""
    home = tmp_path / "home"
    store = home / "store"
    shutil.move(client_store.root, store)
    write_tree(home / "documents", {"homework.txt": b"mine", "notes/a.md": b"# a"})
    other, _ = unchecked_manifest(["x.txt"])
    checkout(replace(other, bundle="other"), unchecked_manifest(["x.txt"])[1], home / "other-line")
    (home / "a-file").write_bytes(b"a file")
    os.symlink(home, tmp_path / "link-to-home")
    os.symlink(home, home / "documents" / "up")  # links are resolved before comparing
    paths = {
        "link-to-home": tmp_path / "link-to-home",
        "store-via-link": tmp_path / "link-to-home" / "store",
        "above-via-link": home / "documents" / "up" / "..",  # the link's parent: tmp_path
        ".": home,
    }
    to = paths.get(target, home / target)
    before = _snapshot(home)
    key = (store / "trust.json").read_bytes()
    res = _cli_checkout(store, to)
    assert res.code == 2, res.describe()
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], res.describe()
    assert _snapshot(home) == before  # nothing lost, nothing added
    assert (store / "trust.json").read_bytes() == key
    assert sorted(p.name for p in home.iterdir()) == [
        "a-file", "documents", "other-line", "store",
    ]  # fmt: skip
    # The store still works: a checkout to a new folder is whole.
    assert _cli_checkout(store, tmp_path / "fresh").code == 0
    assert_same_tree(synced[1], tmp_path / "fresh")


def test_checkout_to_an_empty_folder_or_an_earlier_checkout_works_from_the_cli(
    synced: tuple[Manifest, dict[str, bytes]], client_store: LocalStore, tmp_path: Path
) -> None:
    _manifest, files = synced
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _cli_checkout(client_store.root, empty)
    assert res.code == 0 and "course/en version 1 written to" in res.stderr, res.describe()
    assert_same_tree(files, empty)
    again = _cli_checkout(client_store.root, empty, "--version", "1")
    assert again.code == 0, again.describe()
    assert_same_tree(files, empty)
    assert _cli_checkout(client_store.root, empty, "--version", "7").stderr.count("have 1") == 1


def test_checkout_line_holds_the_version_and_selection_rules(
    repo: Repository, client_store: LocalStore, tmp_path: Path
) -> None:
    files = sample_files(3)
    publish(repo, write_tree(tmp_path / "src", files, MODES))
    Updater(client_store, RepoFetcher(repo)).sync("course", "en")
    with pytest.raises(NotFoundError, match="course/es is not in"):
        checkout_line(client_store, "course", "es", tmp_path / "x")
    with pytest.raises(NotFoundError, match=r"version 4 of course/en is not in the store"):
        checkout_line(client_store, "course", "en", tmp_path / "x", 4)
    done = checkout_line(client_store, "course", "en", tmp_path / "all")
    assert (done.version, done.files, done.total, done.only) == (1, len(files), len(files), None)
    Updater(client_store, RepoFetcher(repo)).sync("course", "en", only=["chapters"])
    part = checkout_line(client_store, "course", "en", tmp_path / "part")
    chapters = {p: d for p, d in files.items() if p.startswith("chapters/")}
    assert part.only == ("chapters",) and part.files == len(chapters) < part.total
    assert_same_tree(chapters, tmp_path / "part")
