"""Drafts never committed (issue 12, finding 11): they stayed for ever (4 x 14 MB). A draft
older than a week is dropped with what only it uploaded, and each one is logged."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from satchel.content import canonical
from satchel.content.chunking import Chunker
from satchel.content.errors import NotFoundError
from satchel.content.objects import encode_object
from satchel.content.tree import scan_tree
from satchel.server.publishing import DRAFT_LIFETIME, SWEEP_EVERY
from satchel.server.repository import Repository
from satchel.sync.pack import PackReader, pack_bytes
from satchel.sync.store import MemoryChunkStore

from harness.repo import write_tree


def test_an_old_draft_goes_with_the_objects_only_it_uploaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore(), clock=lambda: now[0])
    rng = random.Random(1)
    shared = rng.randbytes(20_000)
    repo.publishing.publish_folder(
        write_tree(tmp_path / "v1", {"shared.bin": shared}),
        bundle="course",
        locale="en",
        title="Course",
    )
    # A teacher begins a second version, uploads its new file, and never commits.
    admin = repo.tokens.authenticate(repo.tokens.create("teacher", bundle="course", label="Bo"))
    src = write_tree(tmp_path / "v2", {"shared.bin": shared, "new.bin": rng.randbytes(30_000)})
    scan = scan_tree(src, title="Course", chunker=Chunker())
    begun = repo.publishing.begin(admin, "course", "en", canonical.encode(scan.draft.to_json()))
    new_ids = {cid for f in scan.draft.files if f.path == "new.bin" for cid, _ in f.chunks}
    shared_ids = {cid for f in scan.draft.files if f.path == "shared.bin" for cid, _ in f.chunks}
    receiver = repo.publishing.receiver(admin, begun.upload_id)
    reader = PackReader()
    body = pack_bytes((cid, encode_object(scan.sources[cid].read())) for cid in sorted(new_ids))
    receiver.receive(reader.feed(body))
    assert all(repo.store.has(cid) for cid in new_ids)

    now[0] += DRAFT_LIFETIME - timedelta(minutes=1)
    assert repo.publishing.expire_drafts() == []  # not old enough yet
    now[0] += timedelta(minutes=2)
    with caplog.at_level(logging.WARNING, logger="satchel.server.publishing"):
        (gone,) = repo.publishing.expire_drafts()
    assert (gone.upload, gone.bundle, gone.locale) == (begun.upload_id, "course", "en")
    assert f"expired draft {begun.upload_id}" in caplog.text
    assert not any(repo.store.has(cid) for cid in new_ids)  # only the draft used them
    assert all(repo.store.has(cid) for cid in shared_ids)  # version 1 still does
    with pytest.raises(NotFoundError):
        repo.publishing.commit(admin, begun.upload_id)
    assert [v.version for v in repo.reads.catalog()[0].versions] == [1]


def test_beginning_a_publish_sweeps_now_and_then(tmp_path: Path) -> None:
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore(), clock=lambda: now[0])
    teacher = repo.tokens.authenticate(repo.tokens.create("teacher"))
    src = write_tree(tmp_path / "c", {"a.txt": b"a lesson"})
    draft = canonical.encode(scan_tree(src, title="C", chunker=Chunker()).draft.to_json())
    old = repo.publishing.begin(teacher, "course", "en", draft)
    now[0] += DRAFT_LIFETIME + SWEEP_EVERY
    repo.publishing.begin(teacher, "course", "en", draft)  # the sweep runs on the way in
    with pytest.raises(NotFoundError):
        repo.publishing.commit(teacher, old.upload_id)
