"""Selective sync: ``--only`` fetches what chosen files, folders or lessons need, and no more.

The selection is kept with the version, later syncs keep it, and widening it fetches only
the rest. Byte counts are exact: a first selective sync has no deltas, so its pack holds
exactly the stored objects the selection needs that the store lacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from satchel.content.errors import UsageError
from satchel.content.lessons import structure
from satchel.content.manifest import Manifest
from satchel.content.paths import CHECKOUT_MARKER
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.fsck import fsck
from satchel.sync.local import LocalStore
from satchel.sync.plan import missing
from satchel.sync.select import needed_objects, normalize, selected_files
from satchel.sync.serving import pack_length
from satchel.sync.status import store_status
from satchel.sync.updater import Updater

from harness.e2e import (
    SatchelServer,
    assert_same_tree,
    checkout_ok,
    run_cli,
    sync_json,
)
from harness.e2e import (
    publish as publish_cli,
)
from harness.paths import CORPUS
from harness.repo import (
    RepoFetcher,
    make_repository,
    publish,
    sample_files,
    served_manifest,
    write_tree,
)

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "intro-stats" / "v2").is_dir(),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2)",
)


def course(seed: int = 0) -> dict[str, bytes]:
    files = sample_files(seed, scale=3)
    files["lessons/a/index.html"] = b"<h1>A</h1>" + files["README.md"]
    files["lessons/b/index.html"] = b"<h1>B</h1>" + bytes(reversed(files["README.md"]))
    files["lessons/b/figure.bin"] = files["media/figure.bin"][::-1]
    return files


def expected_pack(repo: Repository, manifest: Manifest, need: list[tuple[str, int]]) -> int:
    sizes = [len(repo.store.get(cid)) for cid, _ in need]
    return pack_length(sizes)


def test_selectors_match_files_and_folders_and_refuse_nothing(
    repo: Repository, tmp_path: Path
) -> None:
    publish(repo, write_tree(tmp_path / "src", course()))
    manifest = served_manifest(repo)
    paths = lambda sel: [f.path for f in selected_files(manifest, normalize(sel))]  # noqa: E731
    assert paths(["lessons/a"]) == ["lessons/a/index.html"]
    assert paths(["./lessons/b/"]) == ["lessons/b/figure.bin", "lessons/b/index.html"]
    assert paths(["README.md", "lessons/a"]) == ["README.md", "lessons/a/index.html"]
    assert paths(["lessons/a/index"]) == []  # a prefix of a name is not a folder
    with pytest.raises(UsageError, match="matches no file"):
        selected_files(manifest, normalize(["nope"]), strict=True)
    for bad in ["", "/", "  ", "a\x00b"]:
        with pytest.raises(UsageError):
            normalize([bad])


def test_only_fetches_what_the_selection_needs_and_widening_fetches_the_rest(
    repo: Repository, tmp_path: Path
) -> None:
    files = course()
    publish(repo, write_tree(tmp_path / "src", files))
    store = LocalStore(tmp_path / "s", durable=False)
    fetcher = RepoFetcher(repo)
    first = Updater(store, fetcher).sync("course", "en", only=["lessons/a", "README.md"])
    ref = store.ref("course", "en")
    assert ref is not None and ref.only == ("README.md", "lessons/a")
    manifest = store.load_manifest(ref.manifest)
    chosen = selected_files(manifest, ref.only)
    need = needed_objects(manifest, chosen)
    assert first.objects_fetched == len(need)
    assert first.pack_bytes == expected_pack(repo, manifest, need)
    assert not missing(need, store.objects)
    assert missing(manifest.distinct_chunks(), store.objects)  # the rest is not here
    out = tmp_path / "out"
    checkout(manifest, store.objects, out, chosen)
    assert sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name != CHECKOUT_MARKER
    ) == [
        "README.md",
        "lessons/a/index.html",
    ]
    assert fsck(store).clean  # a selective copy is complete for its selection

    # A plain sync keeps the selection and fetches nothing.
    again = Updater(store, fetcher).sync("course", "en")
    assert again.objects_fetched == 0 and store.ref("course", "en").only == ref.only  # type: ignore[union-attr]

    # Widening fetches only what the new selection adds.
    held = set(store.objects)
    wider = Updater(store, fetcher).sync("course", "en", only=["lessons", "README.md"])
    chosen2 = selected_files(manifest, ("README.md", "lessons"))
    need2 = [(c, n) for c, n in needed_objects(manifest, chosen2) if c not in held]
    assert wider.objects_fetched == len(need2) > 0
    assert wider.pack_bytes == expected_pack(repo, manifest, need2)

    everything = Updater(store, fetcher).sync("course", "en", only="all")
    assert not missing(manifest.distinct_chunks(), store.objects)
    assert store.ref("course", "en").only is None  # type: ignore[union-attr]
    total = first.objects_fetched + wider.objects_fetched + everything.objects_fetched
    assert total == len(manifest.distinct_chunks())  # nothing fetched twice


def test_selective_update_uses_deltas_only_against_files_it_holds(
    repo: Repository, tmp_path: Path
) -> None:
    v1 = course()
    publish(repo, write_tree(tmp_path / "v1", v1))
    store = LocalStore(tmp_path / "s", durable=False)
    fetcher = RepoFetcher(repo)
    Updater(store, fetcher).sync("course", "en", only=["lessons/a"])
    v2 = dict(v1)
    v2["lessons/a/index.html"] = v1["lessons/a/index.html"] + b"<p>errata</p>"
    v2["lessons/b/index.html"] = v1["lessons/b/index.html"] + b"<p>more</p>"
    publish(repo, write_tree(tmp_path / "v2", v2))
    result = Updater(store, fetcher).sync("course", "en")
    assert result.version == 2 and result.complete
    ref = store.ref("course", "en")
    assert ref is not None and ref.only == ("lessons/a",)
    manifest = store.load_manifest(ref.manifest)
    out = checkout_dir(store, manifest, ref.only, tmp_path / "out")
    assert (out / "lessons/a/index.html").read_bytes() == v2["lessons/a/index.html"]
    assert not (out / "lessons/b").exists()
    assert fetcher.pack_calls[-1].base is not None  # a delta against the held lesson
    # Widening after the update: the new files' bases are not here, so no base is sent.
    Updater(store, fetcher).sync("course", "en", only=["lessons"])
    assert fetcher.pack_calls[-1].base is None
    out = checkout_dir(store, manifest, ("lessons",), tmp_path / "out2")
    assert (out / "lessons/b/index.html").read_bytes() == v2["lessons/b/index.html"]


def checkout_dir(
    store: LocalStore, manifest: Manifest, only: tuple[str, ...] | None, out: Path
) -> Path:
    checkout(manifest, store.objects, out, selected_files(manifest, only))
    return out


def test_status_shows_what_is_not_on_the_laptop(repo: Repository, tmp_path: Path) -> None:
    files = course()
    publish(repo, write_tree(tmp_path / "src", files))
    store = LocalStore(tmp_path / "s", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en", only=["lessons/a"])
    line = store_status(store).lines[0]
    assert line.only == ("lessons/a",)
    # The lesson, and media/empty.txt: an empty file needs no chunk, so it is always here.
    assert line.files_here == 2 and line.objects_missing == 0
    assert line.bytes_not_here == sum(
        len(v) for k, v in files.items() if k != "lessons/a/index.html"
    )


def test_a_lesson_selector_brings_everything_the_lesson_needs(
    repo: Repository, tmp_path: Path
) -> None:
    files = course()
    files["satchel.toml"] = (
        b'[[lessons]]\ntitle = "Lesson A"\nentry = "lessons/a/index.html"\n'
        b'include = ["media/figure.bin"]\n\n'
        b'[[lessons]]\ntitle = "Lesson B"\nentry = "lessons/b/index.html"\n'
    )
    publish(repo, write_tree(tmp_path / "src", files))
    manifest = served_manifest(repo)
    by = lambda *sel: sorted(f.path for f in selected_files(manifest, normalize(sel)))  # noqa: E731
    assert by("Lesson A") == ["lessons/a/index.html", "media/figure.bin"]
    assert by("1") == by("Lesson A") == by("lessons/a/index.html") == by("lessons/a")
    assert by("2") == ["lessons/b/index.html"]  # as satchel.toml declares it
    assert by("lessons/b") == ["lessons/b/figure.bin", "lessons/b/index.html"]  # + its folder
    store = LocalStore(tmp_path / "s", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en", only=["Lesson A"])
    assert store_status(store).lines[0].files_here == 3  # + the empty file


# -- the CLI over a real server -----------------------------------------------------------------
def test_cli_only_all_status_and_checkout(tmp_path: Path) -> None:
    files = course(4)
    src = write_tree(tmp_path / "src", files)
    with SatchelServer(tmp_path / "srv") as server:
        res = publish_cli(server.url, server.token("teacher"), src, "course")
        assert res.code == 0, res.describe()
        store = tmp_path / "store"
        one = sync_json(server.url, "course", store, "--only", "lessons/b")
        assert one["only"] == ["lessons/b"]
        bad = run_cli(
            "sync", "--server", server.url, "--bundle", "course", "--store", store, "--only", "nope"
        )
        assert bad.code == 2 and "matches no file" in bad.stderr, bad.describe()
        both = run_cli(
            "sync",
            "--server",
            server.url,
            "--bundle",
            "course",
            "--store",
            store,
            "--only",
            "x",
            "--all",
        )
        assert both.code == 2
        status = run_cli("status", "--store", store, "--json")
        line = json.loads(status.stdout)["bundles"][0]
        assert line["only"] == ["lessons/b"] and line["files_here"] == 3  # + the empty file
        out = checkout_ok(store, "course", tmp_path / "out")
        names = sorted(p.name for p in out.rglob("*") if p.is_file() and p.name != CHECKOUT_MARKER)
        assert names == ["figure.bin", "index.html"]
        rest = sync_json(server.url, "course", store, "--all")
        assert rest["only"] is None and rest["chunks_downloaded"] > 0
        assert_same_tree(src, checkout_ok(store, "course", tmp_path / "out-all"))


# -- the real corpus -------------------------------------------------------------------------------
@pytest.mark.corpus
@needs_corpus
def test_corpus_three_lessons_then_widen(tmp_path: Path) -> None:
    """intro-stats v2: three lessons (modules with their figures) fetch only their data;
    three more lessons fetch only theirs."""
    repo = make_repository(tmp_path / "srv")
    tree = CORPUS / "intro-stats" / "v2"
    publish(repo, tree, bundle="intro-stats")
    lessons = structure(served_manifest(repo, "intro-stats")).lessons
    assert len(lessons) == 102
    store = LocalStore(tmp_path / "s", durable=False)
    fetcher = RepoFetcher(repo)
    first3 = [lesson.title for lesson in lessons[:3]]
    got = Updater(store, fetcher).sync("intro-stats", "en", only=first3)
    ref = store.ref("intro-stats", "en")
    assert ref is not None
    manifest = store.load_manifest(ref.manifest)
    chosen = selected_files(manifest, ref.only)
    assert {f.path for f in chosen} == {p for lesson in lessons[:3] for p in lesson.paths}
    assert any(f.path.startswith("media/") for f in chosen)  # their figures come along
    need = needed_objects(manifest, chosen)
    assert got.objects_fetched == len(need)
    assert got.pack_bytes == expected_pack(repo, manifest, need)
    everything = pack_length(len(repo.store.get(c)) for c, _ in manifest.distinct_chunks())
    assert got.pack_bytes < everything / 10  # three of 102 lessons
    out = checkout_dir(store, manifest, ref.only, tmp_path / "out")
    for entry in chosen:
        assert (out / entry.path).read_bytes() == (tree / entry.path).read_bytes()
    held = set(store.objects)
    six = first3 + [lesson.title for lesson in lessons[3:6]]
    wider = Updater(store, fetcher).sync("intro-stats", "en", only=six)
    need2 = [
        (c, n)
        for c, n in needed_objects(manifest, selected_files(manifest, normalize(six)))
        if c not in held
    ]
    assert wider.objects_fetched == len(need2) > 0
    assert wider.pack_bytes == expected_pack(repo, manifest, need2)
