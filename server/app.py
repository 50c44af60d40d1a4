"""HTTP routes: a thin adapter from FastAPI to :class:`~satchel.server.service.Repository`.

Content-addressed things (manifests, chunks) are immutable: strong ETags, a one-year
``immutable`` Cache-Control and Range. The release index is the one changing document:
``no-cache`` with an ETag, so a client that is up to date pays one 304. Stored objects go out
as ``application/octet-stream`` so no HTTP layer decompresses zstd behind our back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from satchel.content.errors import (
    ContentError,
    NotFoundError,
    SatchelError,
    UsageError,
)
from satchel.content.manifest import MAX_MANIFEST_BYTES
from satchel.content.objects import OBJECT_MEDIA_TYPE, declared_length, decode_object
from satchel.sync.errors import AuthError, TransportError
from satchel.sync.pack import PACK_MEDIA_TYPE, PackReader

from .observability import Metrics, Observability, not_ready_reason
from .ratelimit import FailureLimiter, RateLimited
from .service import Principal, Repository, wants_dry_run
from .web import web_router

IMMUTABLE = "public, max-age=31536000, immutable"
# The POST routes read their bodies themselves (streamed, bounded); these describe them in the
# OpenAPI schema for people, client generators and schema-driven fuzzing (schemathesis).
_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
PACK_REQUEST_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "manifest": _ID,
                        "want": {"type": "string", "description": "base64 bitmap"},
                        "base": _ID,
                        "chunks": {"type": "array", "items": _ID},
                        "dry_run": {"type": "boolean"},
                    },
                }
            }
        },
    }
}
DRAFT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A manifest draft in canonical JSON (docs/protocol.md)",
                    "properties": {
                        "title": {"type": "string"},
                        "chunker": {"type": "object"},
                        "files": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
}
UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {PACK_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}
COMMIT_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"notes": {"type": "string"}}}
            }
        },
    }
}
MAX_PACK_REQUEST = 8 * 1024 * 1024
MAX_SMALL_BODY = 64 * 1024
OCTETS = "application/octet-stream"
# An upload that sends nothing for this long is dropped (a stalled or slowloris client must
# not hold a connection and an upload open). There is no total time limit: a teacher on a
# 64 kbit/s link needs hours for a large course and must be able to finish; the total size
# is bounded instead (UploadReceiver.max_bytes), so a slow upload is also a finite one.
UPLOAD_IDLE_SECONDS = 60.0


class BodyTooLarge(SatchelError):
    pass


class UploadStalled(TransportError):
    """The client stopped sending an upload body (answered 408; resend to resume)."""


def error_status(exc: Exception) -> int:
    """The HTTP status for one of our errors (also used by the relay of `satchel share`)."""
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, PermissionError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, BodyTooLarge):
        return 413
    if isinstance(exc, UploadStalled):
        return 408
    if isinstance(exc, ContentError | TransportError):
        return 422  # a refused or incomplete upload body
    if isinstance(exc, UsageError):
        return 400
    return 500


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"request body of {int(declared):,} bytes is over the {limit:,}-byte limit"
        )
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise BodyTooLarge(f"request body is over the {limit:,}-byte limit")
    return bytes(body)


async def _json_body(request: Request, limit: int) -> object:
    raw = await _read_body(request, limit)
    try:
        return json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise UsageError("request body is not valid JSON") from None


def _not_modified(request: Request, etag: str) -> bool:
    """If-None-Match per RFC 9110: '*' or any listed tag, weak or strong, that matches."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def object_response(request: Request, data: bytes, etag: str) -> Response:
    """Serve an immutable object with conditional GET and single-range support."""
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    spec = request.headers.get("range")
    match = _RANGE.fullmatch(spec.strip()) if spec else None
    if match and (match.group(1) or match.group(2)):
        size = len(data)
        first, last = match.group(1), match.group(2)
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:
            start, end = max(size - int(last), 0), size - 1
        if start >= size or start > end:
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(data[start : end + 1], status_code=206, headers=headers, media_type=OCTETS)
    return Response(data, headers=headers, media_type=OCTETS)


