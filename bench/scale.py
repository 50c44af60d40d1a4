"""Satchel at every size against its peers, in one run: publish, first sync, a one-file update,
USB export and import, and the local commands, with CPU, wall time and peak memory.

Data (made by ``harness/trees.py`` under a temporary folder, deleted afterwards unless
``--keep``):

- **intro-stats v2**: ``../shared/corpus/intro-stats/v2`` (22 MB, 473 files), copied.
- **video N GiB**: lecture files of 64-256 MiB of incompressible bytes (AES-128-CTR keystream
  keyed by the seed and the file name: reproducible and fast, unlike ``os.urandom``).
- **pages N**: N lesson pages of HTML (~10.7 KB each, 10 per lesson, 100 lessons per unit),
  sentences drawn from a seeded word list with Zipf-like frequencies: varied, compressible text.

Each data set goes through the same steps, every tool a whole process on 127.0.0.1:

| work | Satchel | peer |
|---|---|---|
| publish | ``satchel publish`` to ``satchel serve`` | ``casync make`` into a local store |
| first sync | ``satchel sync`` into an empty store | ``rsync -rlt`` from ``rsync --daemon`` |
| export | ``satchel export`` to an empty stick | ``cp -r`` of the tree |
| import | ``satchel import`` of that stick into an empty store | ``cp -r`` of the stick |
| update: publish | one file edited, ``satchel publish`` | ``casync make`` into the same store |
| update: sync | ``satchel sync`` (counting proxy) | ``rsync -rltz`` (counting proxy) |
| status | ``satchel status`` (two versions kept) | - |
| checkout | ``satchel checkout`` of the new version | ``casync extract`` from its store |
| gc | ``satchel gc --keep 1`` | - |

Processes are measured by ``bench/_measure.py``. CPU is user + system time: a client's from
``wait4`` (it includes helpers the client forked and reaped), a server's from
``/proc/PID/stat`` before and after the step (a forking daemon's reaped children included).
Peak memory is sampled every 50 ms from ``/proc/PID/status``, anonymous (RssAnon: heap and
buffers) and file-backed (RssFile: mapped libraries and files) apart, each its own maximum. A
fresh ``satchel serve`` is started for each step, so its peak belongs to that step. Everything
runs from a warm page cache; no tool's data is dropped between steps. ``--profile DIR``
attaches py-spy (not a project dependency) to Satchel's client and server during the chosen
steps and prints where their samples fall (``harness/profile.py``).

Run from the repository root (the venv's python, so ``satchel`` is the venv's)::

    .venv/bin/python bench/scale.py --size small      # intro-stats, 0.25 GiB, 1,000 pages
    .venv/bin/python bench/scale.py --size medium     # intro-stats, 1 GiB, 1,000 + 10,000 pages
    .venv/bin/python bench/scale.py --size large      # intro-stats, 4 GiB, up to 100,000 pages
    .venv/bin/python bench/scale.py --no-corpus --video-gib 1 --pages 10000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from satchel.content.names import DEFAULT_LOCALE as LOCALE  # noqa: E402

from bench._measure import Ran, StepTimeout, Usage, Watch, run_measured  # noqa: E402
from harness import tools  # noqa: E402
from harness.bench import CORPUS, table  # noqa: E402
from harness.e2e import SATCHEL, SatchelServer, satchel_process  # noqa: E402
from harness.profile import MODES, Recorder, summary  # noqa: E402
from harness.trees import (  # noqa: E402
    insert_sentence,
    make_pages,
    make_video,
    page_counts,
    page_path,
    patch_video,
    tree_mismatch,
    tree_size,
)

BUNDLE = "course"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- sizes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    corpus: bool
    video_gib: float
    pages: tuple[int, ...]


SIZES = {
    "small": Size(corpus=True, video_gib=0.25, pages=(1_000,)),
    "medium": Size(corpus=True, video_gib=1.0, pages=(1_000, 10_000)),
    "large": Size(corpus=True, video_gib=4.0, pages=(1_000, 10_000, 100_000)),
}


# -- data sets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """A tree to measure: how to make it, and the one-file edit of the update step."""

    slug: str
    label: str
    make: Callable[[Path], None]
    edit: Callable[[Path], str]  # edits the tree in place; returns the edited file's path
    growth: bool = False  # pages: part of the growth-with-file-count table

    def built(self, root: Path) -> Path:
        root.mkdir(parents=True)
        self.make(root)
        return root


def corpus_dataset(root: Path) -> Dataset:
    src = root / "intro-stats" / "v2"
    if not src.is_dir():
        sys.exit(f"corpus tree intro-stats/v2 not found under {root} (--corpus DIR or --no-corpus)")

    def make(dest: Path) -> None:
        shutil.copytree(src, dest, dirs_exist_ok=True)
        for path in [dest, *dest.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)

    def edit(tree: Path) -> str:
        texts = sorted(tree.rglob("*.cnxml"))
        target = texts[len(texts) // 2]
        insert_sentence(target)
        return str(target.relative_to(tree))

    return Dataset("intro-stats", "intro-stats v2", make, edit)


def video_dataset(gib: float, seed: int) -> Dataset:
    def edit(tree: Path) -> str:
        files = sorted(tree.rglob("*.mp4"))
        target = files[len(files) // 2]
        patch_video(target, seed)
        return str(target.relative_to(tree))

    return Dataset(
        f"video-{gib:g}g", f"video {gib:g} GiB", lambda d: make_video(d, gib, seed), edit
    )


def pages_dataset(count: int, seed: int) -> Dataset:
    def edit(tree: Path) -> str:
        target = tree / page_path(count // 2)
        insert_sentence(target)
        return page_path(count // 2)

    return Dataset(
        f"pages-{count}",
        f"pages {count:,}",
        lambda d: make_pages(d, count, seed),
        edit,
        growth=True,
    )


# -- rows ----------------------------------------------------------------------------------------
SATCHEL_TOOL = "satchel"
PHASES = ("publish", "first sync", "usb", "update")  # in the order measure() runs them


@dataclass
class Row:
    data: str
    work: str
    tool: str
    wall: float | None = None
    client: Usage | None = None
    server: Usage | None = None
    tree_bytes: int | None = None  # what the work moves: for MB/s and CPU per GB
    wire: int | None = None  # bytes through the counting proxy (or the tool's own count)
    status: str = ""

    @property
    def cpu(self) -> float | None:
        if self.client is None:
            return None
        return self.client.cpu + (self.server.cpu if self.server else 0.0)


@dataclass
class Context:
    """What one data set's steps share."""

    data: Dataset
    src: Path
    work: Path
    timeout: float
    recorder: Recorder | None
    profile_steps: set[str]
    rows: list[Row] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # tool -> why its next steps cannot run
    stop_after: str = ""  # the last phase to run (publish, first sync, usb, update); "": all
    token: str = ""
    files: int = 0
    size: int = 0

    def profile(self, work: str, role: str) -> tuple[Recorder, str] | None:
        if self.recorder is None or work not in self.profile_steps:
            return None
        return self.recorder, f"{self.data.slug}-{work.replace(' ', '-').replace(':', '')}-{role}"

    def step(
        self, work: str, tool: str, run: Callable[[Row], None], *, required: bool = False
    ) -> None:
        """Runs one measurement into a row; a failure is the row's status and, if the step is
        ``required``, the status of the tool's later steps too (they need its result)."""
        row = Row(self.data.label, work, tool)
        self.rows.append(row)
        blocked = self.broken.get(tool)
        if blocked:
            row.status = f"not measured: {blocked}"
            return
        log(f"[{self.data.label}] {work}: {tool} ...")
        try:
            run(row)
        except Exception as error:
            row.status = f"failed: {str(error)[:100]}"
            if isinstance(error, StepTimeout):
                row.status = f"not measured: {error}"
            if required:
                self.broken[tool] = (
                    f"{work} {'timed out' if isinstance(error, StepTimeout) else 'failed'}"
                )
            log(f"[{self.data.label}] {work}: {tool} {row.status}")
            return
        cpu = f", CPU {row.cpu:.1f} s" if row.cpu is not None else ""
        log(f"[{self.data.label}] {work}: {tool} {row.wall:.1f} s{cpu} {row.status}")

    def satchel(self, work: str, data: Path, row: Row, args: Sequence[object]) -> Ran:
        """One Satchel client command against a fresh ``satchel serve`` on ``data``."""
        with SatchelServer(data) as server:
            assert server.proc is not None
            if not self.token:
                self.token = server.token("teacher")
            full = [a if a != "URL" else server.url for a in args]
            full = [a if a != "TOKEN" else self.token for a in full]
            watch = Watch(server.proc.pid)
            with contextlib.ExitStack() as stack:
                stack.enter_context(watch.during())
                prof = self.profile(work, "server")
                if prof is not None:
                    stack.enter_context(prof[0].attach(server.proc.pid, prof[1]))
                ran = run_measured(
                    [SATCHEL, *full],
                    self.work / "logs",
                    timeout=self.timeout,
                    profile=self.profile(work, "client"),
                )
        row.server = watch.usage
        return self.fill(row, ran, work)

    @staticmethod
    def fill(row: Row, ran: Ran, what: str) -> Ran:
        ran.check(what)
        row.wall = ran.wall
        row.client = ran.usage
        return ran

    def local(self, work: str, row: Row, args: Sequence[object], *, tree: bool = False) -> Ran:
        prof = self.profile(work, "client") if args and args[0] == SATCHEL else None
        ran = run_measured(args, self.work / "logs", timeout=self.timeout, tree=tree, profile=prof)
        return self.fill(row, ran, work)


