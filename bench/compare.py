"""Satchel against rsync, zsync and casync on the same corpus updates, in the same run.

For each pair (old -> new version of a corpus tree) every tool brings a client that holds the
old tree up to the new one, and one counting proxy on loopback
(``harness.proxy.LoopbackProxy``) sees every byte both ways between that client and its
server:

- rsync -z: ``rsync --daemon`` serving the new tree; the client runs ``rsync -rltz --delete``.
- zsync: ``zsyncmake`` of ``new.tar``; the client runs ``zsync -i old.tar URL.zsync`` against nginx.
- casync (64 KiB and 16 KiB average chunks): ``casync make --without=all``; the client runs
  ``casync extract --seed=OLD_TREE`` with index and store on nginx.
- Satchel: a real ``satchel serve``; the client syncs the old version (not counted), the new
  version is published, and the counted update is ``satchel sync --json``.

Each client's result is checked against the new tree (content; casync --without=all keeps no
modes). Two sizes give scale, not a transfer: the floor, ``zstd -19 --long=27
--patch-from=old.tar new.tar`` (the near-optimal delta), and the whole new tree as ``tar | zstd
-19``.

``--link DOWN/UP/RTT`` (e.g. 256k/64k/300ms, rates in bits per second) puts every tool behind
the same emulated link and adds times; Satchel's is compared with the brief's model, bytes /
bandwidth + 3 round trips. Under --link the default pairs are only the two small updates
(intro-stats v2 -> v3, shell-novice v1 -> v2): the v1 -> v2/v3 pairs move ~15 MB, about
8 minutes per tool at 256 kbit/s; name them with --pairs to include them anyway.

Run from the repository root:  python bench/compare.py [--pairs ...] [--link ...] [--install]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness import tools  # noqa: E402
from harness.bench import CORPUS, corpus, tar_zstd_size  # noqa: E402
from harness.e2e import SATCHEL, SatchelServer, run_cli, tree_differences  # noqa: E402
from harness.tools import FLOOR, RSYNC, WHOLE, Link, Result  # noqa: E402

DEFAULT_PAIRS = [
    "intro-stats:v2:v3",
    "shell-novice:v1:v2",
    "intro-stats:v1:v2",
    "intro-stats:v1:v3",
]
LINK_DEFAULT_PAIRS = DEFAULT_PAIRS[:2]
TOOL_TIMEOUT = 3600.0
CASYNC_SIZES = (65536, 16384)
ZSYNC = "zsync (one tar)"
SATCHEL_TOOL = "satchel"

# What each row needs on the machine.
NEEDS: dict[str, tuple[str, ...]] = {
    FLOOR: ("tar", "zstd"),
    RSYNC: ("rsync",),
    ZSYNC: ("tar", "zsync", "zsyncmake", "nginx"),
    "casync": ("casync", "nginx"),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Pair:
    bundle: str
    old: str
    new: str

    @property
    def label(self) -> str:
        return f"{self.bundle} {self.old} -> {self.new}"

    @property
    def slug(self) -> str:
        return f"{self.bundle}-{self.old}-{self.new}"

    def intermediates(self) -> list[str]:
        """Versions strictly between old and new in the corpus (the server publishes them too,
        so a client that skipped them updates across them, as in the field)."""
        lo, hi = _vnum(self.old), _vnum(self.new)
        found = [p.name for p in (CORPUS / self.bundle).iterdir() if p.is_dir()]
        return sorted((v for v in found if lo < _vnum(v) < hi), key=_vnum)


def _vnum(version: str) -> int:
    match = re.fullmatch(r"v(\d+)", version)
    return int(match.group(1)) if match else -1


def parse_pair(text: str) -> Pair:
    parts = text.split(":")
    if len(parts) != 3 or not all(parts) or _vnum(parts[1]) < 0 or _vnum(parts[2]) < 0:
        raise argparse.ArgumentTypeError(f"bad pair {text!r}: expected BUNDLE:vOLD:vNEW")
    return Pair(*parts)


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def check(self, what: str) -> None:
        if self.code != 0:
            tail = " / ".join(self.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"{what} exited {self.code}: {tail}")


def timed(args: Sequence[object], cwd: Path | None = None) -> Ran:
    """Runs a client command to completion: exit code, output and wall time."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    try:
        out, err = proc.communicate(timeout=TOOL_TIMEOUT)
    finally:
        tools.stop_pid(proc)  # only if it is still running (timeout, Ctrl-C)
    return Ran(proc.returncode, out, err, time.monotonic() - started)


