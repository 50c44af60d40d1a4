"""The web page's upload: the upload form (``/web/upload``) and the JSON API behind it.

The browser hashes the teacher's files and asks which the server already holds
(``/web/api/unchanged/...``), then streams only the others (``/web/api/publish/...``, the
format of :mod:`satchel.server.webdata`), bounded in size and idle time exactly as the API's
upload is; the server assembles the tree from what was sent and what it holds and publishes it
through the same :class:`~satchel.sync.publish.Publisher` path as ``satchel publish``. The
token is authorized before the body is read and again at commit, so a token revoked while an
upload runs publishes nothing.

Mounted on the web router by :func:`add_upload_routes`; sessions, CSRF, the CSP and error
pages are :mod:`satchel.server.web`'s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from satchel.content.chunking import Chunker
from satchel.content.errors import AuthError, SatchelError, TooLargeError, UsageError
from satchel.content.names import check_bundle, check_locale
from satchel.edge.http import stream_body
from satchel.sync.publish import Publisher, PublishResult

from .authz import authorize_publish
from .publishing import LocalTarget
from .tokens import Principal
from .web import Web, WebSession, check_csrf, parse_version
from .webdata import UploadHeader, UploadStream, extract_zip, held_files, materialize

FEED_BYTES = 1024 * 1024  # write uploads to disk in pieces this large (few thread hops)

Variant = tuple[str | None, int | None]  # the base locale and version of a variant, or none


def add_upload_routes(router: APIRouter, web: Web) -> None:
    repo = web.repo

    @router.get("/upload")
    def upload_page(request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            bundle = request.query_params.get("bundle", sess.who.bundle or "")
            locale = request.query_params.get("locale", sess.who.locale or "en")
            if bundle:
                check_bundle(bundle)
            check_locale(locale)
            lines = {x.locale: x for x in repo.reads.catalog(bundle)} if bundle else {}
            current = lines.get(locale)
            # A variant stays one; a curator's new line is one of the bundle's base lines.
            base_locale = current.base_locale if current else None
            bases = sorted(k for k, x in lines.items() if not x.base_locale and k != locale)
            if base_locale is None and sess.who.role == "curator" and bases:
                base_locale = "en" if "en" in bases else bases[0]
            return web.render(
                request,
                "upload.html",
                sess,
                bundle=bundle,
                locale=locale,
                bases=bases,
                base_locale=base_locale,
                max_upload=web.limits.max_upload_bytes,
            )

        return web.page(request, build)

    def api_session(request: Request, bundle: str, locale: str) -> tuple[WebSession, Variant]:
        """Who may make this publish, and the variant it is (base locale and version)."""
        sess = web.session(request)
        if sess is None:
            raise AuthError("sign in first (your session ended or the token was revoked)")
        check_csrf(request, sess, request.headers.get("x-csrf-token"))
        check_bundle(bundle)
        check_locale(locale)
        from_locale = request.query_params.get("from_locale") or None
        raw_base = request.query_params.get("base_version") or None
        if from_locale is not None:
            check_locale(from_locale)
        base_version = parse_version(raw_base) if raw_base is not None else None
        if base_version is not None and from_locale is None:
            raise UsageError("a base version goes with a base locale (a variant)")
        authorize_publish(repo.db, sess.who, bundle, locale, from_locale)
        return sess, (from_locale, base_version)

    @router.post("/api/unchanged/{bundle}/{locale}")
    async def api_unchanged(bundle: str, locale: str, request: Request) -> Response:
        """Which of the browser's files (path, sha256, size) the server already has."""
        _sess, (from_locale, _base) = await run_in_threadpool(api_session, request, bundle, locale)
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > web.limits.max_header_bytes:
                raise UsageError("the file list is too large")
        files = parse_unchanged(bytes(body), web.limits.max_files)
        latest = await run_in_threadpool(web.latest_manifest, bundle, locale)
        same = await run_in_threadpool(unchanged, web, bundle, locale, from_locale, files)
        return JSONResponse(
            {"latest_version": latest.version if latest else None, "unchanged": same},
            headers={"Cache-Control": "no-store"},
        )

    @router.post("/api/publish/{bundle}/{locale}")
    async def api_publish(bundle: str, locale: str, request: Request) -> Response:
        """The browser's upload (see :mod:`satchel.server.webdata`), published as a version."""
        sess, variant = await run_in_threadpool(api_session, request, bundle, locale)
        declared = request.headers.get("content-length")
        ceiling = 4 + web.limits.max_header_bytes + web.limits.max_upload_bytes
        if declared is not None and declared.isdigit() and int(declared) > ceiling:
            raise TooLargeError(f"the upload is over this server's {ceiling:,}-byte limit")
        root = Path(tempfile.mkdtemp(dir=web.uploads, prefix="up-"))
        stream = UploadStream(root, web.limits)
        try:
            refused: SatchelError | None = None
            buf = bytearray()
            try:
                # Bounded in size (with or without Content-Length) and in idle time.
                async for piece in stream_body(request, web.limits.idle_seconds, ceiling):
                    if refused is not None:
                        # Read the rest before answering: a browser that is still sending
                        # when the connection closes shows "connection reset", not our reason.
                        continue
                    buf += piece
                    if len(buf) >= FEED_BYTES:
                        try:
                            await run_in_threadpool(stream.feed, bytes(buf))
                        except SatchelError as exc:
                            refused = exc
                        buf.clear()
            except TooLargeError as exc:
                raise refused or exc from None  # the first reason is the one worth reading
            if refused is not None:
                raise refused
            await run_in_threadpool(stream.feed, bytes(buf))
            header = stream.close()
            result = await run_in_threadpool(
                publish_upload, web, sess.who, bundle, locale, variant, header, root
            )
        finally:
            stream.abort()
            await run_in_threadpool(shutil.rmtree, root, True)
        return JSONResponse(
            {
                "version": result.version,
                "files": result.files,
                "size": result.size,
                "sent_bytes": stream.received,
                "objects_total": result.objects_total,
                "objects_stored": result.objects_uploaded,
                "url": f"/web/b/{bundle}/{locale}",
            },
            headers={"Cache-Control": "no-store"},
        )


