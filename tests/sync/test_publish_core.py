"""Publishing core: scanning a folder, sending only what the server lacks, dictionaries."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.content import canonical
from satchel.content.chunking import Chunker, ChunkerParams, chunk_id
from satchel.content.errors import FormatError, UsageError
from satchel.content.objects import ZSTD_DICT, decode_object, object_dictionary
from satchel.content.tree import media_type, scan_tree, select_files
from satchel.server.publishing import LocalTarget
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.local import LocalStore
from satchel.sync.pack import PackReader
from satchel.sync.plan import decode_want
from satchel.sync.publish import Publisher, choose_dictionary
from satchel.sync.updater import Updater

from harness.repo import (
    FAST_LEVEL,
    SMALL_CHUNKER,
    RepoFetcher,
    admin_target,
    assert_same_tree,
    publish,
    sample_files,
    served_manifest,
    text_bytes,
    write_tree,
)

DICT_CHUNKER = Chunker(ChunkerParams(min_size=2048, avg_size=8192, max_size=32768))


def text_course(seed: int = 5) -> dict[str, bytes]:
    """About 600 KB of text: enough for the publisher to train a dictionary."""
    rng = random.Random(seed)
    return {f"text/{i:02d}.html": text_bytes(rng, 30_000) for i in range(20)}


class RecordingTarget(LocalTarget):
    """A LocalTarget that keeps the ids of the objects each upload carried."""

    def __init__(self, base: LocalTarget) -> None:
        super().__init__(base.publishing, base.who)
        self.uploads: list[list[tuple[str, bytes]]] = []

    def upload(self, upload_id: str, pack: Iterator[bytes], length: int | None) -> None:
        body = b"".join(pack)
        reader = PackReader()
        frames = reader.feed(body)
        reader.close()
        self.uploads.append([(f.chunk_id, f.obj) for f in frames])
        super().upload(upload_id, iter([body]), length)


def publisher(target: LocalTarget, chunker: Chunker = SMALL_CHUNKER) -> Publisher:
    return Publisher(target, chunker=chunker, level=FAST_LEVEL)


# -- sending only what is missing ----------------------------------------------------------
def test_second_publish_sends_only_changed_chunks(repo: Repository, tmp_path: Path) -> None:
    files = sample_files(7)
    first = publish(repo, write_tree(tmp_path / "v1", files))
    assert first.version == 1
    assert first.objects_uploaded == first.objects_total > 5
    assert first.raw_bytes_uploaded == first.size == sum(map(len, files.values()))

    same = publish(repo, write_tree(tmp_path / "v1-copy", files))
    assert same.version == 2
    assert (same.objects_uploaded, same.raw_bytes_uploaded, same.pack_bytes) == (0, 0, 0)

    files["chapters/01-intro.html"] = files["chapters/01-intro.html"].replace(b" ", b"  ", 1)
    files["new.txt"] = b"a new page\n"
    edited = publish(repo, write_tree(tmp_path / "v2", files))
    assert edited.version == 3
    assert 1 <= edited.objects_uploaded <= 4
    assert edited.raw_bytes_uploaded < first.raw_bytes_uploaded / 4
    m = served_manifest(repo)
    assert (m.version, m.parent_version) == (3, 2)
    assert sorted(f.path for f in m.files) == sorted(files)


def test_progress_reaches_the_total(repo: Repository, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    src = write_tree(tmp_path / "v1", sample_files(1))
    result = publisher(admin_target(repo)).publish(
        src, bundle="course", locale="en", title="C", progress=lambda a, b: seen.append((a, b))
    )
    assert seen and seen[-1] == (result.raw_bytes_uploaded, result.raw_bytes_uploaded)


def test_bad_names_are_refused_before_any_work(repo: Repository, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "v1", {"a": b"a"})
    with pytest.raises(UsageError):
        publisher(admin_target(repo)).publish(src, bundle="Bad Name", locale="en", title="")
    with pytest.raises(UsageError):
        publisher(admin_target(repo)).publish(src, bundle="ok", locale="EN_us", title="")


def test_publish_folder_uses_the_default_chunker(repo: Repository, tmp_path: Path) -> None:
    files = sample_files(2)
    assert (
        repo.publishing.publish_folder(
            write_tree(tmp_path / "src", files), bundle="b", locale="en", title="B"
        )
        == 1
    )
    m = served_manifest(repo, "b", "en")
    assert m.chunker == ChunkerParams()
    store = LocalStore(tmp_path / "client", durable=False)
    Updater(store, RepoFetcher(repo)).sync("b", "en")
    checkout(m, store.objects, tmp_path / "out")
    assert_same_tree(files, tmp_path / "out")


# -- dictionaries --------------------------------------------------------------------------
def test_dictionary_is_trained_then_reused(repo: Repository, tmp_path: Path) -> None:
    files = text_course()
    target = RecordingTarget(admin_target(repo))
    publisher(target, DICT_CHUNKER).publish(
        write_tree(tmp_path / "v1", files), bundle="course", locale="en", title="C"
    )
    m1 = served_manifest(repo)
    assert len(m1.dictionaries) == 1
    dict_id, dict_len = m1.dictionaries[0]
    assert target.uploads[0][0][0] == dict_id  # the new dictionary travels first
    assert any(object_dictionary(obj) == dict_id for _, obj in target.uploads[0][1:])
    assert chunk_id(decode_object(target.fetch_object(dict_id), dict_len)) == dict_id

    # The server now tells the next publish which dictionary the line uses.
    scan = scan_tree(tmp_path / "v1", title="C", chunker=DICT_CHUNKER)
    begin = target.begin("course", "en", canonical.encode(scan.draft.to_json()))
    assert begin.dictionary == (dict_id, dict_len)
    assert decode_want(scan.draft.distinct_chunks(), begin.want) == []

    files["text/03.html"] = (
        files["text/03.html"][:1000] + b"A brand new sentence. " + files["text/03.html"][1000:]
    )
    result = publisher(target, DICT_CHUNKER).publish(
        write_tree(tmp_path / "v2", files), bundle="course", locale="en", title="C"
    )
    m2 = served_manifest(repo)
    assert m2.version == 2 and m2.dictionaries == m1.dictionaries
    assert 1 <= result.objects_uploaded <= 3
    new_objects = [obj for cid, obj in target.uploads[1] if cid != dict_id]
    assert new_objects and all(
        obj[0] != ZSTD_DICT or object_dictionary(obj) == dict_id for obj in new_objects
    )
    assert any(object_dictionary(obj) == dict_id for obj in new_objects)

    # And a client gets a correct tree out of it.
    store = LocalStore(tmp_path / "client", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    checkout(m2, store.objects, tmp_path / "out")
    assert_same_tree(files, tmp_path / "out")


# Found by this suite as a bug (every publish re-sent the line's dictionary); fixed since.
def test_reused_dictionary_is_not_uploaded_again(repo: Repository, tmp_path: Path) -> None:
    files = text_course()
    target = RecordingTarget(admin_target(repo))
    publisher(target, DICT_CHUNKER).publish(
        write_tree(tmp_path / "v1", files), bundle="course", locale="en", title="C"
    )
    dict_id = served_manifest(repo).dictionaries[0][0]
    files["text/03.html"] += b" One more line."
    publisher(target, DICT_CHUNKER).publish(
        write_tree(tmp_path / "v2", files), bundle="course", locale="en", title="C"
    )
    assert dict_id not in [cid for cid, _ in target.uploads[1]]


def test_no_dictionary_for_tiny_or_binary_trees(tmp_path: Path) -> None:
    tiny = scan_tree(
        write_tree(tmp_path / "tiny", sample_files(1)), title="", chunker=SMALL_CHUNKER
    )
    assert choose_dictionary(tiny, tiny.draft.distinct_chunks()) is None
    rng = random.Random(8)
    media = {f"media/{i}.bin": rng.randbytes(200_000) for i in range(4)}
    binary = scan_tree(write_tree(tmp_path / "bin", media), title="", chunker=DICT_CHUNKER)
    assert choose_dictionary(binary, binary.draft.distinct_chunks()) is None
    text = scan_tree(write_tree(tmp_path / "text", text_course()), title="", chunker=DICT_CHUNKER)
    chosen = choose_dictionary(text, text.draft.distinct_chunks())
    assert chosen is not None and chosen[0] == chunk_id(chosen[1])
    # Only what must be uploaded counts: nothing wanted, nothing to train on.
    assert choose_dictionary(text, []) is None


def test_binary_publish_has_no_dictionary(repo: Repository, tmp_path: Path) -> None:
    rng = random.Random(9)
    publish(repo, write_tree(tmp_path / "v1", {"a.bin": rng.randbytes(100_000)}))
    assert served_manifest(repo).dictionaries == ()


# -- scanning ------------------------------------------------------------------------------
def test_scan_records_modes_types_sizes_and_sources(tmp_path: Path) -> None:
    files = {
        "b/run.sh": b"#!/bin/sh\n",
        "a.md": b"# hi\n" * 500,
        "c.png": b"\x89PNG",
        "d.weird": b"?",
        "e": b"",
    }
    root = write_tree(tmp_path / "src", files, {"b/run.sh": 0o700, "a.md": 0o600})
    scan = scan_tree(root, title="T", chunker=SMALL_CHUNKER)
    by_path = {f.path: f for f in scan.draft.files}
    assert [f.path for f in scan.draft.files] == sorted(files)
    assert by_path["b/run.sh"].mode == 0o755
    assert by_path["a.md"].mode == 0o644
    assert by_path["a.md"].media_type == "text/markdown"
    assert by_path["c.png"].media_type == "image/png"
    assert by_path["d.weird"].media_type == "application/octet-stream"
    assert by_path["e"].chunks == () and by_path["e"].size == 0
    assert scan.size == sum(map(len, files.values()))
    for f in scan.draft.files:
        joined = b"".join(scan.sources[c].read() for c, _ in f.chunks)
        assert joined == files[f.path]
    assert scan.draft.title == "T" and scan.draft.chunker == SMALL_CHUNKER.params


def test_media_type_is_machine_independent() -> None:
    assert media_type("x.vtt") == "text/vtt"
    assert media_type("x.webp") == "image/webp"
    assert media_type("noext") == "application/octet-stream"


def test_names_are_normalized_to_nfc(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", {"cafe\u0301.md": b"x"})
    scan = scan_tree(root, title="", chunker=SMALL_CHUNKER)
    assert [f.path for f in scan.draft.files] == ["café.md"]


@pytest.mark.parametrize(
    "names",
    [["A.txt", "a.txt"], ["café.md", "cafe\u0301.md"], ["Docs/x", "docs/X"], ["a", "A/b"]],
)
def test_clashing_names_are_refused(tmp_path: Path, names: list[str]) -> None:
    root = write_tree(tmp_path / "src", {n: b"x" for n in names})
    if len([p for p in root.rglob("*") if p.is_file()]) < len(names):
        pytest.skip("this file system folds these names itself")
    with pytest.raises(UsageError, match="cannot publish"):  # the teacher's folder must change
        scan_tree(root, title="", chunker=SMALL_CHUNKER)


def test_links_are_skipped_and_reported_inside_or_outside(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", {"real.txt": b"real", "sub/a.txt": b"a"})
    (root / "alias.txt").symlink_to(root / "real.txt")  # inside: would be the bytes twice
    (tmp_path / "secret").write_bytes(b"secret")
    (root / "leak.txt").symlink_to(tmp_path / "secret")  # outside: never published
    (root / "loop").symlink_to(root / "sub")  # a folder link: not followed
    (root / "dangling").symlink_to(tmp_path / "nothing")
    (root / "self").symlink_to(root / "self")
    scan = scan_tree(root, title="", chunker=SMALL_CHUNKER)
    assert [f.path for f in scan.draft.files] == ["real.txt", "sub/a.txt"]
    assert sorted((s.path, s.reason) for s in scan.skipped) == [
        ("alias.txt", "link"),
        ("dangling", "link"),
        ("leak.txt", "link"),
        ("loop/", "link"),
        ("self", "link"),
    ]
    assert all(b"secret" not in src.read() for src in scan.sources.values())


def test_special_files_are_skipped_and_reported(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", {"a.txt": b"a"})
    os.mkfifo(root / "pipe")
    selected = select_files(root)
    assert [rel for rel, _ in selected.files] == ["a.txt"]
    assert [(s.path, s.reason) for s in selected.skipped] == [("pipe", "not a regular file")]


def test_scan_of_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        scan_tree(tmp_path / "nope", title="", chunker=SMALL_CHUNKER)


def test_file_changed_during_publish_is_detected(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", {"a.bin": random.Random(1).randbytes(50_000)})
    scan = scan_tree(root, title="", chunker=SMALL_CHUNKER)
    (root / "a.bin").write_bytes(b"short now")
    last = scan.draft.files[0].chunks[-1][0]
    with pytest.raises(FormatError, match="changed"):
        scan.sources[last].read()
