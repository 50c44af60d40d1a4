"""HTTP semantics served the same way everywhere: validators, ranges, bodies, errors.

Content-addressed things (manifests, chunks, ready-made packs, a pinned version's files) are
immutable: strong ETags, a one-year ``immutable`` Cache-Control, and single byte ranges.
Stored objects go out as ``application/octet-stream`` so no HTTP layer decompresses zstd
behind our back. Every request body is read against a limit before it is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from satchel.content.errors import (
    RateLimitedError,
    SatchelError,
    StalledError,
    StoreError,
    TooLargeError,
    UsageError,
    http_status,
)

IMMUTABLE = "public, max-age=31536000, immutable"
OCTETS = "application/octet-stream"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_MAX_DIGITS = 18  # a position longer than this is beyond any file: refuse, never int() it

log = logging.getLogger(__name__)


def not_modified(request: Request, etag: str) -> bool:
    """If-None-Match per RFC 9110: ``*`` or any listed tag that matches (weak comparison)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """One byte range of a ``size``-byte body, per RFC 9110.

    Returns (start, end exclusive) for a satisfiable single range; ``None`` to ignore the
    header and send the whole body (absent, malformed, several ranges, or last < first);
    ``False`` when it cannot be satisfied (answer 416).
    """
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        return False
    if not first:  # a suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, size if not last else min(int(last) + 1, size)


def ranged(
    request: Request, size: int, etag: str, headers: dict[str, str]
) -> tuple[int, int, int] | None:
    """(status, start, end) to send for this request's Range and If-Range; ``None`` means
    416, with ``headers`` given the Content-Range that says why. Adds the range headers."""
    headers["Accept-Ranges"] = "bytes"
    rng = parse_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        rng = None  # the client's partial copy is of another representation: send it whole
    if rng is False:
        headers["Content-Range"] = f"bytes */{size}"
        return None
    if isinstance(rng, tuple):
        start, end = rng
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return 206, start, end
    return 200, 0, size


def object_response(
    request: Request,
    data: bytes,
    etag: str,
    *,
    cache: str = IMMUTABLE,
    media_type: str = OCTETS,
) -> Response:
    """Serve bytes with a strong ETag, conditional GET and a single byte range."""
    headers = {"ETag": etag, "Cache-Control": cache}
    if not_modified(request, etag):
        headers["Accept-Ranges"] = "bytes"
        return Response(status_code=304, headers=headers)
    answer = ranged(request, len(data), etag, headers)
    if answer is None:
        return Response(status_code=416, headers=headers)
    status, start, end = answer
    body = data if status == 200 else data[start:end]
    return Response(body, status_code=status, headers=headers, media_type=media_type)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 the moment it is longer than ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(
            f"request body of {int(declared):,} bytes is over the {limit:,}-byte limit"
        )
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise TooLargeError(f"request body is over the {limit:,}-byte limit")
    return bytes(body)


async def json_body(request: Request, limit: int) -> object:
    """A bounded JSON request body (an empty body is ``{}``)."""
    raw = await read_body(request, limit)
    try:
        return json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise UsageError("request body is not valid JSON") from None


def error_headers(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def public_error(exc: BaseException) -> SatchelError:
    """What a person may be told: our errors as they are; a failure of the machine itself
    (a disk, a permission, a network store) as a storage error that names no server path."""
    if isinstance(exc, SatchelError):
        return exc
    log.error("storage failed: %s", exc, exc_info=exc)
    return StoreError("the server could not read or write its storage; try again later")


def error_json(exc: BaseException) -> JSONResponse:
    shown = public_error(exc)
    return JSONResponse(
        {"error": str(shown)}, status_code=http_status(shown), headers=error_headers(shown)
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with its status and a one-line JSON reason."""

    async def handler(_request: Request, exc: Exception) -> Response:
        return error_json(exc)

    app.add_exception_handler(SatchelError, handler)
    app.add_exception_handler(OSError, handler)


async def stream_body(request: Request, idle: float, limit: int) -> AsyncIterator[bytes]:
    """A long body (an upload) in batches of about 256 KiB: each read is waited for at most
    ``idle`` seconds (a stalled or slowloris client is dropped with 408) and the whole is
    bounded by ``limit`` (413 the moment it is passed)."""
    # Coalesce small network reads so verification runs on batches of frames.
    buf = bytearray()
    stream = request.stream().__aiter__()
    total = 0
    while True:
        try:
            piece = await asyncio.wait_for(anext(stream), idle)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise StalledError(
                f"upload sent nothing for {idle:g} s and was dropped; publish again to resume"
            ) from None
        total += len(piece)
        if total > limit:
            raise TooLargeError(f"upload is over the {limit:,}-byte limit of this request")
        buf += piece
        if len(buf) >= 256 * 1024:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
