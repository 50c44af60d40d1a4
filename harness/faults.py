"""Fault injection shared by ``tests/e2e/test_faults.py`` and ``bench/faults.py``.

Everything here drives the real ``satchel`` command and a real ``satchel serve`` subprocess
(:mod:`harness.e2e`); faults are injected from outside, the way they happen in the
field: a link cut at a byte (:class:`~harness.proxy.LoopbackProxy`), a byte flipped on
the wire (:class:`FlipProxy`) or on disk (:func:`flip_byte`), a server killed with SIGKILL
(:func:`kill_server`), a disk that fills up (:mod:`harness.diskfull`).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from satchel.content.manifest import parse_manifest
from satchel.content.objects import decode_object

from harness.e2e import SATCHEL, CliResult, SatchelServer, _env, run_cli, sync
from harness.proxy import LoopbackProxy

BUNDLE = "course"


# -- trees -----------------------------------------------------------------------------------
def course_tree(root: Path, *, seed: int, text_kb: int = 600, binary_kb: int = 900) -> Path:
    """A course of text (compressible, several chunks) and random media (stored raw)."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(rng.randint(2, 9)))
        for _ in range(500)
    ]

    def text(size: int) -> bytes:
        out = " ".join(rng.choice(words) for _ in range(size // 4)).encode()
        return out[:size]

    files = {
        "README.md": text(8_000),
        "lessons/01/index.html": text(text_kb * 1024 // 2),
        "lessons/02/index.html": text(text_kb * 1024 // 2),
        "media/video.bin": rng.randbytes(binary_kb * 1024 * 2 // 3),
        "media/photo.bin": rng.randbytes(binary_kb * 1024 // 3),
        "empty.txt": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    return root


def edited_tree(src: Path, dst: Path, *, seed: int, new_kb: int = 64) -> Path:
    """A copy of ``src`` with one lesson edited in the middle and one new media file."""
    rng = random.Random(seed)
    shutil.copytree(src, dst)
    lesson = dst / "lessons/01/index.html"
    data = lesson.read_bytes()
    mid = len(data) // 2
    lesson.write_bytes(data[:mid] + f" edit {seed} ".encode() + data[mid:])
    (dst / f"media/new-{seed}.bin").write_bytes(rng.randbytes(new_kb * 1024))
    return dst


def current_version(store: Path, bundle: str = BUNDLE) -> int | None:
    ref = store / "refs" / bundle / "en.json"
    return int(json.loads(ref.read_text())["version"]) if ref.exists() else None


def published(res: CliResult) -> int:
    if res.code != 0:
        raise AssertionError(f"publish failed: {res.describe()}")
    return int(res.stdout.strip())


# -- cuts ------------------------------------------------------------------------------------
@dataclass
class CutRun:
    cuts: int  # cuts that fired
    attempts: int  # sync runs until one finished
    bytes_down: int  # every byte the client received over all attempts
    codes: list[int]
    offsets: list[int]  # where each armed cut was set (bytes into that attempt's download)


def sync_with_cuts(
    proxy: LoopbackProxy, store: Path, rng: random.Random, *, full: int, cuts: int
) -> CutRun:
    """Sync through ``proxy``, cutting the download at a random byte ``cuts`` times, then let
    it finish. Each cut falls somewhere in what is still to come (at most ``full`` bytes, the
    size of one uninterrupted sync), so later cuts land later in the transfer as well."""
    proxy.reset()
    codes: list[int] = []
    fired = 0
    received = 0
    offsets: list[int] = []
    while True:
        if fired < cuts:
            offsets.append(rng.randrange(1, max(full - received, 2)))
            proxy.cut_down_after(offsets[-1])
        res = sync(proxy.url, BUNDLE, store, "--retries", 0)
        codes.append(res.code)
        stats = proxy.stats()
        cut = stats.cuts > fired
        fired = stats.cuts
        if not cut:
            proxy.cut_down_after(None)  # the sync needed fewer bytes than the cut point
        if res.code == 0:
            return CutRun(fired, len(codes), stats.bytes_down, codes, offsets)
        if res.code != 4 or not cut:  # a cut is a link error (exit 4), and only a cut fails
            raise AssertionError(f"sync failed: {res.describe()}")
        received = stats.bytes_down
        if len(codes) > cuts + 5:
            raise AssertionError(f"sync did not finish after {len(codes)} attempts: {codes}")


# -- kills -----------------------------------------------------------------------------------
def kill_server(server: SatchelServer) -> None:
    """SIGKILL: no handler runs, nothing is flushed; as close to a power cut as a process gets."""
    proc, server.proc = server.proc, None
    assert proc is not None
    proc.kill()
    proc.wait(10)


@dataclass
class KillRun:
    delay: float
    publish_code: int
    visible_before_kill: bool  # the publish printed its version before the kill landed


def publish_and_kill(
    server: SatchelServer, token: str, src: Path, delay: float, *, bundle: str = BUNDLE
) -> KillRun:
    """Start a publish, SIGKILL the server ``delay`` seconds later, wait for the publish."""
    args = [str(SATCHEL), "publish", str(src), "--server", server.url, "--token", token]
    args += ["--bundle", bundle]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=_env(),
        text=True,
    )
    time.sleep(delay)
    done_before = proc.poll() is not None
    kill_server(server)
    out, err = proc.communicate(timeout=120)
    code = proc.returncode
    if code not in (0, 1, 4):  # a dead server is a link error (4) or refused mid-way (1)
        raise AssertionError(f"publish exit {code}: {out}\n{err}")
    return KillRun(delay, code, done_before and code == 0)


def server_fsck(data: Path) -> CliResult:
    return run_cli("fsck", "--data", data)


def catalog_versions(data: Path, bundle: str = BUNDLE) -> list[int]:
    """The versions the database lists (read straight from SQLite, server stopped)."""
    with sqlite3.connect(data / "satchel.db") as db:
        rows = db.execute(
            "select version from version where bundle = ? order by version", (bundle,)
        ).fetchall()
    return [int(r[0]) for r in rows]


# -- flips -----------------------------------------------------------------------------------
def chunk_files(data: Path) -> list[tuple[str, Path]]:
    """(id, file) of each content chunk of the latest version of a server's one line: what a
    first sync fetches (not manifests, dictionaries or chunks only older versions use)."""
    with sqlite3.connect(data / "satchel.db") as db:
        mid, size = db.execute(
            "select v.manifest_id, v.manifest_size from version v join line l on"
            " v.bundle = l.bundle and v.locale = l.locale and v.version = l.latest_version"
        ).fetchone()
    obj = (data / "objects" / mid[:2] / mid).read_bytes()
    manifest = parse_manifest(decode_object(obj, size))[1]
    dictionaries = {cid for cid, _ in manifest.dictionaries}
    ids = sorted({cid for cid, _ in manifest.distinct_chunks()} - dictionaries)
    return [(cid, data / "objects" / cid[:2] / cid) for cid in ids]


def flip_byte(path: Path, rng: random.Random) -> int:
    data = bytearray(path.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return at


class FlipProxy:
    """A loopback TCP forwarder that flips one bit of the server-to-client stream.

    ``flip_at`` counts bytes over every connection since it was set; ``None`` forwards
    everything untouched (and still counts, so a clean run measures the stream's length).
    """

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self.flip_at: int | None = None
        self.bit = 0
        self.down = 0
        self.flipped = False
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, at: int | None, bit: int = 0) -> None:
        with self._lock:
            self.flip_at, self.bit, self.down, self.flipped = at, bit, 0, False

    def close(self) -> None:
        self._stop = True
        self._listener.close()

    def __enter__(self) -> FlipProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if down:
                    data = self._maybe_flip(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Each socket is the source of exactly one pump, which closes it; the other pump
            # then fails its send or read and ends too.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()

    def _maybe_flip(self, data: bytes) -> bytes:
        with self._lock:
            start = self.down
            self.down += len(data)
            at = self.flip_at
            if at is None or self.flipped or not start <= at < self.down:
                return data
            self.flipped = True
            buf = bytearray(data)
            buf[at - start] ^= 1 << self.bit
            return bytes(buf)