# -- the steps -----------------------------------------------------------------------------------
def measure(ctx: Context) -> None:
    src, work = ctx.src, ctx.work
    data = work / "server-data"
    store = work / "laptop"
    casync_store = work / "casync.castr"
    rsync_dest = work / "rsync-laptop"
    stick = work / "stick"
    whole = ctx.size

    def publish(work_name: str, version: int) -> Callable[[Row], None]:
        def run(row: Row) -> None:
            args = ["publish", src, "--server", "URL", "--token", "TOKEN", "--bundle", BUNDLE]
            ran = ctx.satchel(work_name, data, row, args)
            if ran.stdout.strip() != str(version):
                raise RuntimeError(f"publish printed {ran.stdout.strip()!r}, not {version}")
            row.tree_bytes = whole
            row.status = _last_line(ran.stderr).partition("; ")[2]  # uploaded N of M chunks

        return run

    def casync_make(name: str) -> Callable[[Row], None]:
        def run(row: Row) -> None:
            args = ["casync", "make", "--without=all", f"--store={casync_store}"]
            ctx.local("publish", row, [*args, work / f"{name}.caidx", src], tree=True)
            row.tree_bytes = whole

        return run

    ctx.step("publish", SATCHEL_TOOL, publish("publish", 1), required=True)
    ctx.step("publish", "casync make", casync_make("v1"), required=True)
    if ctx.stop_after == "publish":
        return

    def first_sync(row: Row) -> None:
        args = ["sync", "--server", "URL", "--bundle", BUNDLE, "--store", store, "--json"]
        ran = ctx.satchel("first sync", data, row, args)
        report = json.loads(ran.stdout)
        row.wire = int(report["bytes_downloaded"]) + int(report["bytes_uploaded"])
        row.tree_bytes = whole
        row.status = f"{report['requests']} requests"

    with tools.rsync_daemon(src, work / "rsyncd", module="tree") as port:

        def rsync_first(row: Row) -> None:
            daemon = _daemon_pid(work / "rsyncd")
            watch = Watch(daemon, tree=True)
            with watch.during():
                ran = run_measured(
                    [
                        "rsync",
                        "-rlt",
                        "--stats",
                        f"rsync://127.0.0.1:{port}/tree/",
                        f"{rsync_dest}/",
                    ],
                    work / "logs",
                    timeout=ctx.timeout,
                    tree=True,
                )
            ctx.fill(row, ran, "rsync")
            row.server = watch.usage
            row.tree_bytes = whole
            row.wire = _rsync_total(ran.stdout)

        ctx.step("first sync", SATCHEL_TOOL, first_sync, required=True)
        ctx.step("first sync", "rsync -rlt", rsync_first, required=True)
        if ctx.stop_after == "first sync":
            return

        # USB: the laptop's store to a stick, the stick into another laptop's empty store.
        def export(row: Row) -> None:
            args = [SATCHEL, "export", "--store", store, "--bundle", BUNDLE, "--to", stick]
            ctx.local("export", row, args)
            row.tree_bytes = whole
            row.wire = tree_size(stick)[1]
            row.status = "stick bytes in 'bytes'"

        def usb_import(row: Row) -> None:
            args = [SATCHEL, "import", stick, "--store", work / "laptop-usb"]
            ctx.local("import", row, args)
            row.tree_bytes = tree_size(stick)[1]
            shutil.rmtree(work / "laptop-usb", ignore_errors=True)

        def cp(source: Path, dest: Path, measured: str) -> Callable[[Row], None]:
            def run(row: Row) -> None:
                ctx.local(measured, row, ["cp", "-r", source, dest])
                row.tree_bytes = tree_size(source)[1]
                shutil.rmtree(dest, ignore_errors=True)

            return run

        ctx.step("export", SATCHEL_TOOL, export)
        ctx.step("export", "cp -r (tree)", cp(src, work / "cp-tree", "export"))
        ctx.step("import", SATCHEL_TOOL, usb_import)
        if stick.is_dir():
            ctx.step("import", "cp -r (stick)", cp(stick, work / "cp-stick", "import"))
        else:
            ctx.rows.append(Row(ctx.data.label, "import", "cp -r (stick)", status="no stick"))
        shutil.rmtree(stick, ignore_errors=True)
        if ctx.stop_after == "usb":
            return

        # The one-file update: edit, publish, and bring each laptop up to date.
        edited = ctx.data.edit(src)
        log(f"[{ctx.data.label}] edited {edited}")
        ctx.step("update: publish", SATCHEL_TOOL, publish("update: publish", 2), required=True)
        ctx.step("update: publish", "casync make", casync_make("v2"))

        def update_sync(row: Row) -> None:
            with SatchelServer(data) as server:
                assert server.proc is not None
                watch = Watch(server.proc.pid)
                with tools.counting_proxy(server.port, None) as proxy, watch.during():
                    prof = ctx.profile("update: sync", "server")
                    with (
                        prof[0].attach(server.proc.pid, prof[1])
                        if prof
                        else contextlib.nullcontext()
                    ):
                        args = ["sync", "--server", proxy.url, "--bundle", BUNDLE]
                        ran = ctx.local(
                            "update: sync", row, [SATCHEL, *args, "--store", store, "--json"]
                        )
                    stats = proxy.stats()
            row.server = watch.usage
            report = json.loads(ran.stdout)
            if report.get("version") != 2:
                raise RuntimeError(f"sync reached version {report.get('version')}, not 2")
            row.wire = stats.bytes_down + stats.bytes_up
            row.status = f"{stats.requests} requests, {report['chunks_downloaded']} chunks"

        def rsync_update(row: Row) -> None:
            daemon = _daemon_pid(work / "rsyncd")
            watch = Watch(daemon, tree=True)
            with tools.counting_proxy(port, None) as proxy, watch.during():
                url = f"rsync://127.0.0.1:{proxy.port}/tree/"
                ran = ctx.local(
                    "update: sync", row, ["rsync", "-rltz", "--stats", url, f"{rsync_dest}/"]
                )
                stats = proxy.stats()
            row.server = watch.usage
            row.wire = stats.bytes_down + stats.bytes_up
            row.status = _rsync_files(ran.stdout)

        ctx.step("update: sync", SATCHEL_TOOL, update_sync, required=True)
        ctx.step("update: sync", "rsync -rltz", rsync_update)
        if ctx.stop_after == "update":
            return
    shutil.rmtree(rsync_dest, ignore_errors=True)

    # Local commands on the laptop holding two versions.
    def status(row: Row) -> None:
        ctx.local("status", row, [SATCHEL, "status", "--store", store])

    def checkout(row: Row) -> None:
        out = work / "checkout"
        ctx.local(
            "checkout",
            row,
            [SATCHEL, "checkout", "--store", store, "--bundle", BUNDLE, "--to", out],
        )
        row.tree_bytes = whole
        row.status = tree_mismatch(src, out) or "same tree"
        shutil.rmtree(out, ignore_errors=True)

    def casync_extract(row: Row) -> None:
        out = work / "casync-out"
        args = ["casync", "extract", "--without=all", f"--store={casync_store}"]
        ctx.local("checkout", row, [*args, work / "v2.caidx", out], tree=True)
        row.tree_bytes = whole
        shutil.rmtree(out, ignore_errors=True)

    def gc(row: Row) -> None:
        ran = ctx.local("gc", row, [SATCHEL, "gc", "--store", store, "--keep", "1"])
        row.status = _last_line(ran.stderr)

    def contents(row: Row) -> None:
        # The viewer's table of contents, the first request after start (cold: titles read
        # from the chunk store) and the next (warm); wall is the cold one.
        log_path = work / "logs" / "view.log"
        took = []
        with (
            satchel_process("view", "--store", store, log=log_path) as url,
            httpx.Client(base_url=url, timeout=ctx.timeout) as client,
        ):
            for _ in range(2):
                start = time.perf_counter()
                page = client.get(f"/b/{BUNDLE}/{LOCALE}/")
                took.append(time.perf_counter() - start)
                page.raise_for_status()
        row.wall = took[0]
        lessons = page.text.count("<li")
        row.status = f"warm {took[1]:.3f} s; {len(page.content):,} bytes, {lessons:,} items"

    ctx.step("status", SATCHEL_TOOL, status)
    ctx.step("view: contents", SATCHEL_TOOL, contents)
    ctx.step("checkout", SATCHEL_TOOL, checkout)
    if (work / "v2.caidx").is_file():
        ctx.step("checkout", "casync extract", casync_extract)
    ctx.step("gc", SATCHEL_TOOL, gc)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""


