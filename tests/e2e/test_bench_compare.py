"""Smoke test of bench/compare.py's helpers (harness/tools.py): what can be checked without the
corpus or rsync/zsync/casync/nginx: --link parsing, the zstd --patch-from floor on tiny trees,
and the table."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from harness import tools
from harness.tools import FLOOR, RSYNC, WHOLE, Link, Result


# -- --link ----------------------------------------------------------------------------------
def test_parse_link_brief_example() -> None:
    link = tools.parse_link("256k/64k/300ms")
    assert link == Link(256_000, 64_000, 0.3)
    assert link.down_rate == 32_000  # bytes/s, what LoopbackProxy takes
    assert link.up_rate == 8_000
    assert link.latency == 0.15  # each way, so a round trip costs 0.3 s
    assert str(link) == "256k/64k/300ms"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2m/512k/0.5s", Link(2_000_000, 512_000, 0.5)),
        ("1M/1M/800ms", Link(1_000_000, 1_000_000, 0.8)),
        ("9600/2400/1", Link(9_600, 2_400, 1.0)),
        ("1.5m/64kbit/20ms", Link(1_500_000, 64_000, 0.02)),
    ],
)
def test_parse_link_units(text: str, expected: Link) -> None:
    assert tools.parse_link(text) == expected


@pytest.mark.parametrize(
    "text", ["256k/64k", "256k/64k/300ms/1", "fast/64k/300ms", "0/64k/300ms", "256k/64k/soon", ""]
)
def test_parse_link_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad"):
        tools.parse_link(text)


def test_model_time_is_bytes_over_bandwidth_plus_three_rtts() -> None:
    link = tools.parse_link("256k/64k/300ms")
    # 32,000 B down at 32,000 B/s + 8,000 B up at 8,000 B/s + 3 x 0.3 s
    assert link.model_time(32_000, 8_000) == pytest.approx(2.9)
    assert link.model_time(0, 0, round_trips=1) == pytest.approx(0.3)


# -- floor -------------------------------------------------------------------------------------
def _tree(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(300)]
    for i in range(6):
        text = " ".join(rng.choice(words) for _ in range(4000))
        path = root / f"module{i}" / "index.cnxml"
        path.parent.mkdir(parents=True)
        path.write_text(text, "utf-8")
    (root / "media").mkdir()
    (root / "media" / "photo.bin").write_bytes(rng.randbytes(50_000))


@pytest.mark.skipif(
    tools.which("zstd") is None or tools.which("tar") is None,
    reason="zstd and GNU tar CLIs are not installed (apt-get install zstd tar)",
)
def test_floor_of_a_small_edit_is_small(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _tree(old, 1)
    _tree(new, 1)
    edited = new / "module3" / "index.cnxml"
    edited.write_text(edited.read_text("utf-8").replace("word7 ", "WORD SEVEN ", 3), "utf-8")
    # Different mtimes must not show in the tars: only content differs.
    os.utime(new / "media" / "photo.bin", (1_700_000_000, 1_700_000_000))
    old_tar = tools.make_tar(old, tmp_path / "old.tar")
    new_tar = tools.make_tar(new, tmp_path / "new.tar")
    again = tools.make_tar(old, tmp_path / "again.tar")
    assert tools.same_file(old_tar, again)
    assert not tools.same_file(old_tar, new_tar)

    floor = tools.patch_floor(old_tar, new_tar, tmp_path / "delta.zst")
    assert (tmp_path / "delta.zst").stat().st_size == floor
    # The whole new tar is > 70 KB of which 50 KB is incompressible; a 3-word edit is not.
    assert 0 < floor < 1_000
    unrelated = tools.patch_floor(again, tools.make_tar(old, tmp_path / "o2.tar"), tmp_path / "z")
    assert unrelated < floor  # identical trees cost less than an edited one


# -- table -------------------------------------------------------------------------------------
def _rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert set(lines[1]) <= {"|", "-"}, "second line is the header rule"
    return [[c.strip() for c in line.strip("|").split("|")] for line in [lines[0], *lines[2:]]]


def _results() -> list[Result]:
    return [
        Result("b v1 -> v2", "satchel", 900, 100, 3, 2.0, own="800 B down", model_seconds=1.6),
        Result("b v1 -> v2", RSYNC, 3_000, 1_000, "stream, 1 conn", 4.0),
        Result("b v1 -> v2", FLOOR, 500),
        Result("a v2 -> v3", "zsync (one tar)", status="not installed (zsync, nginx)"),
        Result("a v2 -> v3", FLOOR, 1_000),
        Result("a v2 -> v3", WHOLE, 50_000),
        Result("a v2 -> v3", "casync 64 KiB avg", 7_000, 500, 19, status="WRONG OUTPUT: x"),
    ]


def test_table_sorted_with_ratios_to_floor_and_rsync() -> None:
    rows = _rows(tools.render(_results()))
    header, body = rows[0], rows[1:]
    assert header[:7] == [
        "pair",
        "tool",
        "bytes (down+up)",
        "down / up",
        "exchanges",
        "x floor",
        "x rsync",
    ]
    assert "time (s)" not in header
    assert [(r[0], r[1].split(" (")[0]) for r in body] == [
        ("a v2 -> v3", "casync 64 KiB avg"),
        ("a v2 -> v3", FLOOR),
        ("a v2 -> v3", WHOLE),
        ("a v2 -> v3", "zsync"),
        ("b v1 -> v2", FLOOR),
        ("b v1 -> v2", RSYNC),
        ("b v1 -> v2", "satchel"),
    ]
    by_tool = {(r[0], r[1]): r for r in body}
    satchel = by_tool[("b v1 -> v2", "satchel")]
    assert satchel[2:7] == ["1,000", "900 / 100", "3", "2.00", "0.25"]
    assert satchel[-1] == "800 B down"
    assert by_tool[("b v1 -> v2", RSYNC)][4:7] == ["stream, 1 conn", "8.00", "1.00"]
    # No rsync row for pair a: no rsync ratio, but the floor ratio is there.
    assert by_tool[("a v2 -> v3", WHOLE)][5:7] == ["50.00", ""]
    # A tool that did not run says why where its bytes would be; a wrong result is flagged.
    missing = next(r for r in body if r[1] == "zsync (one tar)")
    assert missing[2] == "not installed (zsync, nginx)"
    assert missing[5:7] == ["", ""]
    assert by_tool[("a v2 -> v3", "casync 64 KiB avg (WRONG OUTPUT: x)")][2] == "7,500"


def test_table_with_link_adds_time_model_and_idle_round_trips() -> None:
    link = tools.parse_link("256k/64k/300ms")
    rows = _rows(tools.render(_results(), link))
    header = rows[0]
    for column in ("time (s)", "~idle RTTs", "model (s)", "measured / model"):
        assert column in header
    col = {name: i for i, name in enumerate(header)}
    satchel = next(r for r in rows[1:] if r[1] == "satchel")
    assert satchel[col["time (s)"]] == "2.0"
    assert satchel[col["model (s)"]] == "1.6"
    assert satchel[col["measured / model"]] == "1.25"
    # (2.0 s - 900/32,000 - 100/8,000) / 0.3 s
    assert satchel[col["~idle RTTs"]] == f"{(2.0 - 900 / 32_000 - 100 / 8_000) / 0.3:.1f}"
    rsync = next(r for r in rows[1:] if r[1] == RSYNC)
    assert rsync[col["model (s)"]] == ""  # the model is Satchel's target only
    floor = next(r for r in rows[1:] if r[1] == FLOOR)
    assert floor[col["time (s)"]] == ""  # a size, not a transfer
