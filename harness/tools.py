"""Helpers for bench/compare.py: the external tools, their servers, the link, the table.

Everything here runs on 127.0.0.1 only. Every server or daemon is started through
:func:`background`, which stops it by its PID (SIGTERM, then SIGKILL) when the ``with`` block
ends, whatever way it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness.bench import table  # noqa: E402
from harness.proxy import LoopbackProxy  # noqa: E402

# Command -> Debian package that provides it.
PACKAGES: dict[str, str] = {
    "rsync": "rsync",
    "zsync": "zsync",
    "zsyncmake": "zsync",
    "casync": "casync",
    "nginx": "nginx",
    "zstd": "zstd",
    "tar": "tar",
}
# nginx lives in /usr/sbin, which a non-root PATH may lack.
_EXTRA_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


# -- link --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """An emulated link: rates in bits per second, round-trip time in seconds."""

    down_bps: float
    up_bps: float
    rtt: float

    @property
    def down_rate(self) -> float:
        """Bytes per second, as LoopbackProxy wants it."""
        return self.down_bps / 8

    @property
    def up_rate(self) -> float:
        return self.up_bps / 8

    @property
    def latency(self) -> float:
        """Per-direction delay for LoopbackProxy: a round trip costs twice this."""
        return self.rtt / 2

    def transfer_time(self, bytes_down: int, bytes_up: int) -> float:
        return bytes_down / self.down_rate + bytes_up / self.up_rate

    def model_time(self, bytes_down: int, bytes_up: int, round_trips: int = 3) -> float:
        """The brief's target model: bytes / bandwidth + ``round_trips`` round trips."""
        return self.transfer_time(bytes_down, bytes_up) + round_trips * self.rtt

    def __str__(self) -> str:
        return f"{_fmt_bps(self.down_bps)}/{_fmt_bps(self.up_bps)}/{self.rtt * 1000:g}ms"


_RATE = re.compile(r"(\d+(?:\.\d+)?)([kKmMgG]?)(?:bit|bps|b)?")
_TIME = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")
_SCALE = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """``256k`` -> 256000.0 bits per second (k, m, g are powers of 1000, as link rates are)."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad rate {text!r}: expected a number of bits/s like 256k or 2m")
    value = float(match.group(1)) * _SCALE[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"bad rate {text!r}: must be positive")
    return value


def parse_duration(text: str) -> float:
    """``300ms`` -> 0.3; ``0.5s`` or ``0.5`` -> 0.5 (seconds)."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"bad round-trip time {text!r}: expected e.g. 300ms or 0.3s")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def parse_link(text: str) -> Link:
    """``DOWN/UP/RTT``, e.g. ``256k/64k/300ms`` (rates in bits per second)."""
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(f"bad link {text!r}: expected DOWN/UP/RTT, e.g. 256k/64k/300ms")
    return Link(parse_rate(parts[0]), parse_rate(parts[1]), parse_duration(parts[2]))


def _fmt_bps(bps: float) -> str:
    for suffix, scale in (("m", 1e6), ("k", 1e3)):
        if bps >= scale and bps % scale == 0:
            return f"{bps / scale:g}{suffix}"
    return f"{bps:g}"


def counting_proxy(port: int, link: Link | None) -> LoopbackProxy:
    """The one counting proxy in front of a server on 127.0.0.1:``port``, over ``link`` if any."""
    if link is None:
        return LoopbackProxy("127.0.0.1", port)
    return LoopbackProxy(
        "127.0.0.1",
        port,
        down_rate=link.down_rate,
        up_rate=link.up_rate,
        latency=link.latency,
    )


# -- tools and installing them -------------------------------------------------------------
def which(command: str) -> str | None:
    found = shutil.which(command)
    if found:
        return found
    for folder in _EXTRA_DIRS:
        candidate = Path(folder) / command
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing(commands: Sequence[str]) -> list[str]:
    return [c for c in commands if which(c) is None]


