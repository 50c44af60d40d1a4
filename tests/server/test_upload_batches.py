"""An upload's objects are made durable a batch at a time, and each one's database row is
written only once its bytes are durable (issue 16): never a row for an object a power cut
could lose, and a refused frame keeps what was verified before it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from satchel.content import canonical
from satchel.content.chunking import Chunker
from satchel.content.errors import IntegrityError
from satchel.content.objects import encode_object
from satchel.content.tree import ScannedTree, scan_tree
from satchel.server.db import Chunk
from satchel.server.publishing import UploadReceiver
from satchel.server.repository import Repository
from satchel.sync.pack import PackReader, pack_bytes
from satchel.sync.store import FolderChunkStore

from harness.repo import write_tree


def begin(tmp_path: Path) -> tuple[Repository, UploadReceiver, ScannedTree, list[str]]:
    store = FolderChunkStore(tmp_path / "objects")
    repo = Repository(tmp_path / "srv", store=store)
    rng = random.Random(3)
    src = write_tree(tmp_path / "v1", {f"f{n}.bin": rng.randbytes(9_000) for n in range(4)})
    scan = scan_tree(src, title="Course", chunker=Chunker())
    who = repo.tokens.authenticate(repo.tokens.create("admin", label="tests"))
    begun = repo.publishing.begin(who, "course", "en", canonical.encode(scan.draft.to_json()))
    ids = sorted(cid for cid, _ in scan.draft.distinct_chunks())
    return repo, repo.publishing.receiver(who, begun.upload_id), scan, ids


def recorded(repo: Repository, ids: list[str]) -> list[str]:
    with repo.db.session() as s:
        return [cid for cid in ids if s.get(Chunk, cid) is not None]


def test_rows_are_written_once_the_batch_is_durable(tmp_path: Path) -> None:
    repo, receiver, scan, ids = begin(tmp_path)
    body = pack_bytes((cid, encode_object(scan.sources[cid].read())) for cid in ids)
    receiver.receive(PackReader().feed(body))
    # Verified and written aside, but neither under its id nor in the database yet.
    assert not any(repo.store.has(cid) for cid in ids)
    assert recorded(repo, ids) == []
    receiver.finish()
    assert all(repo.store.has(cid) for cid in ids)
    assert recorded(repo, ids) == ids
    assert receiver.stored == len(ids)


def test_a_refused_frame_keeps_and_records_what_came_before(tmp_path: Path) -> None:
    repo, receiver, scan, ids = begin(tmp_path)
    good, bad = ids[:2], ids[2]
    frames = [(cid, encode_object(scan.sources[cid].read())) for cid in good]
    frames.append((bad, encode_object(scan.sources[ids[3]].read())))  # another chunk's bytes
    with pytest.raises(IntegrityError):
        receiver.receive(PackReader().feed(pack_bytes(frames)))
    assert all(repo.store.has(cid) for cid in good) and not repo.store.has(bad)
    assert recorded(repo, ids) == good


def test_a_chunk_recorded_twice_is_one_row_describing_the_bytes_kept(tmp_path: Path) -> None:
    """Two uploads of the same chunks (a retried publish, or two replicas): the second finds
    the objects stored, and its rows overwrite the first's in place with the same values."""
    repo, first, scan, ids = begin(tmp_path)
    body = pack_bytes((cid, encode_object(scan.sources[cid].read())) for cid in ids)
    first.receive(PackReader().feed(body))
    first.finish()
    who = repo.tokens.authenticate(repo.tokens.create("admin", label="again"))
    again = repo.publishing.begin(who, "course", "en", canonical.encode(scan.draft.to_json()))
    assert again.want.count(0) == len(again.want)  # the server says it has them all
    second = repo.publishing.receiver(who, again.upload_id)
    # Sent anyway, and encoded otherwise (raw): the row keeps describing the stored bytes.
    second.receive(
        PackReader().feed(pack_bytes((cid, b"\x00" + scan.sources[cid].read()) for cid in ids))
    )
    second.finish()
    with repo.db.session() as s:
        rows = {cid: s.get(Chunk, cid) for cid in ids}
    for cid, row in rows.items():
        assert row is not None
        stored = repo.store.get(cid)
        assert (row.stored_size, row.dictionary) == (len(stored), None)
        assert row.length == len(scan.sources[cid].read())
    assert second.stored == len(ids)
