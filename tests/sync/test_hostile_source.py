"""Finding 10: a hostile server or relay that floods or stalls a sync.

It once sent an endless pack (110 MB for a 3 MB bundle, repeated frames accepted and counted)
and a one-byte-per-20-s trickle that kept ``sync`` open for ever. Now a pack may carry only
objects that were asked for, each once, and at most the bytes those objects can need; and a
sync whose source sends too little for a minute ends as a link failure, keeping what arrived.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.content.errors import IntegrityError, NotFoundError, StalledError
from satchel.sync.fetcher import PackResponse
from satchel.sync.fsck import fsck
from satchel.sync.local import LocalStore
from satchel.sync.pack import MAGIC, frame, read_pack, trailer
from satchel.sync.resume import ProgressDeadline
from satchel.sync.updater import Updater

from harness.repo import RepoFetcher, make_repository, publish, sample_files, write_tree


class Source(RepoFetcher):
    """A RepoFetcher whose next pack answer can be replaced."""

    answer: PackResponse | None = None

    def fetch_pack(self, manifest_id: str, want: bytes, base: str | None = None) -> PackResponse:
        honest = super().fetch_pack(manifest_id, want, base)
        if self.answer is None:
            return honest
        answer, self.answer = self.answer, None
        return answer

    def fetch_delta(self, base: str, manifest_id: str) -> PackResponse:
        raise NotFoundError("no ready-made packs here: every update is a dynamic pack")


def _world(tmp: Path) -> tuple[Source, LocalStore, bytes]:
    """A laptop at v1 of a line whose v2 is published, and the honest pack it would get."""
    repo = make_repository(tmp / "srv")
    v1 = sample_files(5)
    publish(repo, write_tree(tmp / "v1", v1))
    source = Source(repo)
    store = LocalStore(tmp / "laptop", durable=False)
    Updater(store, source).sync("course", "en")
    v2 = {**v1, "chapters/09-new.html": bytes(reversed(v1["chapters/01-intro.html"])) * 3}
    publish(repo, write_tree(tmp / "v2", v2))
    # The honest pack, recorded by the same sync into a copy of the laptop's store.
    recorder = Source(repo)
    laptop_copy = LocalStore(tmp / "laptop-copy", durable=False)
    for cid in store.objects:
        laptop_copy.objects.put(cid, store.objects.get(cid))
    for path in (store.root / "refs", store.root / "manifests", store.root / "index"):
        shutil.copytree(path, laptop_copy.root / path.name, dirs_exist_ok=True)
    (laptop_copy.root / "trust.json").write_bytes((store.root / "trust.json").read_bytes())
    Updater(laptop_copy, recorder).sync("course", "en")
    (call,) = recorder.pack_calls
    return source, store, call.body


def _intact(store: LocalStore) -> None:
    ref = store.ref("course", "en")
    assert ref is not None and ref.version == 1
    assert fsck(store).clean


@pytest.fixture
def world(tmp_path: Path) -> tuple[Source, LocalStore, bytes]:
    return _world(tmp_path)


def test_a_pack_that_repeats_an_object_is_refused_and_nothing_is_lost(
    world: tuple[Source, LocalStore, bytes],
) -> None:
    source, store, honest = world
    frames = list(read_pack([honest]))
    repeated = MAGIC + b"".join(frame(f.chunk_id, f.obj) for f in [*frames, frames[0]])
    source.answer = PackResponse(None, iter([repeated + trailer(len(frames) + 1)]))
    with pytest.raises(IntegrityError, match="twice"):
        Updater(store, source).sync("course", "en")
    _intact(store)
    assert Updater(store, source).sync("course", "en").version == 2  # an honest source: fine


def test_a_pack_longer_than_its_objects_can_need_is_cut_off(
    world: tuple[Source, LocalStore, bytes],
) -> None:
    source, store, honest = world
    frames = list(read_pack([honest]))
    taken: list[int] = []

    def endless() -> Iterator[bytes]:
        # A frame for an object asked for, declared at the reader's 16 MiB ceiling, then
        # padding for ever (what an endless pack looks like to the reader).
        yield MAGIC + frame(frames[0].chunk_id, b"")[:32] + (16 * 1024 * 1024).to_bytes(4, "big")
        while True:
            taken.append(1)
            yield b"\0" * 65536

    source.answer = PackResponse(None, endless())
    with pytest.raises(IntegrityError, match="more than"):
        Updater(store, source).sync("course", "en")
    assert len(taken) * 65536 <= len(honest) + 2 * 65536  # stopped near what it could need
    _intact(store)


def test_an_announced_length_beyond_the_need_is_refused_unread(
    world: tuple[Source, LocalStore, bytes],
) -> None:
    source, store, honest = world
    read: list[int] = []

    def body() -> Iterator[bytes]:
        read.append(1)
        yield honest

    source.answer = PackResponse(110 * 1024 * 1024, body())
    with pytest.raises(IntegrityError, match="announces"):
        Updater(store, source).sync("course", "en")
    assert read == []
    _intact(store)


def test_a_trickling_source_ends_the_sync_and_what_arrived_is_kept(
    world: tuple[Source, LocalStore, bytes],
) -> None:
    source, store, honest = world
    frames = list(read_pack([honest]))
    now = [0.0]
    first = MAGIC + frame(frames[0].chunk_id, frames[0].obj)  # one whole object, at once

    def trickle() -> Iterator[bytes]:
        yield first
        rest = b"".join(frame(f.chunk_id, f.obj) for f in frames[1:]) + trailer(len(frames))
        for byte in rest:  # then one byte every 20 s
            now[0] += 20.0
            yield bytes([byte])

    source.answer = PackResponse(None, trickle())
    updater = Updater(store, source, deadline=lambda: ProgressDeadline(clock=lambda: now[0]))
    with pytest.raises(StalledError, match="under"):
        updater.sync("course", "en")
    assert now[0] <= 120.0  # ended within about a minute of the trickle, not at its end
    assert store.objects.has(frames[0].chunk_id)  # what arrived whole was kept
    _intact(store)
    assert Updater(store, source).sync("course", "en").version == 2  # and the sync resumes
