"""HTTP routes of ``satchel serve``: a thin adapter from FastAPI to the server's parts.

The read protocol (index, manifests, chunks, packs) is the shared router of
:mod:`satchel.edge.read_routes` over the server's :class:`~satchel.server.reading.ServerSource`;
this module adds what only a server does: publishing, history, translations, tokens, health
and metrics. Every error answers with its own status (:mod:`satchel.content.errors`).
"""

from __future__ import annotations

import base64
from dataclasses import asdict

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST
from satchel.content.errors import (
    AuthError,
    NotFoundError,
    TooLargeError,
    UsageError,
)
from satchel.content.manifest import MAX_MANIFEST_BYTES
from satchel.content.objects import OBJECT_MEDIA_TYPE, declared_length, decode_object
from satchel.edge.http import install_error_handlers, json_body, read_body, stream_body
from satchel.edge.read_routes import read_router
from satchel.edge.records_route import records_router
from satchel.sync.pack import PACK_MEDIA_TYPE, PackReader

from .authz import require_admin
from .class_routes import class_router
from .observability import Metrics, Observability, not_ready_reason
from .ratelimit import FailureLimiter
from .repository import Repository
from .tokens import Principal
from .web import web_router

# The POST routes read their bodies themselves (streamed, bounded); these describe them in the
# OpenAPI schema for people, client generators and schema-driven fuzzing (schemathesis).
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
MAX_SMALL_BODY = 64 * 1024
# An upload that sends nothing for this long is dropped (a stalled or slowloris client must
# not hold a connection and an upload open). There is no total time limit: a teacher on a
# 64 kbit/s link needs hours for a large course and must be able to finish; the total size
# is bounded instead (UploadReceiver.max_bytes), so a slow upload is also a finite one.
UPLOAD_IDLE_SECONDS = 60.0


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


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
    install_error_handlers(app)
    app.include_router(read_router(repo.source))
    app.include_router(web_router(repo, limiter))
    publishing = repo.publishing

    async def principal(request: Request) -> Principal:
        address = request.client.host if request.client else "unknown"
        limiter.check(address)  # an address that keeps guessing is refused before a lookup
        token = _bearer(request)
        try:
            return await run_in_threadpool(repo.tokens.authenticate, token)
        except AuthError:
            if token:  # a wrong guess; a request with no token at all guesses nothing
                limiter.failure(address)
            raise

    app.include_router(records_router(repo.records))
    app.include_router(class_router(repo, principal))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        # Someone who opens the server's address in a browser wants the web page.
        return RedirectResponse("/web/", status_code=307)

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

    @app.get("/v1/catalog", summary="Bundles, locales and versions, for people and pages")
    def catalog() -> dict[str, object]:
        return {
            "bundles": [asdict(line) for line in repo.reads.catalog()],
            "publisher": repo.key.public.to_json(),
        }

    @app.get("/v1/key", summary="The publisher's public key and fingerprint")
    def key() -> dict[str, str]:
        return {**repo.key.public.to_json(), "fingerprint": repo.key.public.fingerprint}

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
        draft = await read_body(request, MAX_MANIFEST_BYTES)
        if request.headers.get("content-type", "").startswith(OBJECT_MEDIA_TYPE):
            draft = await run_in_threadpool(_unwrap_object, draft, MAX_MANIFEST_BYTES)
        resp = await run_in_threadpool(
            publishing.begin,
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
        receiver = await run_in_threadpool(publishing.receiver, who, upload_id)
        reader = PackReader()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > receiver.max_bytes:
            raise TooLargeError(
                f"upload of {int(declared):,} bytes is over the {receiver.max_bytes:,} bytes"
                " this draft's objects can take"
            )
        try:
            async for piece in stream_body(request, upload_idle, receiver.max_bytes):
                frames = reader.feed(piece)
                if frames:
                    await run_in_threadpool(receiver.receive, frames)
        finally:
            # Whatever ends the body (its end, a cut, a refusal), what was verified is kept.
            await run_in_threadpool(receiver.finish)
        reader.close()
        return {"stored": receiver.stored}

    @app.post(
        "/v1/uploads/{upload_id}/commit",
        summary="Make the uploaded version visible",
        openapi_extra=COMMIT_DOC,
    )
    async def commit(upload_id: str, request: Request) -> dict[str, int]:
        who = await principal(request)
        notes = _notes(await json_body(request, MAX_SMALL_BODY))
        version = await run_in_threadpool(publishing.commit, who, upload_id, notes)
        return {"version": version}

    @app.post(
        "/v1/lines/{bundle}/{locale}/versions/{version}/withdraw",
        summary="Take a version back: laptops that have not switched skip it",
        openapi_extra=COMMIT_DOC,
    )
    async def withdraw(
        bundle: str, locale: str, version: str, request: Request
    ) -> dict[str, object]:
        who = await principal(request)
        if not (version.isascii() and version.isdigit() and len(version) <= 9):
            raise NotFoundError(f"no version {version[:20]!r}")
        notes = _notes(await json_body(request, MAX_SMALL_BODY))
        done = await run_in_threadpool(
            repo.lines.withdraw, who, bundle, locale, int(version), notes
        )
        return asdict(done)

    @app.post(
        "/v1/lines/{bundle}/{locale}/remove",
        summary="Take a whole line away (admin only): laptops that follow it drop it",
        openapi_extra=COMMIT_DOC,
    )
    async def remove(bundle: str, locale: str, request: Request) -> dict[str, object]:
        who = await principal(request)
        notes = _notes(await json_body(request, MAX_SMALL_BODY))
        await run_in_threadpool(repo.lines.remove, who, bundle, locale, notes)
        return {"bundle": bundle, "locale": locale, "removed": True}

    @app.get(
        "/v1/history/{bundle}/{locale}",
        summary="Every publish of a line: who, when, notes (any valid token, like the web page)",
    )
    async def history(bundle: str, locale: str, request: Request) -> dict[str, object]:
        # It names the people who publish: signed-in only, as on the web page.
        await principal(request)
        entries = await run_in_threadpool(repo.reads.history, bundle, locale)
        return {"bundle": bundle, "locale": locale, "versions": [asdict(e) for e in entries]}

    @app.get(
        "/v1/translations/{bundle}/{locale}",
        summary="A locale variant's files against its base: up-to-date, stale, missing, extra",
    )
    def translations(bundle: str, locale: str) -> dict[str, object]:
        return asdict(repo.reads.translation_report(bundle, locale))

    @app.post("/v1/tokens", summary="Create a token (admin only); the secret is shown once")
    async def create_token(request: Request) -> JSONResponse:
        require_admin(await principal(request))
        body = await json_body(request, MAX_SMALL_BODY)
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
            lambda: repo.tokens.issue(role, bundle=bundle, locale=locale, label=label)
        )
        return JSONResponse(
            {**asdict(made.info), "token": made.token},
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/v1/tokens", summary="Every token, without secrets (admin only)")
    async def list_tokens(request: Request) -> JSONResponse:
        require_admin(await principal(request))
        tokens = await run_in_threadpool(repo.tokens.list)
        return JSONResponse(
            {"tokens": [asdict(t) for t in tokens]}, headers={"Cache-Control": "no-store"}
        )

    @app.delete("/v1/tokens/{token_id}", summary="Revoke a token at once (admin only)")
    async def revoke_token(token_id: str, request: Request) -> dict[str, object]:
        require_admin(await principal(request))
        if not token_id.isascii() or not token_id.isdigit() or len(token_id) > 18:
            raise NotFoundError(f"no token {token_id[:40]!r}")
        return asdict(await run_in_threadpool(repo.tokens.revoke, int(token_id)))

    return app


def _notes(body: object) -> str:
    """The ``notes`` of a small JSON body (``{"notes": "..."}``, or nothing)."""
    notes = body.get("notes", "") if isinstance(body, dict) else ""
    if not isinstance(notes, str):
        raise UsageError("notes must be a string")
    return notes


def _unwrap_object(body: bytes, limit: int) -> bytes:
    """A request body sent as a stored object (zstd): bounded by its declared size."""
    length = declared_length(body)
    if length > limit:
        raise TooLargeError(f"request body declares {length:,} bytes, over the {limit:,} limit")
    return decode_object(body, length)
