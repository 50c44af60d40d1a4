"""bench/scale.py cannot rot: its data, its measuring of processes, its profiles and one tiny
end-to-end run against real tools.

Numbers are never asserted (speed is measured, not tested). What is checked: the generated
data is reproducible and has the character it claims (video incompressible, pages
compressible text), the /proc sampling tells anonymous from file-backed memory and finds a
process's children, py-spy's collapsed stacks are summarised as counted, and a whole run of
every step ends with every row measured, the checkout equal to the tree and the table printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from harness import tools
from harness.bench import MemorySampler, cpu_times, process_tree
from harness.profile import summary
from harness.trees import (
    PAGE_BYTES,
    PageWriter,
    insert_sentence,
    keystream,
    make_pages,
    make_video,
    page_counts,
    page_path,
    patch_video,
    tree_mismatch,
)

REPO = Path(__file__).resolve().parents[2]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# -- data --------------------------------------------------------------------------------------
def test_keystream_is_reproducible_incompressible_and_keyed() -> None:
    a = keystream(7, "lecture-01.mp4")(3 * (1 << 20) + 5)
    b = keystream(7, "lecture-01.mp4")(3 * (1 << 20) + 5)
    assert a == b and len(a) == 3 * (1 << 20) + 5
    assert keystream(8, "lecture-01.mp4")(4096) != a[:4096]
    assert keystream(7, "lecture-02.mp4")(4096) != a[:4096]
    compressed = zstandard.ZstdCompressor(level=3).compress(a)
    assert len(compressed) > 0.99 * len(a)


def test_video_has_the_asked_size_and_one_patch_changes_one_mib(tmp_path: Path) -> None:
    gib = 0.01
    make_video(tmp_path / "one", gib, seed=3)
    make_video(tmp_path / "two", gib, seed=3)
    files = _tree_bytes(tmp_path / "one")
    assert files == _tree_bytes(tmp_path / "two")
    assert sum(len(v) for v in files.values()) == int(gib * (1 << 30))
    name = sorted(files)[0]
    patch_video(tmp_path / "one" / name, seed=3)
    after = (tmp_path / "one" / name).read_bytes()
    assert len(after) == len(files[name])
    changed = sum(1 for x, y in zip(after, files[name], strict=True) if x != y)
    assert 0.99 * (1 << 20) < changed <= 1 << 20


def test_pages_are_reproducible_compressible_lesson_html(tmp_path: Path) -> None:
    count = 120
    make_pages(tmp_path / "one", count, seed=5)
    make_pages(tmp_path / "two", count, seed=5)
    make_pages(tmp_path / "other", count, seed=6)
    pages = _tree_bytes(tmp_path / "one")
    assert pages == _tree_bytes(tmp_path / "two")
    assert pages != _tree_bytes(tmp_path / "other")
    assert sorted(pages) == sorted(page_path(i) for i in range(count))
    assert len(set(pages.values())) == count  # every page its own text
    blob = b"".join(pages.values())
    assert len(zstandard.ZstdCompressor(level=3).compress(blob)) < 0.5 * len(blob)
    for data in pages.values():
        text = data.decode("utf-8")
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
        assert "<h1>" in text and "Check your understanding" in text


def test_page_sizes_average_the_issue_figure() -> None:
    writer = PageWriter(seed=11)
    sizes = [len(writer.page(1, 1, i % 10 + 1).encode()) for i in range(2000)]
    mean = sum(sizes) / len(sizes)
    assert 0.9 * PAGE_BYTES < mean < 1.1 * PAGE_BYTES
    assert min(sizes) < 0.5 * PAGE_BYTES < 2 * PAGE_BYTES < max(sizes)  # varied, not uniform


def test_page_paths_are_ten_a_lesson_and_a_hundred_lessons_a_unit() -> None:
    assert page_path(0) == "unit-001/lesson-001/page-01.html"
    assert page_path(9) == "unit-001/lesson-001/page-10.html"
    assert page_path(10) == "unit-001/lesson-002/page-01.html"
    assert page_path(999) == "unit-001/lesson-100/page-10.html"
    assert page_path(1000) == "unit-002/lesson-001/page-01.html"
    assert len({page_path(i) for i in range(100_000)}) == 100_000


def test_one_sentence_edit_and_tree_comparison(tmp_path: Path) -> None:
    make_pages(tmp_path / "a", 20, seed=1)
    make_pages(tmp_path / "b", 20, seed=1)
    assert tree_mismatch(tmp_path / "a", tmp_path / "b") == ""
    (tmp_path / "b" / ".satchel-checkout.json").write_text("{}", "utf-8")  # a checkout's marker
    assert tree_mismatch(tmp_path / "a", tmp_path / "b") == ""
    target = tmp_path / "b" / page_path(10)
    before = target.read_bytes()
    insert_sentence(target)
    after = target.read_bytes()
    assert len(after) > len(before) and after.count(b"A corrected sentence") == 1
    assert "WRONG OUTPUT" in tree_mismatch(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "extra.html").write_text("x", "utf-8")
    assert "files differ" in tree_mismatch(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000,10000", (1000, 10000)), ("100_000", (100_000,)), ("0", ()), ("5,0,7", (5, 7))],
)
def test_pagepage_counts(text: str, expected: tuple[int, ...]) -> None:
    assert page_counts(text) == expected


@pytest.mark.parametrize("text", ["ten", "1,x", "-5"])
def test_page_counts_refuse_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        page_counts(text)


# -- processes -----------------------------------------------------------------------------------
_ALLOCATE = """
import mmap, sys, time
path, anon_mb, file_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = bytearray(anon_mb << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    total = sum(m[i] for i in range(0, file_mb << 20, 4096))
print("ready", flush=True)
sys.stdin.readline()
"""


def test_memory_sampler_tells_anonymous_from_file_backed(tmp_path: Path) -> None:
    anon_mb, file_mb = 80, 40
    mapped = tmp_path / "mapped.bin"
    mapped.write_bytes(b"\1" * (file_mb << 20))
    proc = subprocess.Popen(
        [sys.executable, "-c", _ALLOCATE, str(mapped), str(anon_mb), str(file_mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        sampler = MemorySampler(proc.pid)
        sampler.sample()
        assert sampler.peak_anon >= anon_mb << 20
        assert sampler.peak_file >= file_mb << 20
        # Neither peak holds the other's megabytes (the interpreter itself needs some of both).
        assert sampler.peak_anon < (anon_mb + file_mb) << 20
        assert sampler.peak_file < (anon_mb + file_mb) << 20
        assert sampler.samples and sampler.samples[-1][1] >= (anon_mb + file_mb) << 20
    finally:
        proc.communicate("\n", timeout=30)


def test_process_tree_and_cpu_of_reaped_children() -> None:
    # A parent that runs a busy child to its end (reaping it), then waits to be asked.
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print(child.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "child.kill(); child.wait()\n"
        "subprocess.run([sys.executable, '-c', 'sum(i * i for i in range(3_000_000))'])\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert process_tree(proc.pid) == [proc.pid, child]
        own_before = cpu_times(proc.pid)
        with_children_before = cpu_times(proc.pid, children=True)
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        assert process_tree(proc.pid) == [proc.pid]
        own = sum(cpu_times(proc.pid)) - sum(own_before)
        with_children = sum(cpu_times(proc.pid, children=True)) - sum(with_children_before)
        assert with_children > own  # the reaped child's CPU is counted with children only
    finally:
        proc.communicate("\n", timeout=30)
    assert cpu_times(proc.pid) == (0.0, 0.0)  # gone: nothing to read


def test_sampler_thread_runs_until_the_block_ends() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        with MemorySampler(proc.pid, interval=0.01) as sampler:
            while len(sampler.samples) < 3:
                time.sleep(0.01)
        count = len(sampler.samples)
        time.sleep(0.05)
        assert len(sampler.samples) == count
        assert len(sampler.tenths()) == 10
    finally:
        proc.kill()
        proc.wait()


# -- profiles ------------------------------------------------------------------------------------
def test_summary_counts_own_lines_and_satchel_functions(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        'process 1:"satchel sync";main (clients/cli.py:10);put (sync/store.py:144) 30\n'
        'process 1:"satchel sync";main (clients/cli.py:10);put (sync/store.py:140) 10\n'
        'process 1:"satchel sync";main (clients/cli.py:12);select (selectors.py:468) 60\n'
        "garbage line\n",
        "utf-8",
    )
    text = summary(raw)
    assert "p.txt: 100 samples" in text
    assert " 60.0%  select (selectors.py:468)" in text
    assert " 30.0%  put (sync/store.py:144)" in text
    assert " 10.0%  put (sync/store.py:140)" in text
    total = text.split("total time")[1]
    assert "100.0%  main (clients/cli.py)" in total
    assert " 40.0%  put (sync/store.py)" in total
    assert "selectors" not in total  # only Satchel's own functions


def test_summary_of_an_empty_profile(tmp_path: Path) -> None:
    raw = tmp_path / "empty.txt"
    raw.write_text("", "utf-8")
    assert summary(raw) == "empty.txt: no samples"


# -- one whole run -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(
    tools.missing(["casync", "rsync", "cp"]) != [],
    reason="casync and rsync are not installed (apt-get install casync rsync)",
)
def test_tiny_run_measures_every_step(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "scale.py"),
            "--no-corpus",
            "--video-gib",
            "0.01",
            "--pages",
            "30",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| data " in proc.stdout and "| files " in proc.stdout  # both tables
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert {r["data"] for r in rows} == {"video 0.01 GiB", "pages 30"}
    works = ["publish", "first sync", "export", "import", "update: publish", "update: sync"]
    for data in ("video 0.01 GiB", "pages 30"):
        mine = {r["work"]: r for r in rows if r["data"] == data and r["tool"] == "satchel"}
        peers = {r["work"]: r for r in rows if r["data"] == data and r["tool"] != "satchel"}
        assert set(mine) == {*works, "status", "view: contents", "checkout", "gc"}
        assert set(peers) == {*works, "checkout"}
        contents = mine.pop("view: contents")  # a request's time, not a process's CPU
        assert contents["wall"] > 0 and contents["status"].startswith("warm "), contents
        assert int(contents["status"].split(", ")[-1].split()[0]) >= 1, contents  # items
        for row in [*mine.values(), *peers.values()]:
            assert row["wall"] > 0 and row["client"]["cpu"] >= 0, row
            assert not row["status"].startswith(("failed", "not measured", "WRONG")), row
        for row in mine.values():  # a peer's copy of a tiny tree may end before a sample
            assert row["client"]["peak_anon"] > 0 and row["client"]["peak_file"] > 0, row
        for work in ("publish", "first sync", "update: publish", "update: sync"):
            assert mine[work]["server"]["cpu"] > 0 and mine[work]["server"]["peak_anon"] > 0
        assert mine["checkout"]["status"] == "same tree"
        assert mine["update: sync"]["wire"] > 0 and peers["update: sync"]["wire"] > 0
        assert mine["update: sync"]["status"].startswith("3 requests")
    # Everything written is removed; the --workdir itself stays, as it was given.
    assert list((tmp_path / "work").iterdir()) == []
