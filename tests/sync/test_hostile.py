"""The hostile input catalogue of docs/security.md, one test (or parametrized group) per row.

Each test is named ``test_hNN_...`` after its row. Rows whose defence already has a thorough
test elsewhere say so in the catalogue; the tests here add what was missing, mostly at the
level a user meets it: a client syncing from a source that signs or sends something hostile
(in process: :class:`~harness.repo.RepoFetcher` over a real Repository, so the real
:class:`~satchel.sync.updater.Updater` does the refusing), and the server's HTTP API (FastAPI
TestClient over a real Repository with a folder store).

Every refusal must leave the client's held version intact and write nothing outside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from satchel.content import canonical
from satchel.content.chunking import ChunkerParams
from satchel.content.errors import (
    FormatError,
    IntegrityError,
    TruncatedError,
    TrustError,
    UsageError,
)
from satchel.content.index import IndexEntry, parse_index
from satchel.content.manifest import MAX_MANIFEST_BYTES, FileEntry, Manifest
from satchel.content.objects import RAW, ZSTD, encode_object
from satchel.content.signing import SigningKey
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync.checkout import checkout
from satchel.sync.local import LocalStore
from satchel.sync.pack import MAGIC, PACK_MEDIA_TYPE, pack_bytes
from satchel.sync.release import sign_index
from satchel.sync.status import store_status
from satchel.sync.store import FolderChunkStore
from satchel.sync.updater import Updater

from harness.hostile_http import hostile_server
from harness.http import TestClient
from harness.repo import (
    RepoFetcher,
    assert_same_tree,
    make_repository,
    publish,
    rewrite_frame,
    sample_files,
    served_manifest,
    split_pack,
    write_tree,
)
from harness.zstd_forge import forge_content_size

SMALL = ChunkerParams(min_size=512, avg_size=2048, max_size=8192)


# -- a client holding v1, and forged versions ----------------------------------------------
@dataclass
class World:
    tmp: Path
    repo: Repository
    v1: dict[str, bytes]
    store: LocalStore
    fetcher: RepoFetcher
    updater: Updater

    def sync(self) -> object:
        return self.updater.sync("course", "en")

    @property
    def version(self) -> int | None:
        ref = self.store.ref("course", "en")
        return ref.version if ref else None

    def assert_intact(self, name: str = "out") -> None:
        """v1 is still current and checks out whole; nothing landed outside the store."""
        assert self.version == 1
        ref = self.store.ref("course", "en")
        assert ref is not None
        out = self.tmp / name
        checkout(self.store.load_manifest(ref.manifest), self.store.objects, out)
        assert_same_tree(self.v1, out)
        assert not (self.tmp / "escape.txt").exists()
        assert not (self.tmp.parent / "escape.txt").exists()

    def offer(self, signed: dict[str, Any], key: SigningKey | None = None) -> str:
        """Serve a manifest made of ``signed`` (signed by ``key``, default the publisher's) as
        the line's next version, under a fresh index signed by the publisher."""
        envelope = (key or self.repo.key).sign(signed)
        mid = hashlib.sha256(envelope).hexdigest()
        serial = parse_index(self.repo.source.index("course", "en")[0])[1].serial + 1
        entry = IndexEntry("course", "en", int(signed["version"]), mid, len(envelope), "Course")
        self.fetcher.index_override = sign_index(
            [entry], serial=serial, key=self.repo.key, now=datetime.now(UTC).replace(microsecond=0)
        )
        self.fetcher.manifest_overrides[mid] = encode_object(envelope, level=3)
        return mid


@pytest.fixture
def world(tmp_path: Path) -> World:
    repo = make_repository(tmp_path / "srv")
    v1 = sample_files(3)
    publish(repo, write_tree(tmp_path / "src", v1))
    store = LocalStore(tmp_path / "client", durable=False)
    fetcher = RepoFetcher(repo)
    w = World(tmp_path, repo, v1, store, fetcher, Updater(store, fetcher))
    w.sync()
    assert w.version == 1
    return w


def next_manifest(w: World, files: list[FileEntry] | None = None, **changes: Any) -> Manifest:
    base = served_manifest(w.repo)
    out = replace(base, version=2, parent_version=1, **changes)
    if files is not None:
        out = replace(out, files=tuple(files))
    return out


def signed_with(w: World, files: list[FileEntry]) -> dict[str, Any]:
    return next_manifest(w, files).to_signed()


def entry(w: World, path: str, **changes: Any) -> FileEntry:
    return replace(served_manifest(w.repo).files[0], path=path, **changes)


# -- H1-H5: paths ------------------------------------------------------------------------------
TRAVERSAL = ["../escape.txt", "media/../../escape.txt", "./README.md", "a//b.txt", "a\\..\\b"]
ABSOLUTE = ["/tmp/escape.txt", "/etc/passwd"]
TOO_LONG = ["x" * 256, "/".join(["d" * 200] * 6), "é" * 128]


def _refused_path(w: World, files: list[FileEntry]) -> None:
    w.offer(signed_with(w, files))
    w.fetcher.reset()
    with pytest.raises(FormatError):
        w.sync()
    assert w.fetcher.pack_calls == []  # refused on the manifest, before any chunk is asked for
    w.assert_intact()


@pytest.mark.parametrize("path", TRAVERSAL)
def test_h01_traversal_in_a_signed_manifest_is_refused(world: World, path: str) -> None:
    _refused_path(world, [*served_manifest(world.repo).files, entry(world, path)])


@pytest.mark.parametrize("path", ABSOLUTE)
def test_h02_absolute_path_in_a_signed_manifest_is_refused(world: World, path: str) -> None:
    _refused_path(world, [entry(world, path), *served_manifest(world.repo).files])


@pytest.mark.parametrize("mode", [0o120777, 0o40755, 0o104755, 0o20644])
def test_h03_links_and_special_files_in_a_signed_manifest_are_refused(
    world: World, mode: int
) -> None:
    """A manifest holds regular files only (0644/0755): no symlink, folder, setuid, device."""
    _refused_path(world, [*served_manifest(world.repo).files, entry(world, "zz", mode=mode)])


def test_h03_a_link_in_the_checkout_destination_is_not_followed(world: World) -> None:
    """A symlink planted in an earlier checkout is replaced, never written through."""
    outside = world.tmp / "outside"
    outside.mkdir()
    dest = world.tmp / "lesson"
    world.assert_intact("lesson")
    shutil.rmtree(dest / "chapters")
    os.symlink(outside, dest / "chapters")
    world.assert_intact("lesson")
    assert list(outside.iterdir()) == []
    assert not (dest / "chapters").is_symlink()


@pytest.mark.parametrize("kind", ["duplicate", "case", "file-and-folder", "nfd"])
def test_h04_duplicate_or_colliding_paths_are_refused(world: World, kind: str) -> None:
    files = list(served_manifest(world.repo).files)
    first = files[0].path
    extra = {
        "duplicate": first,
        "case": first.upper() if first.upper() != first else first.lower(),
        "file-and-folder": f"{first}/inner.txt",
        "nfd": "cafe\u0301.txt",  # not NFC: would collide with café.txt on macOS
    }[kind]
    _refused_path(world, sorted([*files, entry(world, extra)], key=lambda f: f.path))


@pytest.mark.parametrize("path", TOO_LONG)
def test_h05_over_long_names_are_refused(world: World, path: str) -> None:
    """255 bytes per component and 1,024 per path (UTF-8), under every OS's limits."""
    _refused_path(world, [*served_manifest(world.repo).files, entry(world, path)])


NOT_PORTABLE = ["notes/12:30.md", "what?.md", 'say "hi".md', "CON.txt", "lessons/aux", "end.", "x "]


@pytest.mark.parametrize("path", NOT_PORTABLE)
def test_h32_names_a_usb_stick_or_windows_cannot_hold_are_refused_at_publish(
    world: World, http: TestClient, admin: str, path: str
) -> None:
    """FAT/exFAT/NTFS cannot hold these names: a teacher's publish and a draft sent straight
    to the server are refused, naming the path and why; the published line is untouched."""
    src = write_tree(world.tmp / "bad", {**world.v1, path: b"a lesson"})
    with pytest.raises(UsageError, match="cannot hold") as info:  # the folder must change
        publish(world.repo, src)
    assert repr(path) in str(info.value) and "rename it" in str(info.value)
    assert served_manifest(world.repo).version == 1
    draft = canonical.encode(
        {
            "title": "Hostile",
            "chunker": SMALL.to_json(),
            "files": [
                {"path": path, "size": 1, "mode": 0o644, "media_type": "text/plain",
                 "chunks": [[hashlib.sha256(b"x").hexdigest(), 1]]}
            ],
        }
    )  # fmt: skip
    r = http.post("/v1/publish/course/en", content=draft, headers=bearer(admin))
    assert r.status_code == 422, r.text
    assert "cannot hold" in r.json()["error"] and path in r.json()["error"]


def test_h32_a_manifest_signed_before_the_rule_still_syncs(world: World) -> None:
    """Readers only publish-check: a version signed with such names still syncs and checks
    out on a disk that can hold them (a laptop is never cut off from what it could read)."""
    odd = entry(world, "notes/12:30.md")
    files = sorted([*served_manifest(world.repo).files, odd], key=lambda f: f.path)
    world.offer(signed_with(world, files))
    world.fetcher.reset()
    world.sync()
    assert world.version == 2
    ref = world.store.ref("course", "en")
    assert ref is not None
    out = world.tmp / "out-v2"
    checkout(world.store.load_manifest(ref.manifest), world.store.objects, out)
    first = served_manifest(world.repo).files[0].path
    assert (out / "notes/12:30.md").read_bytes() == world.v1[first]


@pytest.mark.parametrize("path", TRAVERSAL[:2] + ABSOLUTE[:1] + TOO_LONG[:1] + ["A.txt|a.txt"])
def test_h01_to_h05_the_server_refuses_the_same_paths_in_a_draft(
    http: TestClient, admin: str, path: str
) -> None:
    paths = path.split("|")
    draft = canonical.encode(
        {
            "title": "Hostile",
            "chunker": SMALL.to_json(),
            "files": [
                {"path": p, "size": 1, "mode": 0o644, "media_type": "text/plain",
                 "chunks": [[hashlib.sha256(b"x").hexdigest(), 1]]}
                for p in paths
            ],
        }
    )  # fmt: skip
    r = http.post("/v1/publish/course/en", content=draft, headers=bearer(admin))
    assert r.status_code == 422, r.text
    assert "path" in r.json()["error"]


# -- H6-H7: zstd bombs -----------------------------------------------------------------------
def _frame_rewrite(change: Any) -> Any:
    """Rewrite the first zstd frame of a pack."""

    def rewrite(body: bytes) -> bytes:
        frames = split_pack(body)
        index = next(i for i, (_cid, obj) in enumerate(frames) if obj[0] == ZSTD)
        return rewrite_frame(index, change)(body)

    return rewrite


def _update_to_v2(w: World) -> dict[str, bytes]:
    v2 = dict(w.v1)
    v2["chapters/03-more.html"] = w.v1["chapters/01-intro.html"][::-1]
    publish(w.repo, write_tree(w.tmp / "src2", v2))
    return v2


def _refused_pack(w: World, error: type[Exception] = FormatError) -> None:
    stored_before = set(w.store.objects)
    with pytest.raises(error):
        w.sync()
    w.fetcher.pack_rewrite = None
    assert w.version == 1
    # Whatever was kept verified: fsck of the store is clean, and nothing unrequested came in.
    from satchel.sync.fsck import fsck

    assert fsck(w.store).clean
    assert set(w.store.objects) >= stored_before
    w.assert_intact()


@pytest.mark.parametrize("size", [2**32, 2**62, 64 * 1024 * 1024 + 1])
def test_h06_a_frame_forging_its_content_size_is_refused_before_decompressing(
    world: World, size: int
) -> None:
    _update_to_v2(world)
    world.fetcher.pack_rewrite = _frame_rewrite(
        lambda obj: bytes([ZSTD]) + forge_content_size(obj[1:], size)
    )
    _refused_pack(world, (FormatError, IntegrityError))  # type: ignore[arg-type]


def test_h07_a_frame_asking_for_a_huge_window_is_refused(world: World) -> None:
    _update_to_v2(world)

    def huge_window(obj: bytes) -> bytes:
        frame = bytearray(obj[1:])
        frame[4] &= ~0x20  # not single-segment: a window descriptor byte follows the header
        frame.insert(5, 0xF8)  # exponent 31: a 2 GiB window
        return bytes([ZSTD]) + bytes(frame)

    world.fetcher.pack_rewrite = _frame_rewrite(huge_window)
    _refused_pack(world, (FormatError, IntegrityError))  # type: ignore[arg-type]


# -- H8-H10: oversized documents, packs, bodies ------------------------------------------------
def test_h08_a_manifest_larger_than_its_index_entry_says_is_refused(world: World) -> None:
    signed = next_manifest(world).to_signed()
    signed["title"] = "x" * 400
    mid = world.offer(signed)
    # The index says N bytes; the source sends a bigger object under that id.
    world.fetcher.manifest_overrides[mid] = bytes([RAW]) + b"{" * 5_000_000
    with pytest.raises((FormatError, IntegrityError, TrustError)):
        world.sync()
    world.assert_intact()


def test_h08_an_index_entry_declaring_a_manifest_over_the_limit_is_refused(world: World) -> None:
    serial = parse_index(world.repo.source.index("course", "en")[0])[1].serial + 1
    entry_ = IndexEntry("course", "en", 2, "ab" * 32, MAX_MANIFEST_BYTES + 1, "Course")
    world.fetcher.index_override = sign_index(
        [entry_], serial=serial, key=world.repo.key, now=datetime.now(UTC)
    )
    with pytest.raises(FormatError, match="size"):
        world.sync()
    world.assert_intact()


@pytest.mark.parametrize("length", [2**32 - 1, 64 * 1024 * 1024 + 65])
def test_h09_a_pack_frame_over_the_limit_is_refused_from_its_header(
    world: World, length: int
) -> None:
    _update_to_v2(world)

    def oversized(body: bytes) -> bytes:
        frames = split_pack(body)
        cid = bytes.fromhex(frames[0][0])
        return MAGIC + cid + length.to_bytes(4, "big") + b"\0" * 100

    world.fetcher.pack_rewrite = oversized
    _refused_pack(world)


# -- H10/H11: server request bodies and time ---------------------------------------------------
@pytest.fixture
def server_repo(tmp_path: Path) -> Repository:
    data = tmp_path / "srv-http"
    return Repository(data, store=FolderChunkStore(data / "objects", durable=False))


@pytest.fixture
def http(server_repo: Repository) -> Any:
    with TestClient(create_app(server_repo), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin(server_repo: Repository) -> str:
    return server_repo.tokens.create("admin", label="tests")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _begin_one(http: TestClient, admin: str, data: bytes) -> str:
    draft = canonical.encode(
        {
            "title": "One",
            "chunker": SMALL.to_json(),
            "files": [
                {"path": "a.txt", "size": len(data), "mode": 0o644, "media_type": "text/plain",
                 "chunks": [[hashlib.sha256(data).hexdigest(), len(data)]]}
            ],
        }
    )  # fmt: skip
    r = http.post("/v1/publish/course/en", content=draft, headers=bearer(admin))
    assert r.status_code == 200, r.text
    return str(r.json()["upload"])


def test_h10_an_upload_longer_than_its_draft_allows_is_refused_unread(
    http: TestClient, admin: str, server_repo: Repository
) -> None:
    data = b"hello " * 100
    up = _begin_one(http, admin, data)
    headers = {**bearer(admin), "Content-Type": PACK_MEDIA_TYPE}
    # Declared too long: refused from the header (8 dictionaries + the one chunk, raw).
    r = http.post(
        f"/v1/uploads/{up}/pack",
        content=b"\0" * (9 * 1024 * 1024 + 4096),
        headers=headers,
    )
    assert r.status_code == 413, r.text
    assert "over" in r.json()["error"]

    # Streamed (no Content-Length) and repeating a valid frame forever: cut at the bound.
    cid = hashlib.sha256(data).hexdigest()
    one = pack_bytes([(cid, bytes([RAW]) + data)])[len(MAGIC) : -36]

    def endless() -> Any:
        yield MAGIC
        for _ in range(20_000):
            yield one

    r = http.post(f"/v1/uploads/{up}/pack", content=endless(), headers=headers)
    assert r.status_code == 413, r.text
    # The honest upload still works afterwards.
    r = http.post(
        f"/v1/uploads/{up}/pack", content=pack_bytes([(cid, bytes([RAW]) + data)]), headers=headers
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "size"),
    [
        ("/v1/pack", 8 * 1024 * 1024 + 1),
        ("/v1/publish/course/en", MAX_MANIFEST_BYTES + 1),
    ],
)
def test_h10_oversized_request_bodies_are_refused(
    http: TestClient, admin: str, path: str, size: int
) -> None:
    r = http.post(path, content=b" " * size, headers=bearer(admin))
    assert r.status_code == 413, r.text


def test_h10_an_oversized_commit_body_is_refused(http: TestClient, admin: str) -> None:
    up = _begin_one(http, admin, b"abc")
    r = http.post(f"/v1/uploads/{up}/commit", content=b" " * 70_000, headers=bearer(admin))
    assert r.status_code == 413, r.text


def test_h11_a_stalled_upload_is_dropped_with_408(server_repo: Repository, admin: str) -> None:
    """A client that starts an upload and then sends nothing is cut after the idle limit."""
    app = create_app(server_repo, upload_idle=0.3)
    with TestClient(app) as c:
        up = _begin_one(c, admin, b"abc")

    sent: list[dict[str, Any]] = []
    bodies = [{"type": "http.request", "body": MAGIC, "more_body": True}]

    async def receive() -> dict[str, Any]:
        if bodies:
            return bodies.pop(0)
        await asyncio.sleep(30)  # the stall
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/uploads/{up}/pack",
        "raw_path": f"/v1/uploads/{up}/pack".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {admin}".encode()),
            (b"content-type", PACK_MEDIA_TYPE.encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def drive() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(app(scope, receive, send), 10)
        return loop.time() - began

    took = asyncio.run(drive())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    assert took < 5


# -- H12: malformed and truncated packs --------------------------------------------------------
@pytest.mark.parametrize(
    "rewrite",
    [
        lambda b: b[: len(b) // 2],  # cut mid-way
        lambda b: b[:-1],  # trailer short by a byte
        lambda b: b"SATPACK\x02" + b[8:],  # a pack format this client does not know
        lambda b: b"<html>502 Bad Gateway</html>",  # a proxy's error page
        lambda b: b + b"extra",  # data after the trailer
        lambda b: b[:-4] + (999).to_bytes(4, "big"),  # the trailer miscounts
    ],
    ids=["cut", "short-trailer", "pack-v2", "html", "trailing-data", "miscount"],
)
def test_h12_malformed_or_truncated_packs_are_refused(world: World, rewrite: Any) -> None:
    _update_to_v2(world)
    world.fetcher.pack_rewrite = rewrite
    _refused_pack(world, (FormatError, TruncatedError, IntegrityError))  # type: ignore[arg-type]
    v2 = world.sync()  # and the next honest sync completes
    assert world.version == 2, v2


# -- H13: forged signatures ----------------------------------------------------------------------
def test_h13_a_manifest_signed_by_another_key_is_refused(world: World) -> None:
    world.offer(next_manifest(world).to_signed(), key=SigningKey.generate())
    with pytest.raises(TrustError):
        world.sync()
    world.assert_intact()


def test_h13_an_index_signed_by_another_key_under_the_pinned_keyid_is_refused(
    world: World,
) -> None:
    forger = SigningKey.generate()
    good = parse_index(world.repo.source.index("course", "en")[0])[1]
    signed = replace(good, serial=good.serial + 1).to_signed()
    envelope = canonical.decode(forger.sign(signed), what="t", max_bytes=1 << 20)
    assert isinstance(envelope, dict)
    for sig in envelope["signatures"]:
        sig["keyid"] = world.repo.key.public.keyid  # claim to be the publisher
    world.fetcher.index_override = canonical.encode(envelope)
    with pytest.raises((TrustError, FormatError)):
        world.sync()
    world.assert_intact()


# -- H14: rollback -------------------------------------------------------------------------------
def test_h14_a_replayed_older_index_is_refused(world: World) -> None:
    old = world.repo.source.index("course", "en")[0]
    _update_to_v2(world)
    world.sync()
    assert world.version == 2
    world.fetcher.index_override = old
    with pytest.raises(TrustError, match="rollback"):
        world.sync()
    assert world.version == 2


# -- H15: freeze -----------------------------------------------------------------------------------
def test_h15_a_stale_index_past_expiry_is_refused_but_the_laptop_keeps_learning(
    world: World,
) -> None:
    """Weeks offline then a source that serves only an expired index (a frozen mirror or an
    attacker replaying it): the sync says so, and what the laptop holds stays usable."""
    later = datetime.now(UTC) + timedelta(days=61)
    frozen = Updater(world.store, world.fetcher, clock=lambda: later)
    with pytest.raises(TrustError, match="expired"):
        frozen.sync("course", "en")
    world.assert_intact()  # checkout of the held version works
    status = store_status(world.store)  # and so does status, offline
    assert [line.version for line in status.lines] == [1]


# -- H16: a changed server key -------------------------------------------------------------------
def test_h16_a_server_with_a_new_key_is_refused_without_trust(world: World) -> None:
    rotated = Repository(world.tmp / "srv", store=world.repo.store, signing_key=world.tmp / "k2")
    world.fetcher.repo = rotated
    with pytest.raises(TrustError):
        world.sync()
    world.assert_intact()
    assert world.store.pinned_key() == world.repo.key.public


# -- H17: unknown format versions ------------------------------------------------------------
def test_h17_an_unknown_manifest_format_says_to_update(world: World) -> None:
    signed = next_manifest(world).to_signed()
    signed["format"] = 2
    world.offer(signed)
    with pytest.raises(FormatError, match="manifest format"):
        world.sync()
    world.assert_intact()


def test_h17_an_unknown_index_format_says_to_update(world: World) -> None:
    good = parse_index(world.repo.source.index("course", "en")[0])[1]
    signed = replace(good, serial=good.serial + 1).to_signed()
    signed["format"] = 3
    world.fetcher.index_override = world.repo.key.sign(signed)
    with pytest.raises(FormatError, match="update satchel"):
        world.sync()
    world.assert_intact()


@pytest.mark.parametrize("byte", [0x05, 0x7F, 0xFF])
def test_h17_an_unknown_object_format_byte_is_refused(world: World, byte: int) -> None:
    _update_to_v2(world)
    world.fetcher.pack_rewrite = rewrite_frame(0, lambda obj: bytes([byte]) + obj[1:])
    _refused_pack(world)


# -- H36: a hostile server's huge or endless bodies (issue 12, finding 6a) ---------------------
# `satchel sync` run in a subprocess of its own, which reports its exit code and its peak
# resident memory (getrusage) to a file.
CLIENT = """
import json, resource, sys
from satchel.cli import main
report, sys.argv = sys.argv[1], ["satchel", *sys.argv[2:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with open(report, "w") as f:
    json.dump({"code": code, "peak": peak}, f)
"""


@dataclass
class ClientRun:
    code: int
    peak: int  # bytes
    stderr: str
    sent: int  # body bytes the server got out before the client stopped reading


def _sync_against(tmp: Path, mode: str) -> ClientRun:
    tmp.mkdir()
    report = tmp / "report.json"
    with hostile_server(mode) as server:
        args = ["sync", "--server", server.url, "--bundle", "course", "--store", str(tmp / "s")]
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, str(report), *args, "--retries", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        )
        sent = max(server.sent, default=0)
    done = json.loads(report.read_text())
    return ClientRun(int(done["code"]), int(done["peak"]), proc.stderr, sent)


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("error-3g", 4, "HTTP 500 Internal Server Error"),
        ("error-endless", 4, "HTTP 503 Service Unavailable"),
        ("index-3g", 3, "release index is 3,221,225,472 bytes, over its 65,536-byte limit"),
        ("index-endless", 3, "release index is over its 65,536-byte limit; stopped reading"),
    ],
)
def test_h36_a_servers_huge_or_endless_body_costs_the_client_little_memory(
    tmp_path: Path, mode: str, code: int, words: str
) -> None:
    """Issue 12, finding 6: a 3 GiB error body drove `satchel sync` to 6 GB of memory. Every
    body is now read within its bound (an error's message: 4 KiB; the index: 8 MiB), the
    connection closed on the rest, and the error says what happened in one line."""
    baseline = _sync_against(tmp_path / "baseline", "error-small")
    assert baseline.code == 4 and "the server is having a bad day" in baseline.stderr
    hostile = _sync_against(tmp_path / "hostile", mode)
    lines = [line for line in hostile.stderr.splitlines() if line.strip()]
    assert hostile.code == code and len(lines) == 1 and words in lines[0], hostile
    assert hostile.peak < baseline.peak + 48 * 1024 * 1024, (hostile.peak, baseline.peak)
    # The client stopped reading: far less than the 3 GiB (or endless) body ever left the server.
    assert hostile.sent < 64 * 1024 * 1024, hostile.sent
