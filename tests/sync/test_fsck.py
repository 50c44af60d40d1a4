"""satchel fsck: every stored object is checked; --repair removes bad ones and sync refetches."""

from __future__ import annotations

from pathlib import Path

from satchel.content.signing import SigningKey
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.fsck import fsck
from satchel.sync.local import LocalStore
from satchel.sync.store import MemoryChunkStore
from satchel.sync.updater import Updater

from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    publish,
    sample_files,
    write_tree,
)


def synced(tmp_path: Path) -> tuple[Repository, LocalStore, RepoFetcher, dict[str, bytes]]:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    files = sample_files(3, scale=2)
    publish(repo, write_tree(tmp_path / "src", files))
    store = LocalStore(tmp_path / "client", durable=False)
    fetcher = RepoFetcher(repo)
    Updater(store, fetcher).sync("course", "en")
    return repo, store, fetcher, files


def rot(store: LocalStore, cid: str) -> None:
    path = store.objects.root / cid[:2] / cid
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_clean_store_is_clean(tmp_path: Path) -> None:
    _repo, store, _f, _files = synced(tmp_path)
    report = fsck(store)
    assert report.clean
    assert report.objects == len(list(store.objects))


def test_a_rotten_chunk_is_found_removed_and_refetched(tmp_path: Path) -> None:
    _repo, store, fetcher, files = synced(tmp_path)
    ref = store.ref("course", "en")
    assert ref is not None
    manifest = store.load_manifest(ref.manifest)
    victim = manifest.files[-1].chunks[0][0]
    rot(store, victim)

    report = fsck(store)
    assert report.corrupt == [victim]
    assert report.removed == []
    assert any("course/en v1" in line for line in report.incomplete)
    assert store.objects.has(victim)  # without --repair nothing is deleted

    report = fsck(store, repair=True)
    assert report.removed == [victim]
    assert not store.objects.has(victim)

    fetcher.reset()
    result = Updater(store, fetcher).sync("course", "en")
    assert result.objects_fetched == 1  # only the removed chunk comes back
    assert fsck(store).clean
    checkout(store.load_manifest(ref.manifest), store.objects, tmp_path / "out")
    assert_same_tree(files, tmp_path / "out")


def test_a_missing_object_of_the_current_version_is_refetched_by_sync(tmp_path: Path) -> None:
    _repo, store, fetcher, _files = synced(tmp_path)
    ref = store.ref("course", "en")
    assert ref is not None
    gone = store.load_manifest(ref.manifest).distinct_chunks()[-1][0]
    store.objects.delete(gone)
    fetcher.reset()
    result = Updater(store, fetcher).sync("course", "en")
    assert (result.version, result.objects_fetched) == (1, 1)
    assert store.objects.has(gone)


def test_a_server_with_a_new_key_re_signs_its_index_at_start(tmp_path: Path) -> None:
    objects = MemoryChunkStore()
    repo = Repository(tmp_path / "srv", store=objects)
    publish(repo, write_tree(tmp_path / "src", sample_files(1)))
    old_body, _ = repo.source.index("course", "en")
    key_file = tmp_path / "new.pem"
    SigningKey.generate().save(key_file)
    again = Repository(tmp_path / "srv", store=objects, signing_key=key_file)
    body, _ = again.source.index("course", "en")
    assert body != old_body
    assert again.key.public.keyid.encode() in body