def _daemon_pid(folder: Path) -> int:
    return int((folder / "rsyncd.pid").read_text().split()[0])


def _rsync_total(stats: str) -> int | None:
    sent = _stat(stats, "Total bytes sent")
    received = _stat(stats, "Total bytes received")
    return None if sent is None or received is None else sent + received


def _stat(stats: str, name: str) -> int | None:
    for line in stats.splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1].strip().replace(",", "").split()[0])
    return None


def _rsync_files(stats: str) -> str:
    n = _stat(stats, "Number of regular files transferred")
    return f"{n} files transferred" if n is not None else ""


# -- the tables ----------------------------------------------------------------------------------
def _mb(n: int) -> str:
    return f"{n / 1e6:.0f}"


def _rate(mb_per_s: float) -> str:
    return f"{mb_per_s:.0f}" if mb_per_s >= 10 else f"{mb_per_s:.2g}"


def _peak(u: Usage | None) -> str:
    return "" if u is None else f"{_mb(u.peak_anon)} / {_mb(u.peak_file)}"


def _x(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    ratio = value / base
    return f"{ratio:.1f}" if ratio >= 1 else f"{ratio:.2g}"


def _peer(rows: Sequence[Row], row: Row) -> Row | None:
    for other in rows:
        if other.data == row.data and other.work == row.work and other.tool != SATCHEL_TOOL:
            return other
    return None


def render(rows: Sequence[Row], labels: dict[str, str]) -> str:
    headers = [
        "data", "work", "tool", "wall s", "wall x peer", "CPU s client + server",
        "CPU x peer", "client CPU s/GB", "MB/s", "client peak MB anon / file",
        "server peak MB anon / file", "bytes", "bytes x peer", "note",
    ]  # fmt: skip
    body: list[list[object]] = []
    for row in rows:
        label = labels.get(row.data, row.data)
        if row.wall is None or row.client is None:
            body.append([label, row.work, row.tool, *[""] * (len(headers) - 4), row.status])
            continue
        peer = _peer(rows, row) if row.tool == SATCHEL_TOOL else None
        cpu = f"{row.client.cpu:.2f}" + (f" + {row.server.cpu:.2f}" if row.server else "")
        per_gb = f"{row.client.cpu / (row.tree_bytes / 1e9):.1f}" if row.tree_bytes else ""
        rate = _rate(row.tree_bytes / row.wall / 1e6) if row.tree_bytes else ""
        body.append(
            [
                label, row.work, row.tool, f"{row.wall:.2f}",
                _x(row.wall, peer.wall if peer else None), cpu,
                _x(row.cpu, peer.cpu if peer else None), per_gb, rate,
                _peak(row.client), _peak(row.server),
                row.wire if row.wire is not None else "",
                _x(row.wire, peer.wire if peer else None), row.status,
            ]
        )  # fmt: skip
    return table(headers, body)


def render_growth(rows: Sequence[Row], datasets: Sequence[tuple[Dataset, int, int]]) -> str:
    """A one-file update and the local commands against the number of files."""
    headers = [
        "files", "MB", "update bytes: satchel", "rsync -rltz", "x rsync",
        "update publish: wall s (client + server CPU s)",
        "update sync: wall s (client + server CPU s)", "status s", "viewer contents s",
        "checkout s", "gc s",
    ]  # fmt: skip

    def find(data: Dataset, work: str, tool: str = SATCHEL_TOOL) -> Row | None:
        for row in rows:
            if row.data == data.label and row.work == work and row.tool.startswith(tool):
                return row
        return None

    def costs(row: Row | None) -> str:
        if row is None or row.wall is None or row.client is None:
            return row.status if row else ""
        server = f" + {row.server.cpu:.2f}" if row.server else ""
        return f"{row.wall:.2f} ({row.client.cpu:.2f}{server})"

    def wall(row: Row | None) -> str:
        if row is None or row.wall is None:
            return row.status if row else ""
        return f"{row.wall:.2f}"

    body: list[list[object]] = []
    for data, files, size in datasets:
        if not data.growth:
            continue
        ours, theirs = find(data, "update: sync"), find(data, "update: sync", "rsync")
        body.append(
            [
                files, _mb(size),
                ours.wire if ours and ours.wire is not None else "",
                theirs.wire if theirs and theirs.wire is not None else "",
                _x(ours.wire if ours else None, theirs.wire if theirs else None),
                costs(find(data, "update: publish")), costs(ours),
                wall(find(data, "status")), wall(find(data, "view: contents")),
                wall(find(data, "checkout")), wall(find(data, "gc")),
            ]
        )  # fmt: skip
    return table(headers, body)


# -- main ----------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Publish, first sync, one-file update, USB export/import and local commands"
        " at growing sizes: Satchel against casync make, rsync and cp -r in the same run, with"
        " CPU, wall time and peak memory. Prints Markdown tables.",
    )
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="small",
        help="small: intro-stats, 0.25 GiB of video, 1,000 pages; medium: 1 GiB, 1,000 and"
        " 10,000 pages; large: 4 GiB, 1,000, 10,000 and 100,000 pages (default small)",
    )  # fmt: skip
    parser.add_argument("--video-gib", type=float, help="video course size (0: none)")
    parser.add_argument(
        "--pages", type=page_counts, help="comma-separated page counts, e.g. 1000,10000 (0: none)"
    )
    parser.add_argument("--no-corpus", action="store_true", help="leave out intro-stats v2")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="the shared corpus (default ../shared/corpus)"
    )
    parser.add_argument("--seed", type=int, default=16, help="seed of the generated data")
    parser.add_argument("--workdir", type=Path, help="where to write (default: a /tmp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--step-timeout", type=float, default=1800.0,
        help="seconds one command may take before it is stopped and noted (default 1800)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="py-spy profiles of Satchel's client and server for --profile-steps into DIR",
    )  # fmt: skip
    parser.add_argument(
        "--profile-steps", default="publish,first sync",
        help="comma-separated steps to profile (default: publish,first sync)",
    )  # fmt: skip
    parser.add_argument(
        "--profile-mode", choices=sorted(MODES), default="active",
        help="active: running threads (default); idle: waiting ones too (where wall time"
        " goes); gil: only the thread holding the GIL (Python's CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--stop-after", choices=PHASES,
        help="run the steps up to this phase only (e.g. to profile a publish)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every row as JSON to this file")
    parser.add_argument(
        "--install", action="store_true", help="apt-get install casync and rsync if missing"
    )
    return parser.parse_args(argv)


