"""Optional py-spy profiles of the processes a bench measures: attach, record, summarise.

py-spy is a tool, not a dependency of the project: install it into the venv by hand
(``.venv/bin/pip install py-spy``). It attaches to a running process by PID and samples it
from outside (``--nonblocking``: the process is never paused), so the CPU a bench reads for
that process stays its own. Profiles are py-spy's collapsed stacks (``--format raw``: one line
per distinct stack, ``frame;frame;...;frame COUNT``), which flame-graph tools read as they are;
:func:`summary` lists the functions holding most samples, by own time and by total time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODES: dict[str, list[str]] = {"active": [], "idle": ["--idle"], "gil": ["--gil"]}
# Satchel's own packages as py-spy names their files (paths relative to the repository).
OWN_PACKAGES = ("content/", "sync/", "server/", "clients/")
# "function (path/to/file.py:123)" -> ("function", "path/to/file.py")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """py-spy beside the running interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


@dataclass(frozen=True)
class Recorder:
    """Records every process handed to :meth:`attach` into ``out/NAME.txt``.

    ``mode``: ``active`` samples running threads (py-spy's default; a thread blocked in a
    system call such as ``fsync`` still counts as running); ``idle`` also samples waiting
    threads (on a socket, a lock), so the profile shows where wall time goes; ``gil`` samples
    only the thread holding the GIL, the nearest py-spy gets to Python's own CPU time."""

    out: Path
    mode: str = "active"
    rate: int = 100

    @contextlib.contextmanager
    def attach(self, pid: int, name: str) -> Iterator[Path]:
        """Samples ``pid`` until the block ends (or the process exits); yields the file."""
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{name}.txt"
        args = [binary, "record", "--pid", str(pid), "--format", "raw", "--output", str(path)]
        args += ["--rate", str(self.rate), "--nonblocking", "--subprocesses"]
        if self.mode not in MODES:
            raise ValueError(f"profile mode {self.mode!r} is not one of {', '.join(MODES)}")
        args += MODES[self.mode]
        _wait_for_python(pid)
        with open(self.out / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield path
        finally:
            # py-spy writes its file when the target exits or on SIGINT.
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_python(pid: int, timeout: float = 5.0) -> None:
    """py-spy cannot attach before the interpreter has started: wait until the process runs
    python and has loaded more than a few modules' worth of memory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            return  # gone already: nothing to record
        if "python" in Path(exe).name and ".so" in maps:
            return
        time.sleep(0.01)


def _key(frame: str, *, line: bool = False) -> str:
    """``function (package/file.py)``, with ``:LINE`` when ``line``: site-packages and
    standard-library paths shortened to the package's own."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    where = frame.strip().rsplit(":", 1)[1].rstrip(")") if line and ":" in frame else ""
    return f"{match.group('func')} ({file}{':' + where if where.isdigit() else ''})"


def _ours(frame: str) -> bool:
    return any(f"({package}" in frame for package in OWN_PACKAGES)


def summary(path: Path, top: int = 15) -> str:
    """The ``top`` lines by own samples (where the time is spent, native calls such as
    ``os.fsync`` or zstd included in the line that makes them) and functions by total samples
    (the function is anywhere on the stack), each with its share of all samples in the file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for text in path.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[_key(frames[-1], line=True)] += count
        for frame in {_key(f) for f in frames}:
            if _ours(frame):
                total[frame] += count
    if not samples:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {samples:,} samples"]
    titles = ("own time, by line", "total time, by Satchel function")
    for title, counter in zip(titles, (own, total), strict=True):
        lines.append(f"  {title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"    {100 * count / samples:5.1f}%  {frame}")
    return "\n".join(lines)
