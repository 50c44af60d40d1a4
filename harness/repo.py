"""In-process repositories, fetchers and trees for the sync tests.

:class:`RepoFetcher` is a :class:`~satchel.sync.fetcher.Fetcher` over a
:class:`~satchel.server.repository.Repository` in the same process. It records every exchange
(so tests can count round trips and read the want bitmaps) and has hooks to misbehave the
way a bad link, a broken relay or an attacker would: serve another index or manifest, cut
or rewrite the pack stream.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.errors import NotFoundError, TransportError
from satchel.content.index import IndexEntry, parse_index
from satchel.content.manifest import FileEntry, Manifest, parse_manifest
from satchel.content.objects import decode_object, encode_object
from satchel.content.paths import CHECKOUT_MARKER
from satchel.server.publishing import LocalTarget
from satchel.server.repository import Repository
from satchel.sync.fetcher import IndexResponse, PackResponse, RangeResponse
from satchel.sync.pack import PackReader, pack_bytes
from satchel.sync.plan import decode_want
from satchel.sync.publish import Publisher, PublishResult
from satchel.sync.release import sign_index, sign_manifest
from satchel.sync.serving import parse_pack_request
from satchel.sync.store import MemoryChunkStore

# Small chunks: a 60 KB tree already makes dozens of objects, so resumes and partial packs
# have something to cut between, and level-3 compression keeps publishing fast.
SMALL_CHUNKER = Chunker(ChunkerParams(min_size=512, avg_size=2048, max_size=8192))
FAST_LEVEL = 3


# -- trees ---------------------------------------------------------------------------------
def write_tree(root: Path, files: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    """Create ``root`` holding exactly ``files`` (bundle path -> bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, (modes or {}).get(rel, 0o644))
    return root


def text_bytes(
    rng: random.Random, size: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz"
) -> bytes:
    """Compressible, word-like text of exactly ``size`` bytes."""
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9))) for _ in range(400)]
    out: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(words) + rng.choice([" ", " ", " ", ", ", ".\n"])
        out.append(w)
        length += len(w.encode())
    return "".join(out).encode()[:size]


def sample_files(seed: int = 0, *, scale: int = 1) -> dict[str, bytes]:
    """A small course: a few text files, a binary file, a nested folder and an empty file."""
    rng = random.Random(seed)
    return {
        "README.md": text_bytes(rng, 3000 * scale),
        "chapters/01-intro.html": text_bytes(rng, 12000 * scale),
        "chapters/02-data.html": text_bytes(rng, 9000 * scale),
        "media/figure.bin": rng.randbytes(20000 * scale),
        "media/empty.txt": b"",
        "tools/run.sh": b"#!/bin/sh\necho hello\n",
    }


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by bundle path (a checkout's own marker left out)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p != root / CHECKOUT_MARKER
    }


def assert_same_tree(expected: Path | dict[str, bytes], actual: Path) -> None:
    want = expected if isinstance(expected, dict) else tree_files(expected)
    got = tree_files(actual)
    assert sorted(got) == sorted(want)
    for rel, data in want.items():
        assert got[rel] == data, rel


# -- repository ----------------------------------------------------------------------------
def make_repository(path: Path) -> Repository:
    """A repository whose objects live in memory (metadata still in SQLite under ``path``)."""
    return Repository(path, store=MemoryChunkStore())


def admin_target(repo: Repository) -> LocalTarget:
    return LocalTarget(
        repo.publishing, repo.tokens.authenticate(repo.tokens.create("admin", label="tests"))
    )


def publish(
    repo: Repository,
    source: Path,
    *,
    bundle: str = "course",
    locale: str = "en",
    title: str = "Course",
    chunker: Chunker = SMALL_CHUNKER,
    level: int = FAST_LEVEL,
) -> PublishResult:
    return Publisher(admin_target(repo), chunker=chunker, level=level).publish(
        source, bundle=bundle, locale=locale, title=title
    )


def index_entry(repo: Repository, bundle: str, locale: str) -> IndexEntry:
    """The entry of a line's signed index, as the server serves it."""
    return parse_index(repo.source.index(bundle, locale)[0])[1].line


