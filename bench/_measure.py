"""One whole process measured: wall time, user and system CPU, peak anonymous and file-backed
memory; and a server's CPU and peak memory over one step of a bench."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.bench import MemorySampler, cpu_times, process_tree
from harness.profile import Recorder


@dataclass
class Usage:
    """One process's (or process tree's) cost during a step."""

    cpu: float  # user + system seconds
    peak_anon: int
    peak_file: int
    system: float = 0.0  # the system (kernel) part of ``cpu``: writes, fsyncs, sockets


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    wall: float
    usage: Usage

    def check(self, what: str) -> Ran:
        if self.code != 0:
            tail = " / ".join(self.stderr.strip().splitlines()[-2:])
            raise RuntimeError(f"{what} exited {self.code}: {tail[:200]}")
        return self


class StepTimeout(RuntimeError):
    pass


ENV = dict(os.environ, NO_COLOR="1", TERM="dumb", COLUMNS="200", PYTHONUNBUFFERED="1")


def run_measured(
    args: Sequence[object],
    logs: Path,
    *,
    timeout: float,
    tree: bool = False,
    profile: tuple[Recorder, str] | None = None,
) -> Ran:
    """Runs a command to completion on its own: wall time from start to exit, CPU from
    ``wait4`` (its reaped helpers included), peak memory sampled meanwhile. Stopped by PID
    (SIGTERM, then SIGKILL) after ``timeout`` seconds, raising :class:`StepTimeout`."""
    logs.mkdir(parents=True, exist_ok=True)
    name = Path(str(args[0])).name + "-" + str(args[1] if len(args) > 1 else "")
    out_path, err_path = (logs / f"{name}.{k}.{time.monotonic_ns()}" for k in ("out", "err"))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(a) for a in args], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=ENV
        )
    reaped = False
    try:
        with contextlib.ExitStack() as stack:
            memory = stack.enter_context(MemorySampler(proc.pid, tree=tree))
            if profile is not None:
                stack.enter_context(profile[0].attach(proc.pid, profile[1]))
            deadline = started + timeout
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    reaped = True
                    break
                if time.monotonic() > deadline:
                    raise StepTimeout(f"did not finish in {timeout:.0f} s")
                time.sleep(0.01)
    finally:
        if not reaped:  # timed out, or the bench itself was interrupted
            _kill(proc.pid)
            proc.returncode = -9
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    usage = Usage(
        rusage.ru_utime + rusage.ru_stime, memory.peak_anon, memory.peak_file, rusage.ru_stime
    )
    return Ran(
        proc.returncode,
        out_path.read_text("utf-8", "replace"),
        err_path.read_text("utf-8", "replace"),
        wall,
        usage,
    )


def _kill(pid: int) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 30.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if os.wait4(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)


class Watch:
    """A server's CPU and peak memory over one step (its reaped children included)."""

    def __init__(self, pid: int, *, tree: bool = False) -> None:
        self.pid = pid
        self.tree = tree
        self.usage: Usage | None = None

    @contextlib.contextmanager
    def during(self) -> Iterator[Watch]:
        user0, system0 = cpu_times(self.pid, children=True)
        with MemorySampler(self.pid, tree=self.tree) as memory:
            yield self
            # A forking daemon reaps its connection's process just after the client leaves.
            deadline = time.monotonic() + 3.0
            while self.tree and len(process_tree(self.pid)) > 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        user, system = cpu_times(self.pid, children=True)
        cpu = user - user0 + system - system0
        self.usage = Usage(cpu, memory.peak_anon, memory.peak_file, system - system0)
