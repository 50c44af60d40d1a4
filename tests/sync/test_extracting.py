"""Text of many pages in worker processes: the same texts, in the same order, as one process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from satchel.content.text import Kind, PageText, extract_text
from satchel.sync import extracting, search
from satchel.sync.extracting import extract_texts
from satchel.sync.local import LocalStore
from satchel.sync.search import INDEX_NAME, update_search_index

from harness.repo import make_repository, publish, write_tree

from .test_search import COURSE, found, md, sync


def pages(n: int) -> list[tuple[bytes, Kind]]:
    """Pages of every kind, some broken, each with a word of its own."""
    out: list[tuple[bytes, Kind]] = []
    for i in range(n):
        if i % 3 == 0:
            out.append((md(f"Lesson {i}", f"word{i} and more text " * 20), "markdown"))
        elif i % 3 == 1:
            body = f"<title>Page {i}</title><h1>Head {i}</h1><p>word{i} <b>bold</b>"
            out.append((body.encode() + (b"</p>" if i % 2 else b"<div><<"), "html"))
        else:
            out.append(
                (
                    b'<document xmlns="http://cnx.rice.edu/cnxml"><title>Module '
                    + str(i).encode()
                    + b"</title><content><para>word"
                    + str(i).encode()
                    + b"</para></content></document>",
                    "cnxml",
                )
            )
    return out


def inline(items: list[tuple[bytes, Kind]]) -> list[PageText]:
    return [extract_text(data, kind) for data, kind in items]


def test_workers_give_every_text_in_order_in_several_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(extracting, "BATCH_PAGES", 7)  # 60 pages: 9 batches, 4 in flight
    items = pages(60)
    got = list(extract_texts(range(60), lambda i: items[i], count=60, workers=2, parallel_from=1))
    assert [i for i, _ in got] == list(range(60))
    assert [text for _, text in got] == inline(items)
    assert all(f"word{i}" in text.body for i, text in got)


def test_pages_the_reader_leaves_out_are_left_out_in_both_ways() -> None:
    items = pages(30)

    def read(i: int) -> tuple[bytes, Kind] | None:
        return None if i % 4 == 0 else items[i]

    kept = [i for i in range(30) if i % 4]
    for parallel_from in (1, 10_000):  # workers, then this process
        got = list(extract_texts(range(30), read, count=30, workers=2, parallel_from=parallel_from))
        assert [i for i, _ in got] == kept
        assert [text for _, text in got] == [inline([items[i]])[0] for i in kept]


def test_few_pages_or_one_core_never_start_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(extracting, "ProcessPoolExecutor", no_pool)
    items = pages(12)
    for workers, count in ((1, 12), (4, 11)):
        got = extract_texts(
            range(12), lambda i: items[i], count=count, workers=workers, parallel_from=12
        )
        assert [text for _, text in got] == inline(items)


def test_workers_killed_midway_cost_speed_not_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extracting, "BATCH_PAGES", 4)
    items = pages(80)
    killed: list[int] = []

    def read(i: int) -> tuple[bytes, Kind]:
        if i == 40:  # half way: every worker dies, as under the out-of-memory killer
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
                killed.append(child.pid or 0)
        return items[i]

    got = list(extract_texts(range(80), read, count=80, workers=2, parallel_from=1))
    assert killed, "no worker was running to kill"
    assert [i for i, _ in got] == list(range(80))
    assert [text for _, text in got] == inline(items)


def test_an_index_built_by_workers_is_the_one_built_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = dict(COURSE)
    files.update({f"more/p{i}.md": md(f"More {i}", f"extra{i} text") for i in range(20)})
    files["copy/index.md"] = files["stats/index.md"]  # one content at two paths
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", files), title="Course")

    def build(name: str, parallel_from: int) -> list[tuple[object, ...]]:
        store = LocalStore(tmp_path / name, durable=False)
        sync(repo, store)
        monkeypatch.setattr(extracting, "PARALLEL_FROM", parallel_from)
        result = update_search_index(store)
        assert (result.files_indexed, result.files_reused) == (27, 1)
        assert sorted(found(store, "sample")) == ["copy/index.md", "stats/index.md"]
        assert found(store, "extra7") == ["more/p7.md"]
        with closing(sqlite3.connect(store.root / INDEX_NAME)) as db:
            return sorted(
                db.execute(
                    "SELECT d.key, d.text_bytes, t.title, t.headings, t.body"
                    " FROM docs d JOIN docs_text t ON t.rowid = d.id"
                ).fetchall()
            )

    assert search.extract_texts is extract_texts
    assert build("here", 10_000) == build("workers", 1)