def create_app(
    repo: Repository,
    *,
    auth_limiter: FailureLimiter | None = None,
    metrics: Metrics | None = None,
    upload_idle: float = UPLOAD_IDLE_SECONDS,
) -> FastAPI:
    app = FastAPI(
        title="Satchel",
        summary="Signed, chunked, delta-synced learning bundles for offline laptops.",
        version="1",
    )
    app.state.repo = repo
    limiter = auth_limiter or FailureLimiter()
    app.state.auth_limiter = limiter
    app.state.metrics = metrics = metrics or Metrics()
    # Outermost, so it sees every response (errors included) and every streamed byte.
    app.add_middleware(Observability, metrics=metrics)
    app.include_router(web_router(repo, limiter))

    @app.exception_handler(SatchelError)
    @app.exception_handler(PermissionError)
    async def _errors(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=error_status(exc))

    @app.exception_handler(RateLimited)
    async def _limited(_request: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc)},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    async def principal(request: Request) -> Principal:
        address = request.client.host if request.client else "unknown"
        limiter.check(address)  # an address that keeps guessing is refused before a lookup
        token = _bearer(request)
        try:
            return await run_in_threadpool(repo.authenticate, token)
        except AuthError:
            if token:  # a wrong guess; a request with no token at all guesses nothing
                limiter.failure(address)
            raise

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Ready for traffic: the database and the object store answer")
    def readyz() -> JSONResponse:
        reason = not_ready_reason(repo)
        if reason is not None:
            return JSONResponse(
                {"status": "not ready", "reason": reason},
                status_code=503,
                headers={"Cache-Control": "no-store"},
            )
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(
            metrics.render(),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/v1/index", summary="The signed release index (every bundle and locale)")
    def index(request: Request) -> Response:
        body, etag = repo.index()
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    @app.get("/v1/catalog", summary="Bundles, locales and versions, for people and pages")
    def catalog() -> dict[str, object]:
        return {"bundles": repo.catalog(), "publisher": repo.key.public.to_json()}

    @app.get("/v1/key", summary="The publisher's public key and fingerprint")
    def key() -> dict[str, str]:
        return {**repo.key.public.to_json(), "fingerprint": repo.key.public.fingerprint}

    @app.get("/v1/manifests/{manifest_id}", summary="A signed manifest as a stored object")
    def manifest(
        manifest_id: str, request: Request, base: str | None = Query(None, alias="from")
    ) -> Response:
        """With ``?from=OLD`` (a manifest the client holds) the answer may be a delta (0x04)."""
        body, etag = repo.manifest_response(manifest_id, base)
        return object_response(request, body, etag)

    @app.get(
        "/v1/deltas/{from_manifest}/{to_manifest}", summary="A ready-made, cacheable update pack"
    )
    def static_delta(from_manifest: str, to_manifest: str, request: Request) -> Response:
        body = repo.static_delta(from_manifest, to_manifest)
        return object_response(request, body, f'"{from_manifest}-to-{to_manifest}"')

    @app.head("/v1/deltas/{from_manifest}/{to_manifest}", include_in_schema=False)
    def static_delta_head(from_manifest: str, to_manifest: str) -> Response:
        """The ready-made pack's Content-Length without its body (for ``sync --dry-run``)."""
        size = repo.static_delta_size(from_manifest, to_manifest)
        headers = {
            "ETag": f'"{from_manifest}-to-{to_manifest}"',
            "Cache-Control": IMMUTABLE,
            "Accept-Ranges": "bytes",
            "Content-Length": str(size),
        }
        return Response(headers=headers, media_type=OCTETS)

    @app.get("/v1/chunks/{chunk_id}", summary="One stored object by chunk id")
    def chunk(chunk_id: str, request: Request) -> Response:
        return object_response(request, repo.get_object(chunk_id), f'"{chunk_id}"')

    @app.post(
        "/v1/pack",
        summary="Many stored objects in one framed stream",
        openapi_extra=PACK_REQUEST_DOC,
    )
    async def pack(request: Request) -> Response:
        body = await _json_body(request, MAX_PACK_REQUEST)
        if wants_dry_run(body):  # only the size: {"objects": n, "bytes": exact length}
            size = await run_in_threadpool(repo.pack_dry_run, body)
            return JSONResponse(size, headers={"Cache-Control": "no-store"})
        stream, length = await run_in_threadpool(repo.pack_response, body)
        headers = {"Cache-Control": "no-store"}
        if length is not None:
            headers["Content-Length"] = str(length)
        return StreamingResponse(stream, media_type=PACK_MEDIA_TYPE, headers=headers)

    @app.post(
        "/v1/publish/{bundle}/{locale}",
        summary="Begin a publish: send a draft, learn what is missing",
        openapi_extra=DRAFT_DOC,
    )
    async def begin(
        bundle: str,
        locale: str,
        request: Request,
        from_locale: str | None = Query(None, description="Publish a variant of this locale"),
        base_version: str | None = Query(
            None, description="The base version the variant is made from"
        ),
    ) -> dict[str, object]:
        who = await principal(request)
        if base_version is not None and not (
            base_version.isascii() and base_version.isdigit() and len(base_version) <= 9
        ):
            raise UsageError("base_version must be a version number")
        draft = await _read_body(request, MAX_MANIFEST_BYTES)
        if request.headers.get("content-type", "").startswith(OBJECT_MEDIA_TYPE):
            draft = await run_in_threadpool(_unwrap_object, draft, MAX_MANIFEST_BYTES)
        resp = await run_in_threadpool(
            repo.begin,
            who,
            bundle,
            locale,
            draft,
            from_locale,
            int(base_version) if base_version is not None else None,
        )
        return {
            "upload": resp.upload_id,
            "want": base64.b64encode(resp.want).decode("ascii"),
            "dictionary": list(resp.dictionary) if resp.dictionary else None,
        }

    @app.post(
        "/v1/uploads/{upload_id}/pack",
        summary="Upload missing objects as a pack stream",
        openapi_extra=UPLOAD_DOC,
    )
    async def upload(upload_id: str, request: Request) -> dict[str, int]:
        who = await principal(request)
        receiver = await run_in_threadpool(repo.upload_receiver, who, upload_id)
        reader = PackReader()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > receiver.max_bytes:
            raise BodyTooLarge(
                f"upload of {int(declared):,} bytes is over the {receiver.max_bytes:,} bytes"
                " this draft's objects can take"
            )
        async for piece in _pieces(request, upload_idle, receiver.max_bytes):
            frames = reader.feed(piece)
            if frames:
                await run_in_threadpool(receiver.receive, frames)
        reader.close()
        return {"stored": receiver.stored}

    @app.post(
        "/v1/uploads/{upload_id}/commit",
        summary="Make the uploaded version visible",
        openapi_extra=COMMIT_DOC,
    )
    async def commit(upload_id: str, request: Request) -> dict[str, int]:
        who = await principal(request)
        body = await _json_body(request, MAX_SMALL_BODY)
        notes = body.get("notes", "") if isinstance(body, dict) else ""
        if not isinstance(notes, str):
            raise UsageError("notes must be a string")
        version = await run_in_threadpool(repo.commit, who, upload_id, notes)
        return {"version": version}

    @app.get("/v1/history/{bundle}/{locale}", summary="Every publish of a line: who, when, notes")
    def history(bundle: str, locale: str) -> dict[str, object]:
        return {"bundle": bundle, "locale": locale, "versions": repo.history(bundle, locale)}

    @app.get(
        "/v1/translations/{bundle}/{locale}",
        summary="A locale variant's files against its base: up-to-date, stale, missing, extra",
    )
    def translations(bundle: str, locale: str) -> dict[str, object]:
        return repo.translation_report(bundle, locale)

    @app.post("/v1/tokens", summary="Create a token (admin only); the secret is shown once")
    async def create_token(request: Request) -> JSONResponse:
        who = await principal(request)
        repo.require_admin(who)
        body = await _json_body(request, MAX_SMALL_BODY)
        if not isinstance(body, dict):
            raise UsageError("token request must be a JSON object")
        unknown = sorted(set(body) - {"role", "bundle", "locale", "label"})
        if unknown:
            raise UsageError(f"unknown token field {unknown[0][:40]!r}")
        role, bundle, locale = body.get("role"), body.get("bundle"), body.get("locale")
        label = body.get("label", "")
        if not isinstance(role, str) or not isinstance(label, str):
            raise UsageError("token request needs a string role (and label, if given)")
        if not all(v is None or isinstance(v, str) for v in (bundle, locale)):
            raise UsageError("token bundle and locale must be strings or null")
        made = await run_in_threadpool(
            lambda: repo.issue_token(role, bundle=bundle, locale=locale, label=label)
        )
        return JSONResponse(made, status_code=201, headers={"Cache-Control": "no-store"})

    @app.get("/v1/tokens", summary="Every token, without secrets (admin only)")
    async def list_tokens(request: Request) -> JSONResponse:
        who = await principal(request)
        repo.require_admin(who)
        tokens = await run_in_threadpool(repo.list_tokens)
        return JSONResponse({"tokens": tokens}, headers={"Cache-Control": "no-store"})

    @app.delete("/v1/tokens/{token_id}", summary="Revoke a token at once (admin only)")
    async def revoke_token(token_id: str, request: Request) -> dict[str, object]:
        who = await principal(request)
        repo.require_admin(who)
        if not token_id.isascii() or not token_id.isdigit() or len(token_id) > 18:
            raise NotFoundError(f"no token {token_id[:40]!r}")
        return await run_in_threadpool(repo.revoke_token, int(token_id))

    return app


def _unwrap_object(body: bytes, limit: int) -> bytes:
    """A request body sent as a stored object (zstd): bounded by its declared size."""
    length = declared_length(body)
    if length > limit:
        raise BodyTooLarge(f"request body declares {length:,} bytes, over the {limit:,} limit")
    return decode_object(body, length)


async def _pieces(request: Request, idle: float, limit: int) -> AsyncIterator[bytes]:
    """The body in batches, each read waited for at most ``idle`` s, ``limit`` bytes in all."""
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
            raise UploadStalled(
                f"upload sent nothing for {idle:g} s and was dropped; publish again to resume"
            ) from None
        total += len(piece)
        if total > limit:
            raise BodyTooLarge(f"upload is over the {limit:,} bytes this draft's objects can take")
        buf += piece
        if len(buf) >= 256 * 1024:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