def writable_copy(src: Path, dest: Path) -> Path:
    """Copies a (read-only) corpus tree and makes the copy writable by its owner."""
    shutil.copytree(src, dest, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    return dest


def tree_problems(expected: Path, actual: Path) -> str:
    problems = tree_differences(expected, actual, modes=False)
    return "" if not problems else f"WRONG OUTPUT: {len(problems)} differences, {problems[0]}"


# -- the tools -------------------------------------------------------------------------------
T_OLD = 1_600_000_000
T_NEW = 1_700_000_000


def run_rsync(pair: str, old: Path, new: Path, work: Path, link: Link | None) -> Result:
    # A real rsync mirror: the client got the old tree from this server with -t, so its files
    # carry the server's mtimes; the server's tree was updated in place, so only changed files
    # have new mtimes. rsync's default quick check (size + mtime) then skips unchanged files
    # and runs the delta algorithm only on changed ones. -t is what makes that work (without
    # it rsync treats every file as changed, as --ignore-times); -l copies links, --delete
    # removes files dropped upstream; no -p/-o/-g, since only content counts here. The corpus
    # trees' own mtimes are those of their extraction, so both sides are stamped as above.
    served = writable_copy(new, work / "rsync-served")
    client = writable_copy(old, work / "rsync-client")
    for path in client.rglob("*"):
        os.utime(path, (T_OLD, T_OLD), follow_symlinks=False)
    for path in served.rglob("*"):
        before = old / path.relative_to(served)
        same = path.is_dir() or (before.is_file() and tools.same_file(before, path))
        stamp = T_OLD if same else T_NEW
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    with (
        tools.rsync_daemon(served, work / "rsyncd") as port,
        tools.counting_proxy(port, link) as proxy,
    ):
        url = f"rsync://127.0.0.1:{proxy.port}/new/"
        ran = timed(["rsync", "-rltz", "--delete", "--stats", url, f"{client}/"])
        stats = proxy.stats()
    ran.check("rsync")
    out = ran.stdout
    sent = re.search(r"Total bytes sent: ([\d,]+)", out)
    recv = re.search(r"Total bytes received: ([\d,]+)", out)
    own = f"sent {sent.group(1)} / recv {recv.group(1)}" if sent and recv else ""
    return Result(
        pair,
        RSYNC,
        stats.bytes_down,
        stats.bytes_up,
        f"stream, {stats.connections} conn",
        ran.seconds,
        tree_problems(new, client),
        own,
    )


def run_zsync(
    pair: str, old_tar: Path, new_tar: Path, www: Path, port: int, work: Path, link: Link | None
) -> Result:
    served = www / "new.tar"
    os.link(new_tar, served)
    subprocess.run(
        ["zsyncmake", "-u", "new.tar", "-o", str(www / "new.tar.zsync"), str(served)],
        check=True,
        capture_output=True,
    )
    client = work / "zsync-client"
    client.mkdir()
    with tools.counting_proxy(port, link) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/{www.name}/new.tar.zsync"
        ran = timed(["zsync", "-i", old_tar, "-o", "new.tar", url], cwd=client)
        stats = proxy.stats()
    ran.check("zsync")
    fetched = re.search(r"fetched (\d+)", ran.stderr + ran.stdout)
    control = (www / "new.tar.zsync").stat().st_size
    same = tools.same_file(client / "new.tar", new_tar)
    return Result(
        pair,
        ZSYNC,
        stats.bytes_down,
        stats.bytes_up,
        stats.requests,
        ran.seconds,
        "" if same else "WRONG OUTPUT: new.tar differs",
        f".zsync {control:,} + ranges {int(fetched.group(1)):,}" if fetched else "",
    )


def casync_name(avg: int) -> str:
    return f"casync {avg // 1024} KiB avg"


def run_casync(
    pair: str,
    avg: int,
    old: Path,
    new: Path,
    www: Path,
    port: int,
    work: Path,
    link: Link | None,
) -> Result:
    name = f"ca{avg // 1024}k"
    served = www / name
    served.mkdir()
    # --without=all: content and names only (no owners, times, modes), as the others compare.
    subprocess.run(
        [
            "casync",
            "make",
            f"--store={served / 'store'}",
            f"--chunk-size={avg}",
            "--without=all",
            str(served / "new.caidx"),
            str(new),
        ],
        check=True,
        capture_output=True,
    )
    out = work / f"{name}-out"
    with tools.counting_proxy(port, link) as proxy:
        base = f"http://127.0.0.1:{proxy.port}/{www.name}/{name}"
        args = ["casync", "extract", "--without=all", f"--store={base}/store", f"--seed={old}"]
        ran = timed([*args, f"{base}/new.caidx", out])
        stats = proxy.stats()
    ran.check("casync extract")
    return Result(
        pair,
        casync_name(avg),
        stats.bytes_down,
        stats.bytes_up,
        stats.requests,
        ran.seconds,
        tree_problems(new, out),
    )


def satchel_ok(*args: object) -> str:
    res = run_cli(*args, timeout=TOOL_TIMEOUT)
    if res.code != 0:
        tail = " / ".join(res.error_lines()[-2:])
        raise RuntimeError(f"satchel {args[0]} exited {res.code}: {tail}")
    return res.stdout


def run_satchel(
    pair: Pair, old: Path, new: Path, between: list[Path], work: Path, link: Link | None
) -> Result:
    bundle = pair.bundle
    store = work / "satchel-store"
    with SatchelServer(work / "satchel-server") as server:
        token = server.token("teacher")
        publish = ("--server", server.url, "--token", token, "--bundle", bundle)
        satchel_ok("publish", old, *publish)
        # The client's first download, straight to the server: setup, not counted.
        satchel_ok("sync", "--server", server.url, "--bundle", bundle, "--store", store)
        for tree in [*between, new]:
            satchel_ok("publish", tree, *publish)
        with tools.counting_proxy(server.port, link) as proxy:
            args = ["sync", "--server", proxy.url, "--bundle", bundle, "--store", store, "--json"]
            ran = timed([SATCHEL, *args])
            stats = proxy.stats()
    ran.check("satchel sync")
    report = json.loads(ran.stdout)
    out = work / "satchel-out"
    satchel_ok("checkout", "--store", store, "--bundle", bundle, "--to", out)
    own = (
        f"{int(report['bytes_downloaded']):,} B down, {report['requests']} req,"
        f" {report['chunks_downloaded']} chunks, {report['seconds']} s"
    )
    return Result(
        pair.label,
        SATCHEL_TOOL,
        stats.bytes_down,
        stats.bytes_up,
        stats.requests,
        ran.seconds,
        tree_problems(new, out),
        own,
        link.model_time(stats.bytes_down, stats.bytes_up) if link is not None else None,
        extra={"sync_seconds": float(report["seconds"])},
    )


# -- one pair ----------------------------------------------------------------------------------
def guarded(results: list[Result], pair: str, tool: str, run: Callable[[], Result]) -> None:
    """Runs one measurement; a failure becomes that row's status instead of ending the run."""
    log(f"[{pair}] {tool} ...")
    started = time.monotonic()
    try:
        result = run()
    except Exception as error:  # the row says what went wrong; other tools still run
        log(f"[{pair}] {tool} FAILED: {error}")
        results.append(Result(pair, tool, status=f"failed: {str(error)[:80]}"))
        return
    took = time.monotonic() - started
    log(f"[{pair}] {tool}: {result.wire:,} B, {result.exchanges} ({took:.1f} s) {result.status}")
    results.append(result)


@dataclass
class PairRun:
    """The measurements of one pair, in a work folder of their own."""

    pair: Pair
    work: Path
    link: Link | None
    absent: set[str]
    results: list[Result] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.pair.label

    def lacks(self, key: str) -> list[str]:
        return [c for c in NEEDS[key] if c in self.absent]

    def not_installed(self, tool: str, key: str) -> None:
        status = f"not installed ({', '.join(self.lacks(key))})"
        self.results.append(Result(self.label, tool, status=status))

    def run(self, pool: ThreadPoolExecutor) -> list[Result]:
        pair, work, link, label = self.pair, self.work, self.link, self.label
        old = corpus(f"{pair.bundle}/{pair.old}")
        new = corpus(f"{pair.bundle}/{pair.new}")
        between = [corpus(f"{pair.bundle}/{v}") for v in pair.intermediates()]
        work.mkdir(parents=True)
        pending: list[tuple[str, Future[int]]] = [(WHOLE, pool.submit(tar_zstd_size, new, 19))]
        tars: tuple[Path, Path] | None = None
        if self.lacks(FLOOR):
            self.not_installed(FLOOR, FLOOR)
        else:
            tars = (tools.make_tar(old, work / "old.tar"), tools.make_tar(new, work / "new.tar"))
            pending.append((FLOOR, pool.submit(tools.patch_floor, *tars, work / "delta.zst")))
        if link is not None:  # the CPU stays quiet while tools are timed
            for _tool, future in pending:
                future.exception()

        if self.lacks(RSYNC):
            self.not_installed(RSYNC, RSYNC)
        else:
            guarded(self.results, label, RSYNC, lambda: run_rsync(label, old, new, work, link))
        self.http_tools(old, new, tars)
        guarded(
            self.results,
            label,
            SATCHEL_TOOL,
            lambda: run_satchel(pair, old, new, between, work, link),
        )

        for tool, future in pending:
            try:
                self.results.append(Result(label, tool, future.result()))
            except Exception as error:
                log(f"[{label}] {tool} FAILED: {error}")
                self.results.append(Result(label, tool, status=f"failed: {str(error)[:80]}"))
        return self.results

    def http_tools(self, old: Path, new: Path, tars: tuple[Path, Path] | None) -> None:
        """zsync and casync, against one nginx for this pair."""
        label, work, link = self.label, self.work, self.link
        casyncs = [casync_name(avg) for avg in CASYNC_SIZES]
        run_zsync_too = not self.lacks(ZSYNC) and tars is not None
        if not run_zsync_too:
            self.not_installed(ZSYNC, ZSYNC)
        if self.lacks("casync"):
            for name in casyncs:
                self.not_installed(name, "casync")
        if not run_zsync_too and self.lacks("casync"):
            return
        www = work / "www" / self.pair.slug
        www.mkdir(parents=True)
        try:
            with tools.nginx(www.parent, work / "nginx") as port:
                if run_zsync_too and tars is not None:
                    o, n = tars
                    guarded(
                        self.results,
                        label,
                        ZSYNC,
                        lambda: run_zsync(label, o, n, www, port, work, link),
                    )
                if not self.lacks("casync"):
                    for avg in CASYNC_SIZES:
                        guarded(
                            self.results,
                            label,
                            casync_name(avg),
                            functools.partial(
                                run_casync, label, avg, old, new, www, port, work, link
                            ),
                        )
        except RuntimeError as error:  # nginx did not start: its rows say so
            log(f"[{label}] nginx FAILED: {error}")
            done = {r.tool for r in self.results}
            for tool in [ZSYNC, *casyncs]:
                if tool not in done:
                    self.results.append(Result(label, tool, status="failed: nginx did not start"))


# -- main ----------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Bytes and exchanges per update: Satchel vs rsync -z, zsync, casync, and the zstd"
            " --patch-from floor, on corpus pairs, counted by one loopback proxy. Prints one"
            " Markdown table."
        ),
        epilog=(
            "Under --link the default pairs are only intro-stats:v2:v3 and shell-novice:v1:v2:"
            " intro-stats v1 -> v2/v3 move ~15 MB, about 8 minutes per tool at 256 kbit/s (over"
            " half an hour for the pair); name them with --pairs to run them anyway."
        ),
    )
    parser.add_argument(
        "--pairs",
        nargs="+",
        type=parse_pair,
        metavar="BUNDLE:vOLD:vNEW",
        help=f"corpus pairs (default: {' '.join(DEFAULT_PAIRS)})",
    )
    parser.add_argument(
        "--link",
        type=_link_arg,
        metavar="DOWN/UP/RTT",
        help="emulate a link, e.g. 256k/64k/300ms (bits/s; k, m suffixes); adds a time column",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="apt-get install missing tools (rsync zsync casync nginx zstd tar)",
    )
    return parser.parse_args(argv)