def datasets_for(args: argparse.Namespace) -> list[Dataset]:
    size = SIZES[args.size]
    video = size.video_gib if args.video_gib is None else args.video_gib
    pages = size.pages if args.pages is None else args.pages
    out: list[Dataset] = []
    if size.corpus and not args.no_corpus:
        out.append(corpus_dataset(args.corpus))
    if video > 0:
        out.append(video_dataset(video, args.seed))
    out += [pages_dataset(n, args.seed) for n in sorted(pages)]
    return out


def prepare(
    data: Dataset,
    work: Path,
    args: argparse.Namespace,
    recorder: Recorder | None,
    steps: set[str],
) -> Context:
    """Makes the data set's tree in a fresh work folder."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    src = data.built(work / "tree")
    files, size = tree_size(src)
    log(f"[{data.label}] {files:,} files, {size:,} bytes, made in {time.monotonic() - t0:.0f} s")
    return Context(
        data,
        src,
        work,
        args.step_timeout,
        recorder,
        steps,
        stop_after=args.stop_after or "",
        files=files,
        size=size,
    )


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM/SIGHUP become an exception, so every ``with`` stops its server by PID.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    absent = tools.missing(["casync", "rsync", "cp"])
    if absent and args.install:
        tools.apt_install([c for c in absent if c in tools.PACKAGES], log)
        absent = tools.missing(["casync", "rsync", "cp"])
    if absent:
        sys.exit(f"not installed: {', '.join(absent)} (apt-get install casync rsync, or --install)")
    recorder = Recorder(args.profile, mode=args.profile_mode) if args.profile else None
    steps = {s.strip() for s in args.profile_steps.split(",") if s.strip()}
    load_before = os.getloadavg()
    started = time.monotonic()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="satchel-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    startup = run_measured([SATCHEL, "--help"], root / "logs", timeout=60)
    rows: list[Row] = []
    sizes: list[tuple[Dataset, int, int]] = []
    try:
        for data in datasets_for(args):
            ctx = prepare(data, root / data.slug, args, recorder, steps)
            sizes.append((data, ctx.files, ctx.size))
            try:
                measure(ctx)
            finally:
                rows += ctx.rows
                if not args.keep:
                    shutil.rmtree(ctx.work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root / "logs", ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    labels = {d.label: f"{d.label} ({f:,} files, {s / 1e6:,.0f} MB)" for d, f, s in sizes}
    print(render(rows, labels))
    print()
    if any(d.growth for d, _, _ in sizes) and any(r.work == "update: sync" for r in rows):
        print(render_growth(rows, sizes))
        print()
    versions = "; ".join(tools.tool_version(c) for c in ("casync", "rsync"))
    before, after = (", ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(
        f"Measured in one run on {os.cpu_count()} CPUs, load average before {before}, after"
        f" {after}; {versions}; runtime {time.monotonic() - started:.0f} s. Every tool is a"
        " whole process on 127.0.0.1, data in the page cache. wall = start to exit (Satchel's"
        f" includes its start-up: `satchel --help` takes {startup.wall:.2f} s,"
        f" {startup.usage.cpu:.2f} s CPU); CPU = user + system (client from wait4, server from"
        " /proc/PID/stat over the step, a fresh `satchel serve` per step; rsync's daemon with"
        " its forked connection); peaks sampled every 50 ms (RssAnon / RssFile, each its own"
        " maximum); x peer = Satchel / the peer row below it. bytes: first sync = sync --json"
        " (Satchel) or --stats (rsync) payload; export = bytes on the stick; update: sync ="
        " both ways through a counting proxy. MB/s and CPU/GB are per byte of the tree"
        " (import: of the stick). casync make --without=all, default 64 KiB chunks; rsync"
        " without -z for the first sync, with -z for the update. status: two versions kept;"
        " viewer contents: the first GET of the table of contents after `satchel view` starts (the"
        " second in the note); checkout: the new version, checked against the tree; gc --keep 1"
        " drops the old one."
    )
    if args.json:
        args.json.write_text("\n".join(json.dumps(asdict(r)) for r in rows) + "\n", "utf-8")
    if recorder is not None:
        print("\n## Profiles (py-spy, collapsed stacks in " + str(recorder.out) + ")\n")
        for path in sorted(recorder.out.glob("*.txt")):
            print(summary(path))
            print()
    return 1 if any(r.status.startswith(("failed", "WRONG")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
