"""End-to-end helpers: a real ``satchel serve`` subprocess, CLI runs, and tree comparison.

Nothing here talks to the server in-process: the server is the installed ``satchel`` console
script under uvicorn, and every client action is the same script run as a subprocess, so
tests see exactly what a person at a terminal sees (stdout, stderr, exit code).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self

import httpx
from satchel.content.paths import CHECKOUT_MARKER

SATCHEL = Path(sys.executable).parent / "satchel"
"""The venv's console script: what users run."""

DEFAULT_TIMEOUT = 120.0


class CliResult(NamedTuple):
    code: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        """Non-empty stderr lines (a failed command should print exactly one)."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Plain, stable output: no colour codes, no terminal-width wrapping by rich.
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_cli(
    *args: object,
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run ``satchel ARGS...`` (``env``: extra variables); returns (exit code, stdout, stderr).
    Raises on timeout."""
    proc = subprocess.run(
        [str(SATCHEL), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        cwd=cwd,
        env=_env(env),
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """Poll ``url``/healthz until it answers 200 with status ok, the process exits, or time runs
    out (a proxy in front of the server answers with the server's body)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            r = httpx.get(f"{url}/healthz", timeout=2.0)
            if r.status_code == 200 and r.json().get("status") == "ok":
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.05)
    return False


@contextmanager
def satchel_process(*args: object, log: Path, timeout: float = 30.0) -> Iterator[str]:
    """``satchel ARGS --port P`` (``view``, ``share``...) on a free port of 127.0.0.1, its
    output in ``log``: yields its URL once ``/healthz`` answers, and stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(SATCHEL), *(str(a) for a in args), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        if not wait_healthy(proc, url, timeout):
            raise AssertionError(f"satchel {args[0]} did not start:\n{log.read_text()}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class SatchelServer:
    """``satchel serve`` on 127.0.0.1 and a free port, as a subprocess.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). The server's stderr goes
    to ``DATA.serve.log`` beside the data folder, so a failing start can say why.
    """

    def __init__(
        self,
        data: Path,
        *,
        sample: bool = False,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = data
        self.sample = sample
        self.extra = extra
        self.env = env  # extra environment, e.g. AWS_* for --storage s3://
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data.parent / f"{data.name}.serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        if self.proc is not None:
            raise RuntimeError("server already started")
        for _attempt in range(3):  # another process may grab the free port in between
            self.port = free_port()
            args = self._command()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    args,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=_env(self.env),
                )
            try:
                healthy = self._wait_healthy(timeout)
            except BaseException:  # e.g. Ctrl-C while waiting: never leave a server behind
                self.stop()
                raise
            if healthy:
                return self
            self.stop()
        raise RuntimeError(f"satchel serve did not become healthy; log:\n{self.log()}")

    def _command(self) -> list[str]:
        args = [str(SATCHEL), "serve", "--data", str(self.data), "--port", str(self.port)]
        if self.sample:
            args.append("--sample")
        return [*args, *self.extra]

    def _wait_healthy(self, timeout: float) -> bool:
        assert self.proc is not None
        return wait_healthy(self.proc, self.url, timeout)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate (SIGTERM), then kill if it has not exited within ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- conveniences over the CLI ------------------------------------------------------
    def token(self, role: str = "teacher", *extra: str) -> str:
        res = run_cli("token", "create", "--data", self.data, "--role", role, *extra, env=self.env)
        if res.code != 0:
            raise RuntimeError(f"token create failed: {res.describe()}")
        return res.stdout.strip()

    def fingerprint(self) -> str:
        return str(httpx.get(f"{self.url}/v1/key", timeout=10).json()["fingerprint"])


class SatchelRelay(SatchelServer):
    """``satchel share`` of a local store on 127.0.0.1 and a free port (no mDNS)."""

    def _command(self) -> list[str]:
        return [
            str(SATCHEL),
            "share",
            "--store",
            str(self.data),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-announce",
            *self.extra,
        ]


# -- client actions --------------------------------------------------------------------------
def publish(server: str, token: str, src: Path, bundle: str, *extra: object) -> CliResult:
    return run_cli("publish", src, "--server", server, "--token", token, "--bundle", bundle, *extra)


def sync(server: str, bundle: str, store: Path, *extra: object) -> CliResult:
    return run_cli(
        "sync", "--server", server, "--bundle", bundle, "--store", store, "--json", *extra
    )


def sync_json(server: str, bundle: str, store: Path, *extra: object) -> dict[str, Any]:
    """A sync that must succeed; returns its JSON object."""
    res = sync(server, bundle, store, *extra)
    if res.code != 0:
        raise AssertionError(f"sync failed: {res.describe()}")
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise AssertionError(f"sync --json printed {len(lines)} lines: {res.describe()}")
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


def checkout(store: Path, bundle: str, to: Path, *extra: object) -> CliResult:
    return run_cli("checkout", "--store", store, "--bundle", bundle, "--to", to, *extra)


def checkout_ok(store: Path, bundle: str, to: Path, *extra: object) -> Path:
    res = checkout(store, bundle, to, *extra)
    if res.code != 0:
        raise AssertionError(f"checkout failed: {res.describe()}")
    return to


# -- trees -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeEntry:
    data: bytes
    executable: bool


def read_tree(root: Path) -> dict[str, TreeEntry]:
    """Every regular file under root (relative POSIX path -> content and executable bit); a
    checkout's own marker is left out."""
    out: dict[str, TreeEntry] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode) or path == root / CHECKOUT_MARKER:
            continue
        rel = path.relative_to(root).as_posix()
        if not stat.S_ISREG(st.st_mode):
            raise AssertionError(f"{rel} is not a regular file")
        out[rel] = TreeEntry(path.read_bytes(), bool(st.st_mode & stat.S_IXUSR))
    return out


def tree_differences(expected: Path, actual: Path, *, modes: bool = True) -> list[str]:
    """Human-readable differences between two trees (empty when equal byte for byte)."""
    a, b = read_tree(expected), read_tree(actual)
    problems = [f"missing: {p}" for p in sorted(a.keys() - b.keys())]
    problems += [f"unexpected: {p}" for p in sorted(b.keys() - a.keys())]
    for p in sorted(a.keys() & b.keys()):
        if a[p].data != b[p].data:
            problems.append(f"content differs: {p} ({len(a[p].data)} vs {len(b[p].data)} bytes)")
        elif modes and a[p].executable != b[p].executable:
            problems.append(f"executable bit differs: {p} ({a[p].executable} vs {b[p].executable})")
    return problems


def assert_same_tree(expected: Path, actual: Path, *, modes: bool = True) -> None:
    problems = tree_differences(expected, actual, modes=modes)
    assert not problems, f"{actual} differs from {expected}:\n  " + "\n  ".join(problems[:20])
