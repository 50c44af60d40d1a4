"""bench/load.py cannot rot: a handful of simulated clients against a real `satchel serve`.

The bench's numbers are not asserted (speed is measured, never tested); what is checked is
that every simulated sync really happened: zero errors, three requests each, the update's
bytes arrived, the ready-made delta route was used by default and the dynamic pack with
``--route dynamic``, and the server's RSS was sampled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import REPO


def run_bench(tmp_path: Path, *extra: str) -> list[dict[str, object]]:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "load.py"),
            "--synthetic",
            "--files",
            "40",
            "--file-size",
            "8000",
            "--json",
            "--keep",
            str(tmp_path / "work"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert "| clients |" in proc.stdout  # the table a person reads
    return rows


@pytest.mark.slow
def test_load_bench_runs_real_syncs(tmp_path: Path) -> None:
    rows = run_bench(tmp_path, "--clients", "5", "--syncs", "2", "--route", "auto,dynamic")
    assert [(r["clients"], r["route"]) for r in rows] == [(5, "auto"), (5, "dynamic")]
    for row in rows:
        assert row["errors"] == 0, row
        assert row["syncs"] == 2 * row["clients"]
        # auto is the updater's choice for a laptop one version behind: the ready-made delta.
        kind = "static" if row["route"] == "auto" else "dynamic"
        assert row["routes"] == {kind: row["syncs"]}
        assert row["requests_per_sync"] == 3.0
        assert isinstance(row["bytes_per_sync"], int) and row["bytes_per_sync"] > 500
        assert isinstance(row["server_peak_rss_mb"], float) and row["server_peak_rss_mb"] > 10
        route = "/v1/deltas/{from_manifest}/{to_manifest}" if kind == "static" else "/v1/pack"
        assert route in row["server_ms"]


def test_load_bench_refuses_unknown_route() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--route", "static"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "--route takes auto, dynamic or auto,dynamic" in proc.stderr