def _link_arg(text: str) -> Link:
    try:
        return tools.parse_link(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _terminate(signum: int, _frame: object) -> None:
    # Turns SIGTERM/SIGHUP into an exception so every ``with`` stops its server by PID.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    link: Link | None = args.link
    pairs: list[Pair] = args.pairs or [
        parse_pair(p) for p in (LINK_DEFAULT_PAIRS if link else DEFAULT_PAIRS)
    ]
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    started = time.monotonic()

    commands = sorted({c for need in NEEDS.values() for c in need})
    absent = set(tools.missing(commands))
    if absent and args.install:
        try:
            tools.apt_install(sorted(absent), log)
        except RuntimeError as error:
            log(str(error))
        absent = set(tools.missing(commands))
    if absent:
        log(f"not installed: {', '.join(sorted(absent))} (their rows say so; --install)")

    startup = None
    if link is not None:
        t0 = time.monotonic()
        subprocess.run([SATCHEL, "--help"], capture_output=True, check=False)
        startup = time.monotonic() - t0

    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="satchel-compare-") as tmp,
        ThreadPoolExecutor(1) as pool,  # baselines compress while the tools run
    ):
        for pair in pairs:
            work = Path(tmp) / pair.slug
            results += PairRun(pair, work, link, absent).run(pool)
            shutil.rmtree(work, ignore_errors=True)  # this pair's copies and tars

    print(tools.render(results, link))
    print()
    versions = "; ".join(
        tools.tool_version(c)
        for c in ("rsync", "zsync", "casync", "zstd", "nginx")
        if c not in absent
    )
    footer = (
        "Measured in one run on this machine: each client updated a copy of the old tree to the"
        " new one through one counting LoopbackProxy on 127.0.0.1 (payload bytes both ways, HTTP"
        " heads included, TCP/IP overhead not); exchanges = HTTP requests the proxy saw (rsync:"
        " one pipelined stream, connections shown); every result was checked against the new"
        " tree. Servers: rsync --daemon, nginx (zsync, casync), satchel serve. Floor ="
        " zstd -19 --long=27 --patch-from=old.tar new.tar (tar --sort=name, mtime 0), checked by"
        " decoding; 'x floor'/'x rsync' = bytes / that row's bytes; satchel's own count is its"
        " sync --json (bytes_downloaded excludes HTTP heads; seconds exclude start-up)."
    )
    if link is not None:
        footer += (
            f" Link {link}: LoopbackProxy(down {link.down_rate:,.0f} B/s, up"
            f" {link.up_rate:,.0f} B/s, latency {link.rtt / 2:g} s each way); time = wall time"
            " of the client command incl. its start-up (satchel --help alone:"
            f" {startup:.1f} s); ~idle RTTs = (time - down/down_rate - up/up_rate) / RTT, which"
            " also holds start-up and CPU time (casync chunks its seed tree);"
            " model = down/down_rate + up/up_rate + 3 RTT."
        )
    footer += f" Tools: {versions}. Runtime {time.monotonic() - started:.0f} s."
    print(footer)


if __name__ == "__main__":
    main()
