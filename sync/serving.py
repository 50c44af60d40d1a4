"""The read side of the protocol, declared once: what a server and a relay answer.

Six reads (docs/protocol.md §9-§11): the signed release index; a manifest, as a delta against
one the client holds where that is smaller (``?from=``); one stored object; a ready-made delta
pack between two versions (and its length alone); a pack of the objects a want list selects,
as deltas against the client's ``base`` where smaller; and that pack's exact length without
its bytes (``dry_run``). :class:`ReadSource` is the interface. The server's database-backed
source and a relay's store source implement it, and one HTTP router serves either.

Parsing a pack request and writing a pack of stored objects need no web framework, so they
live here, with the one limit on how many ids a request may name. A request that names an
object twice gets it once: a pack is never larger than the distinct objects asked for.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from satchel.content.errors import FormatError
from satchel.content.manifest import check_chunk_id

from .pack import HEAD_SIZE, MAGIC, frame_head, trailer

MAX_PACK_IDS = 100_000  # ids one "chunks" request may name (8 MiB of JSON holds ~120,000)
MAX_PACK_REQUEST = 8 * 1024 * 1024  # bytes of JSON in one pack request
# A pack streams in pieces of about this size: each piece is one thread hop and one socket
# write, and 1 MiB keeps both rare at Gbit/s while a response holds ~1 MiB at a time
# (bench/pack_throughput.py).
PACK_PIECE = 1024 * 1024

# An ETag's hex digits: 128 bits is unique enough for a cache validator, and half a SHA-256's
# 64 saves ~100 bytes on each small update's requests and answers (index polls included).
ETAG_HEX = 32


@dataclass(frozen=True, slots=True)
class PackRequest:
    manifest: str | None  # with ``want``: objects selected from this manifest
    want: bytes | None
    chunks: tuple[str, ...] | None  # or: objects named one by one, each once
    base: str | None  # the manifest the client holds (deltas against it where smaller)
    dry_run: bool


@dataclass(frozen=True, slots=True)
class PackAnswer:
    """A pack on its way: its pieces, its length when known before it is made, its count."""

    pieces: Iterator[bytes]
    length: int | None
    objects: int


@dataclass(frozen=True, slots=True)
class PackSize:
    """What a pack would send, unsent (a dry run)."""

    objects: int
    bytes: int


class ReadSource(Protocol):
    """Where the read protocol's answers come from: a server's database and store, or a
    relay's local store. Every method raises ``NotFoundError`` for what it does not hold and
    ``FormatError`` for a malformed id; ETags are quoted strong validators."""

    def index(self, bundle: str, locale: str) -> tuple[bytes, str]:
        """A line's signed release index as published, and its ETag."""
        ...

    def manifest_response(
        self, manifest_id: str, base_id: str | None, *, long: bool = False
    ) -> tuple[bytes, str]:
        """A manifest as a stored object, or as a delta against ``base_id`` when smaller
        (``long``: the client decodes a window spanning both manifests)."""
        ...

    def get_object(self, cid: str) -> bytes:
        """One stored object, as stored."""
        ...

    def static_delta(self, from_id: str, to_id: str) -> bytes:
        """The ready-made pack that updates a holder of ``from_id`` to ``to_id``."""
        ...

    def static_delta_size(self, from_id: str, to_id: str) -> int:
        """That pack's length (for HEAD and dry runs)."""
        ...

    def pack(self, request: PackRequest) -> PackAnswer:
        """The pack a request selects."""
        ...

    def pack_size(self, request: PackRequest) -> PackSize:
        """What :meth:`pack` would send, exactly, without sending it."""
        ...


def etag(name: str, *related: str) -> str:
    """The quoted strong ETag of what ``name`` identifies (a chunk or manifest id, or a body's
    SHA-256), or of a delta between ids (``etag(new, "from", base)``): hashed together, so
    every pair has its own tag."""
    if related:
        name = hashlib.sha256(" ".join((name, *related)).encode("ascii")).hexdigest()
    return f'"{name[:ETAG_HEX]}"'


def manifest_delta_etag(manifest_id: str, base_id: str, *, long: bool) -> str:
    """The ETag of a manifest sent as a delta against ``base_id`` (a long-window one is
    another body, so another tag)."""
    return etag(manifest_id, "from", base_id, *(["long"] if long else []))


def body_etag(body: bytes) -> str:
    """The ETag of a body no id names (a line's signed index)."""
    return etag(hashlib.sha256(body).hexdigest())


def parse_pack_request(request: object) -> PackRequest:
    """Check a decoded JSON pack request; raises FormatError with what was wrong."""
    if not isinstance(request, dict):
        raise FormatError("pack request must be a JSON object")
    dry_run = request.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise FormatError("pack request 'dry_run' must be true or false")
    base = request.get("base")
    if base is not None:
        if not isinstance(base, str):
            raise FormatError("pack request 'base' must be a manifest id")
        check_chunk_id(base)
    if "manifest" in request:
        manifest = request["manifest"]
        if not isinstance(manifest, str):
            raise FormatError("pack request 'manifest' must be a manifest id")
        check_chunk_id(manifest)
        want = request.get("want")
        if not isinstance(want, str):
            raise FormatError("pack request 'want' must be a base64 bitmap")
        try:
            bitmap = base64.b64decode(want, validate=True)
        except ValueError:  # binascii.Error, or a str that is not ASCII
            raise FormatError("pack request 'want' is not valid base64") from None
        return PackRequest(manifest, bitmap, None, base, dry_run)
    if "chunks" in request:
        raw = request["chunks"]
        if not isinstance(raw, list) or len(raw) > MAX_PACK_IDS:
            raise FormatError(
                f"pack request 'chunks' must be a list of at most {MAX_PACK_IDS:,} ids"
            )
        ids: dict[str, None] = {}  # each id once, in the order first asked
        for cid in raw:
            if not isinstance(cid, str):
                raise FormatError("pack request 'chunks' must hold chunk ids")
            ids[check_chunk_id(cid)] = None
        return PackRequest(None, None, tuple(ids), base, dry_run)
    raise FormatError("pack request needs 'manifest' and 'want', or 'chunks'")


def pack_length(sizes: Iterable[int]) -> int:
    """The exact length of a pack of stored objects of these sizes."""
    return len(MAGIC) + sum(HEAD_SIZE + size for size in sizes) + HEAD_SIZE


def batched(pieces: Iterable[bytes], size: int = PACK_PIECE) -> Iterator[bytes]:
    """Join small pieces so a streaming response makes few thread hops."""
    buf: list[bytes] = []
    total = 0
    for piece in pieces:
        buf.append(piece)
        total += len(piece)
        if total >= size:
            yield b"".join(buf)
            buf, total = [], 0
    if buf:
        yield b"".join(buf)


def stored_pack(ids: Sequence[str], get: Callable[[str], bytes]) -> Iterator[bytes]:
    """A pack of stored objects, read one at a time, in pieces of about :data:`PACK_PIECE`.

    Each object is copied once, into the joined piece (not first into its frame).
    """
    buf = [MAGIC]
    size = len(MAGIC)
    for cid in ids:
        obj = get(cid)
        buf.append(frame_head(cid, len(obj)))
        buf.append(obj)
        size += HEAD_SIZE + len(obj)
        if size >= PACK_PIECE:
            yield b"".join(buf)
            buf, size = [], 0
    buf.append(trailer(len(ids)))
    yield b"".join(buf)
