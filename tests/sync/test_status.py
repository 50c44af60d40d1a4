"""satchel status: what a store holds, read offline."""

from __future__ import annotations

import json
from pathlib import Path

from satchel.cli import app
from satchel.server.repository import Repository
from satchel.sync.local import LocalStore
from satchel.sync.status import store_status
from satchel.sync.store import MemoryChunkStore
from satchel.sync.updater import Updater
from typer.testing import CliRunner

from harness.repo import RepoFetcher, index_entry, publish, sample_files, write_tree


def two_versions(tmp_path: Path) -> tuple[Repository, LocalStore, RepoFetcher, Path]:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    src = write_tree(tmp_path / "src", sample_files(4, scale=2))
    publish(repo, src)
    store = LocalStore(tmp_path / "client", durable=False)
    fetcher = RepoFetcher(repo)
    Updater(store, fetcher).sync("course", "en")
    return repo, store, fetcher, src


def test_a_synced_store_is_complete_with_nothing_pending(tmp_path: Path) -> None:
    _repo, store, _f, _src = two_versions(tmp_path)
    report = store_status(store)
    (line,) = report.lines
    assert (line.bundle, line.locale, line.version, line.versions) == ("course", "en", 1, (1,))
    assert line.objects_missing == 0 and line.pending_version is None
    assert line.size == sum(p.stat().st_size for p in (tmp_path / "src").rglob("*") if p.is_file())
    assert report.objects == len(list(store.objects))
    assert report.stored_bytes == sum(store.objects.stored_size(c) for c in store.objects)


def test_a_sync_stopped_by_its_budget_leaves_the_update_pending(tmp_path: Path) -> None:
    repo, store, fetcher, src = two_versions(tmp_path)
    write_tree(src, {**sample_files(5, scale=2)})
    publish(repo, src)
    result = Updater(store, fetcher).sync("course", "en", max_bytes=1)
    assert not result.complete
    (line,) = store_status(store).lines
    assert (line.version, line.pending_version) == (1, 2)


def test_a_cut_update_says_how_much_of_it_is_here(tmp_path: Path) -> None:
    repo, store, fetcher, src = two_versions(tmp_path)
    write_tree(src, {**sample_files(6, scale=4)})
    publish(repo, src)
    Updater(store, fetcher).sync("course", "en", max_bytes=20_000)  # stops partway
    (line,) = store_status(store).lines
    manifest = store.load_manifest(index_entry(repo, "course", "en").manifest)
    needed = manifest.distinct_chunks()
    here = sum(1 for cid, _ in needed if store.objects.has(cid))
    assert 0 < here < len(needed)
    assert (line.pending_here, line.pending_objects) == (here, len(needed))
    r = CliRunner().invoke(app, ["status", "--store", str(store.root)])
    assert f"version 2 pending ({here:,} of {len(needed):,} objects here)" in r.output


def test_a_cut_first_download_is_listed_with_its_progress(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    publish(repo, write_tree(tmp_path / "src", sample_files(7, scale=4)))
    store = LocalStore(tmp_path / "client", durable=False)
    result = Updater(store, RepoFetcher(repo)).sync("course", "en", max_bytes=20_000)
    assert not result.complete and store.ref("course", "en") is None
    report = store_status(store)
    assert report.lines == ()
    (started,) = report.downloading
    assert (started.bundle, started.locale, started.version) == ("course", "en", 1)
    assert 0 < started.objects_here < started.objects
    assert started.objects_here == len(list(store.objects))
    r = CliRunner().invoke(app, ["status", "--store", str(store.root), "--json"])
    assert json.loads(r.stdout)["downloading"][0]["objects_here"] == started.objects_here
    r = CliRunner().invoke(app, ["status", "--store", str(store.root)])
    assert f"{started.objects_here:,} of {started.objects:,} objects here" in r.output


def test_missing_objects_are_counted(tmp_path: Path) -> None:
    _repo, store, _f, _src = two_versions(tmp_path)
    ref = store.ref("course", "en")
    assert ref is not None
    gone = store.load_manifest(ref.manifest).distinct_chunks()[0][0]
    store.objects.delete(gone)
    (line,) = store_status(store).lines
    assert line.objects_missing == 1


def test_the_command_prints_text_and_json_and_refuses_a_non_store(tmp_path: Path) -> None:
    _repo, store, _f, _src = two_versions(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["status", "--store", str(store.root)])
    assert r.exit_code == 0, r.output
    # "versions kept: 1" cannot be read as "3 versions kept", as "(kept: 3)" could.
    assert "course/en version 1 (versions kept: 1):" in r.output and "complete" in r.output
    r = runner.invoke(app, ["status", "--store", str(store.root), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [b["version"] for b in doc["bundles"]] == [1]
    assert doc["publisher"] == store.pinned_key().fingerprint  # type: ignore[union-attr]
    r = runner.invoke(app, ["status", "--store", str(tmp_path / "nothing-here")])
    assert r.exit_code == 2
    assert not (tmp_path / "nothing-here").exists()  # status never creates a store
