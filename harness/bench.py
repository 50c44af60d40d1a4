"""Shared helpers for bench scripts: corpus location, baselines measured in the same run, the
table, and a process's CPU and memory read from /proc."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import threading
import time
from pathlib import Path

import zstandard

from .paths import CORPUS


def corpus(tree: str) -> Path:
    path = CORPUS / tree
    if not path.is_dir():
        sys.exit(
            f"corpus tree {tree} not found at ../shared/corpus (bench needs the shared corpus)"
        )
    return path


def tar_zstd_size(root: Path, level: int = 19) -> int:
    """Size of ``tar --sort=name -C root . | zstd -LEVEL`` (the single-stream baseline)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    cctx = zstandard.ZstdCompressor(level=level, threads=-1)
    return len(cctx.compress(buf.getvalue()))


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [headers] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# -- processes: CPU and memory from /proc ---------------------------------------------------------
def proc_status(pid: int, field_name: str) -> int:
    """A /proc/PID/status memory field (VmRSS, VmHWM, RssAnon, RssFile...) in bytes; 0 if the
    process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces or parentheses: split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_times(pid: int, *, children: bool = False) -> tuple[float, float]:
    """(user, system) CPU seconds of a running process; with ``children``, plus those of the
    children it has reaped (a forking daemon's connections). (0, 0) if the process is gone."""
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return 0.0, 0.0
    # After the name: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    user, system = int(fields[11]), int(fields[12])
    if children:
        user, system = user + int(fields[13]), system + int(fields[14])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of a running process (see :func:`cpu_times`)."""
    return sum(cpu_times(pid, children=children))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (found by parent PID: this kernel may not offer
    /proc/PID/task/TID/children)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


class MemorySampler:
    """Samples a process's memory every ``interval`` seconds in a thread: VmRSS over time, and
    the peaks of anonymous (RssAnon: heap, buffers) and file-backed (RssFile: mapped libraries,
    page cache of mmapped files) memory apart, each its own maximum. With ``tree``, each sample
    sums the process and its descendants (rsync and casync fork helpers)."""

    def __init__(self, pid: int, interval: float = 0.05, *, tree: bool = False) -> None:
        self.pid = pid
        self.interval = interval
        self.tree = tree
        self.samples: list[tuple[float, int]] = []
        self.peak_anon = 0
        self.peak_file = 0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = process_tree(self.pid) if self.tree else [self.pid]
        rss = anon = file = 0
        for pid in pids:
            rss += proc_status(pid, "VmRSS")
            anon += proc_status(pid, "RssAnon")
            file += proc_status(pid, "RssFile")
        if rss:
            self.samples.append((time.monotonic() - self._t0, rss))
        self.peak_anon = max(self.peak_anon, anon)
        self.peak_file = max(self.peak_file, file)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def tenths(self) -> list[int]:
        """The peak RSS in each tenth of the sampled time (MB)."""
        if not self.samples:
            return []
        end = self.samples[-1][0] or 1.0
        peaks = [0] * 10
        for t, rss in self.samples:
            i = min(int(t / end * 10), 9)
            peaks[i] = max(peaks[i], rss)
        return [round(p / 1e6) for p in peaks]