def apt_install(commands: Sequence[str], log: Callable[[str], None]) -> None:
    """``apt-get install -y`` the packages behind ``commands`` (one ``apt-get update`` and a retry
    if the package lists are stale). Raises RuntimeError with apt's last words on failure."""
    packages = sorted({PACKAGES[c] for c in commands})
    if not packages:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    install = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", *packages]
    log(f"installing: {' '.join(packages)}")
    res = subprocess.run(install, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        log("apt-get install failed; running apt-get update once and retrying")
        subprocess.run([*prefix, "apt-get", "update"], env=env, capture_output=True, check=False)
        res = subprocess.run(install, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"apt-get install {' '.join(packages)} failed: {' / '.join(tail)}")


def tool_version(command: str) -> str:
    """``name X.Y.Z`` from the tool's version banner (for the footer)."""
    path = which(command)
    if path is None:
        return f"{command} not installed"
    flag = {"zsync": "-V", "nginx": "-v"}.get(command, "--version")
    res = subprocess.run([path, flag], capture_output=True, text=True, check=False)
    banner = res.stdout + res.stderr
    match = re.search(r"(\d+\.\d+(?:\.\d+)*)", banner) or re.search(r"\b(\d+)\b", banner)
    return f"{command} {match.group(1)}" if match else command


# -- processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_pid(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the process by its PID, SIGKILL it if it is still there after ``grace``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(grace)


@contextlib.contextmanager
def background(
    args: Sequence[str], log_path: Path, port: int, timeout: float = 15.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs ``args`` (a server that stays in the foreground) until the block ends; waits until
    it accepts connections on ``port``. Stopped by PID even if the block raises."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + timeout
        while not _port_open(port):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{args[0]} exited ({proc.returncode}) before listening on {port}: "
                    + log_path.read_text("utf-8", "replace")[-600:]
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not listen on port {port} in {timeout:g} s")
            time.sleep(0.02)
        yield proc
    finally:
        stop_pid(proc)


@contextlib.contextmanager
def nginx(root: Path, work: Path) -> Iterator[int]:
    """A static-file nginx (HTTP/1.1, keep-alive, Range) for ``root`` on 127.0.0.1; yields the
    port. One process (no master), so its PID is all there is to stop."""
    binary = which("nginx")
    if binary is None:
        raise RuntimeError("nginx is not installed")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = {name: work / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {work / "nginx.pid"};
error_log {work / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
  access_log {work / "access.log"};
  client_body_temp_path {temp["body"]};
  proxy_temp_path {temp["proxy"]};
  fastcgi_temp_path {temp["fastcgi"]};
  uwsgi_temp_path {temp["uwsgi"]};
  scgi_temp_path {temp["scgi"]};
  types {{ }}
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 100000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port};
    root {root};
  }}
}}
""",
        "utf-8",
    )
    with background([binary, "-p", str(work), "-c", str(conf)], work / "nginx.log", port):
        yield port


@contextlib.contextmanager
def rsync_daemon(module_path: Path, work: Path, module: str = "new") -> Iterator[int]:
    """``rsync --daemon --no-detach`` serving ``module_path`` read-only as ``module``."""
    binary = which("rsync")
    if binary is None:
        raise RuntimeError("rsync is not installed")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "rsyncd.conf"
    # uid/gid: a root daemon would otherwise read as "nobody", who cannot enter the 0700 temp dir.
    conf.write_text(
        f"""address = 127.0.0.1
port = {port}
pid file = {work / "rsyncd.pid"}
lock file = {work / "rsyncd.lock"}
log file = {work / "rsyncd.log"}
use chroot = no
[{module}]
  path = {module_path}
  read only = yes
  uid = {os.geteuid()}
  gid = {os.getegid()}