def served_manifest(repo: Repository, bundle: str = "course", locale: str = "en") -> Manifest:
    entry = index_entry(repo, bundle, locale)
    data = decode_object(repo.source.manifest_object(entry.manifest), entry.size)
    return parse_manifest(data)[1]


@dataclass(frozen=True, slots=True)
class Forged:
    """A version signed with the repository's own key but never published through it."""

    manifest_id: str
    manifest_object: bytes
    index: bytes


def forge_version(
    repo: Repository,
    manifest: Manifest,
    *,
    serial: int | None = None,
    now: datetime | None = None,
) -> Forged:
    """Sign ``manifest`` and an index of its line naming it."""
    envelope = sign_manifest(manifest, repo.key)
    mid = hashlib.sha256(envelope).hexdigest()
    _env, current = parse_index(repo.source.index(manifest.bundle, manifest.locale)[0])
    entries = [
        IndexEntry(
            manifest.bundle, manifest.locale, manifest.version, mid, len(envelope), manifest.title
        )
    ]
    body = sign_index(
        entries,
        serial=current.serial + 1 if serial is None else serial,
        key=repo.key,
        now=now or datetime.now(UTC).replace(microsecond=0),
    )
    return Forged(mid, encode_object(envelope, level=FAST_LEVEL), body)


def with_files(manifest: Manifest, files: list[FileEntry], **changes: object) -> Manifest:
    """A copy of ``manifest`` with another file list (and e.g. ``version=``)."""
    return replace(manifest, files=tuple(files), **changes)  # type: ignore[arg-type]


# -- fetcher -------------------------------------------------------------------------------
@dataclass(slots=True)
class PackCall:
    manifest: str
    want: bytes
    plan: list[tuple[str, int]]
    body: bytes
    base: str | None = None  # the held version named for deltas, if any

    @property
    def objects(self) -> int:
        return len(self.plan)