def unchanged(
    web: Web, bundle: str, locale: str, from_locale: str | None, files: list[tuple[str, str, int]]
) -> list[str]:
    """The paths of ``files`` (path, sha256, size) whose bytes the server already holds."""
    held = held_files(
        web.hashes,
        web.candidates(bundle, locale, from_locale),
        [(digest, size) for _, digest, size in files],
    )
    return [path for path, digest, size in files if (digest, size) in held]


def publish_upload(
    web: Web,
    who: Principal,
    bundle: str,
    locale: str,
    variant: Variant,
    header: UploadHeader,
    root: Path,
) -> PublishResult:
    """Assemble the uploaded tree (sent files + files the server has) and publish it."""
    from_locale, base_version = variant
    tree = root / "tree"
    if header.kind == "zip":
        extract_zip(root / "upload.zip", tree, web.limits)
    else:
        kept = [f for f in header.files if not f.send]
        if kept:
            assert all(f.sha256 is not None for f in kept)
            held = held_files(
                web.hashes,
                web.candidates(bundle, locale, from_locale),
                [(str(f.sha256), f.size) for f in kept],
            )
            for f in kept:
                found = held.get((str(f.sha256), f.size))
                if found is None:
                    raise UsageError(
                        f"{f.path!r} was not sent and the server does not have it"
                        " (a new version was published meanwhile?); upload again"
                    )
                materialize(found, web.repo.store, tree, f.path)
    latest = web.latest_manifest(bundle, locale)
    base = latest or (web.latest_manifest(bundle, from_locale) if from_locale else None)
    # The same chunker as the line so far, so unchanged files cut into the same chunks.
    chunker = Chunker(base.chunker) if base is not None else Chunker()
    # No title given: the server keeps the line's (publishing.line_title, as for the CLI).
    return Publisher(LocalTarget(web.repo.publishing, who), chunker=chunker).publish(
        tree,
        bundle=bundle,
        locale=locale,
        title=header.title,
        notes=header.notes,
        from_locale=from_locale,
        base_version=base_version,
    )


def parse_unchanged(raw: bytes, max_files: int) -> list[tuple[str, str, int]]:
    """The upload page's file list: ``{"files": [{"path", "sha256", "size"}, ...]}``."""
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise UsageError("request body is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise UsageError("expected {'files': [{'path', 'sha256', 'size'}, ...]}")
    items = doc["files"]
    if len(items) > max_files:
        raise UsageError(f"{len(items):,} files is over this server's limit of {max_files:,}")
    files = []
    for item in items:
        if not isinstance(item, dict):
            raise UsageError("each file must be an object")
        path, digest, size = item.get("path"), item.get("sha256"), item.get("size")
        if (
            not isinstance(path, str)
            or not isinstance(digest, str)
            or type(size) is not int
            or size < 0
        ):
            raise UsageError("each file needs a string path and sha256 and a whole-number size")
        files.append((path[:1024], digest.lower()[:64], size))
    return files