""",
        "utf-8",
    )
    args = [binary, "--daemon", "--no-detach", f"--config={conf}"]
    with background(args, work / "rsyncd.out", port):
        yield port


# -- archives and the floor -------------------------------------------------------------------
def make_tar(src: Path, dest: Path) -> Path:
    """``tar --sort=name`` with fixed mtimes and owners, so two versions differ only where their
    files do (GNU format: no per-run pax headers)."""
    binary = which("tar")
    if binary is None:
        raise RuntimeError("tar is not installed")
    subprocess.run(
        [
            binary,
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
            "-C",
            str(src),
            "-cf",
            str(dest),
            ".",
        ],
        check=True,
        env=dict(os.environ, LC_ALL="C"),
    )
    return dest


def patch_floor(old_tar: Path, new_tar: Path, out: Path) -> int:
    """Size of ``zstd -19 --long=27 --patch-from=old.tar new.tar``, checked by decoding it."""
    binary = which("zstd")
    if binary is None:
        raise RuntimeError("zstd is not installed")
    common = [binary, "-q", "-f", "--long=27", f"--patch-from={old_tar}"]
    subprocess.run(
        [*common, "-19", str(new_tar), "-o", str(out)],
        check=True,
        capture_output=True,  # zstd prints "optimal parser notes" for big patches
    )
    check = out.with_name(out.name + ".check")
    subprocess.run(
        [*common, "-d", str(out), "-o", str(check)],
        check=True,
        capture_output=True,
    )
    try:
        if not same_file(check, new_tar):
            raise RuntimeError(f"zstd --patch-from did not reproduce {new_tar}")
    finally:
        check.unlink(missing_ok=True)
    return out.stat().st_size


def same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


# -- results and the table ----------------------------------------------------------------------
FLOOR = "floor: zstd -19 --patch-from"
WHOLE = "whole new tree, tar.zst -19"
RSYNC = "rsync -z"


@dataclass
class Result:
    """One row: what one tool needed to bring a client from the old to the new tree.

    ``bytes_down``/``bytes_up`` are None when the tool did not run (``status`` says why);
    ``exchanges`` is the HTTP request count, or a text such as "stream, 1 conn"."""

    pair: str
    tool: str
    bytes_down: int | None = None
    bytes_up: int | None = None
    exchanges: int | str = "-"
    seconds: float | None = None
    status: str = ""
    own: str = ""
    model_seconds: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def wire(self) -> int | None:
        if self.bytes_down is None:
            return None
        return self.bytes_down + (self.bytes_up or 0)


def _ratio(value: int | None, base: int | None) -> str:
    if value is None or not base:
        return ""
    return f"{value / base:.2f}"


def sort_key(r: Result) -> tuple[str, str]:
    return (r.pair, r.tool)


def render(results: Sequence[Result], link: Link | None = None) -> str:
    """The Markdown table, rows sorted by pair then tool; ratios against the pair's floor and
    rsync rows. With ``link``, adds the measured time, the implied idle round trips and, where
    a model time is set (Satchel), the model and measured/model."""
    floors = {r.pair: r.wire for r in results if r.tool == FLOOR}
    rsyncs = {r.pair: r.wire for r in results if r.tool == RSYNC}
    headers = ["pair", "tool", "bytes (down+up)", "down / up", "exchanges"]
    headers += ["x floor", "x rsync"]
    if link is not None:
        headers += ["time (s)", "~idle RTTs", "model (s)", "measured / model", "sync / model"]
    headers += ["tool's own count"]
    rows: list[list[object]] = []
    for r in sorted(results, key=sort_key):
        wire = r.wire
        if wire is None:
            row: list[object] = [r.pair, r.tool, r.status or "n/a", "", ""]
            row += ["", ""]
            if link is not None:
                row += ["", "", "", "", ""]
            rows.append([*row, r.own])
            continue
        split = "" if r.bytes_up is None else f"{r.bytes_down:,} / {r.bytes_up:,}"
        tool = r.tool if not r.status else f"{r.tool} ({r.status})"
        row = [r.pair, tool, wire, split, r.exchanges]
        row += [_ratio(wire, floors.get(r.pair)), _ratio(wire, rsyncs.get(r.pair))]
        if link is not None:
            if r.seconds is None:
                row += ["", "", "", "", ""]
            else:
                idle = (r.seconds - link.transfer_time(r.bytes_down or 0, r.bytes_up or 0)) / (
                    link.rtt or 1
                )
                row += [f"{r.seconds:.1f}", f"{idle:.1f}" if link.rtt else ""]
                if r.model_seconds is not None:
                    # The process's wall time includes interpreter start-up; the sync's own
                    # clock (its --json "seconds") is the sync alone.
                    own = r.extra.get("sync_seconds")
                    row += [
                        f"{r.model_seconds:.1f}",
                        f"{r.seconds / r.model_seconds:.2f}",
                        f"{float(own) / r.model_seconds:.2f}" if isinstance(own, float) else "",
                    ]
                else:
                    row += ["", "", ""]
        rows.append([*row, r.own])
    return table(headers, rows)