@dataclass
class RepoFetcher:
    """An in-memory Fetcher over ``repo`` that records traffic and can misbehave."""

    repo: Repository
    piece_size: int = 4096
    index_override: bytes | None = None  # serve these index bytes instead of the live index
    manifest_overrides: dict[str, bytes] = field(default_factory=dict)
    pack_rewrite: Callable[[bytes], bytes] | None = None  # rewrite the whole pack body
    cut_after: int | None = None  # raise TransportError after this many pack bytes
    index_calls: list[tuple[str | None, bool]] = field(default_factory=list)
    manifest_calls: list[str] = field(default_factory=list)
    pack_calls: list[PackCall] = field(default_factory=list)
    delta_calls: list[tuple[str, str]] = field(default_factory=list)
    deltas: bool = True  # False: behave like a source with no delta support (plain objects)
    ranges: bool = True  # False: ignore Range like a plain file server (send whole objects)
    range_calls: list[tuple[str, int, int | None]] = field(default_factory=list)
    size_calls: list[str] = field(default_factory=list)  # dry runs: "static" or "dynamic"

    @property
    def requests(self) -> int:
        return (
            len(self.index_calls)
            + len(self.manifest_calls)
            + len(self.pack_calls)
            + len(self.delta_calls)
            + len(self.range_calls)
            + len(self.size_calls)
        )

    def reset(self) -> None:
        self.index_calls.clear()
        self.manifest_calls.clear()
        self.pack_calls.clear()
        self.delta_calls.clear()
        self.range_calls.clear()
        self.size_calls.clear()

    def fetch_index(self, bundle: str, locale: str, etag: str | None) -> IndexResponse:
        if self.index_override is not None:
            body = self.index_override
            current = '"' + hashlib.sha256(body).hexdigest() + '"'
        else:
            body, current = self.repo.source.index(bundle, locale)
        modified = etag != current
        self.index_calls.append((etag, modified))
        return IndexResponse(body if modified else None, current)

    def fetch_manifest(self, manifest_id: str, base: str | None = None) -> bytes:
        self.manifest_calls.append(manifest_id)
        if manifest_id in self.manifest_overrides:
            return self.manifest_overrides[manifest_id]
        if self.deltas:
            return self.repo.source.manifest_response(manifest_id, base, long=True)[0]
        return self.repo.source.manifest_object(manifest_id)

    def fetch_pack(self, manifest_id: str, want: bytes, base: str | None = None) -> PackResponse:
        request: dict[str, str] = {
            "manifest": manifest_id,
            "want": base64.b64encode(want).decode("ascii"),
        }
        if base is not None and self.deltas:
            request["base"] = base
        parsed = parse_pack_request(request)
        plan = self.repo.source.plan(parsed)
        body = b"".join(self.repo.source.pack(parsed).pieces)
        return self._respond(manifest_id, want, plan, body, request.get("base"))

    def fetch_delta(self, base: str, manifest_id: str) -> PackResponse:
        if not self.deltas:
            raise NotFoundError("this fetcher serves no ready-made deltas")
        self.delta_calls.append((base, manifest_id))
        body = self.repo.source.static_delta(base, manifest_id)
        if self.pack_rewrite is not None:
            body = self.pack_rewrite(body)
        return PackResponse(len(body), self._pieces(body))

    def fetch_range(self, cid: str, start: int, end: int | None = None) -> RangeResponse:
        self.range_calls.append((cid, start, end))
        obj = self.repo.source.get_object(cid)
        if not self.ranges:
            return RangeResponse(0, len(obj), self._range_pieces(obj))
        if start >= len(obj) or (end is not None and end < start):
            raise NotFoundError(f"range {start}-{end} not satisfiable for {len(obj)} bytes")
        stop = len(obj) if end is None else min(end + 1, len(obj))
        return RangeResponse(start, len(obj), self._range_pieces(obj[start:stop]))

    def delta_size(self, base: str, manifest_id: str) -> int:
        if not self.deltas:
            raise NotFoundError("this fetcher serves no ready-made deltas")
        self.size_calls.append("static")
        return self.repo.source.static_delta_size(base, manifest_id)

    def pack_size(self, manifest_id: str, want: bytes, base: str | None = None) -> int:
        request: dict[str, object] = {
            "manifest": manifest_id,
            "want": base64.b64encode(want).decode("ascii"),
            "dry_run": True,
        }
        if base is not None and self.deltas:
            request["base"] = base
        self.size_calls.append("dynamic")
        return self.repo.source.pack_size(parse_pack_request(request)).bytes

    def _range_pieces(self, body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), self.piece_size):
            yield body[start : start + self.piece_size]

    def _respond(
        self,
        manifest_id: str,
        want: bytes,
        plan: list[tuple[str, int]],
        body: bytes,
        base: str | None = None,
    ) -> PackResponse:
        if self.pack_rewrite is not None:
            body = self.pack_rewrite(body)
        self.pack_calls.append(PackCall(manifest_id, want, plan, body, base))
        return PackResponse(len(body), self._pieces(body))

    def _pieces(self, body: bytes) -> Iterator[bytes]:
        limit = len(body) if self.cut_after is None else min(self.cut_after, len(body))
        for start in range(0, limit, self.piece_size):
            yield body[start : min(start + self.piece_size, limit)]
        if self.cut_after is not None:
            raise TransportError(f"connection reset after {limit} bytes")


# -- packs ---------------------------------------------------------------------------------
def split_pack(body: bytes) -> list[tuple[str, bytes]]:
    """The (chunk id, object) frames of a complete pack."""
    reader = PackReader()
    frames = reader.feed(body)
    reader.close()
    return [(f.chunk_id, f.obj) for f in frames]


def rewrite_frame(index: int, change: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """A pack rewrite that replaces the object of frame ``index`` with ``change(object)``."""

    def rewrite(body: bytes) -> bytes:
        frames = split_pack(body)
        cid, obj = frames[index]
        frames[index] = (cid, change(obj))
        return pack_bytes(frames)

    return rewrite


def flip_last_byte(obj: bytes) -> bytes:
    return obj[:-1] + bytes([obj[-1] ^ 0x01])


def want_count(distinct: list[tuple[str, int]], want: bytes) -> int:
    return len(decode_want(distinct, want))
