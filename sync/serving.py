"""The read side of the protocol, shared by the server and by a relay (``satchel share``).

A pack request is a small JSON object (docs/protocol.md §7): ``{"manifest": ID, "want":
base64 bitmap over the manifest's distinct objects}`` or ``{"chunks": [ID, ...]}``, with an
optional ``"base"`` (a manifest the client holds, for deltas) and ``"dry_run"``. Parsing it,
and writing the pack it selects, needs no web framework and no database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from satchel.content.errors import FormatError
from satchel.content.manifest import check_chunk_id

from .pack import HEAD_SIZE, MAGIC, frame, trailer

MAX_PACK_IDS = 100_000
PACK_BATCH_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class PackRequest:
    manifest: str | None  # with ``want``: objects selected from this manifest
    want: bytes | None
    chunks: tuple[str, ...] | None  # or: objects named one by one
    base: str | None  # the manifest the client holds (deltas against it where smaller)
    dry_run: bool


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
        except binascii.Error:
            raise FormatError("pack request 'want' is not valid base64") from None
        return PackRequest(manifest, bitmap, None, base, dry_run)
    if "chunks" in request:
        raw = request["chunks"]
        if not isinstance(raw, list) or len(raw) > MAX_PACK_IDS:
            raise FormatError(
                f"pack request 'chunks' must be a list of at most {MAX_PACK_IDS:,} ids"
            )
        ids = []
        for cid in raw:
            if not isinstance(cid, str):
                raise FormatError("pack request 'chunks' must hold chunk ids")
            ids.append(check_chunk_id(cid))
        return PackRequest(None, None, tuple(ids), base, dry_run)
    raise FormatError("pack request needs 'manifest' and 'want', or 'chunks'")


def pack_length(sizes: Iterable[int]) -> int:
    """The exact length of a pack of stored objects of these sizes."""
    return len(MAGIC) + sum(HEAD_SIZE + size for size in sizes) + HEAD_SIZE


def batched(pieces: Iterable[bytes], size: int = PACK_BATCH_BYTES) -> Iterator[bytes]:
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
    """A pack of stored objects, read one at a time (bounded memory), in ~256 KiB pieces."""

    def pieces() -> Iterator[bytes]:
        yield MAGIC
        for cid in ids:
            yield frame(cid, get(cid))
        yield trailer(len(ids))

    return batched(pieces())
