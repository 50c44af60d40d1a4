"""The web page for teachers and curators, under ``/web/``: server-rendered Jinja2 templates.

A thin adapter like :mod:`satchel.server.app`: pages read the server's read models and
manifests, and a browser upload is published through the same
:class:`~satchel.sync.publish.Publisher` path as ``satchel publish`` (a
:class:`~satchel.server.publishing.LocalTarget`), so only chunks the server lacks are stored.
Data work lives in :mod:`satchel.server.webdata`.

Security:

- The token is kept in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over HTTPS)
  scoped to ``/web``; it is checked on every request, so a revoked token stops at once.
- Every POST must come from this origin (``Origin``/``Sec-Fetch-Site``), and every POST made
  while signed in carries a CSRF token: an HMAC of the session token, so replicas agree on
  it without shared state and it changes when the person signs in with another token.
- Pages send a strict Content-Security-Policy (scripts only from ``/web/static``).
  Lesson files are served from ``/web/raw/`` with ``Content-Security-Policy: sandbox`` and no
  scripts, and shown in a sandboxed iframe: an uploaded page can never act as the person.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import posixpath
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from satchel.content.chunking import Chunker
from satchel.content.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    SatchelError,
    TooLargeError,
    UsageError,
    http_status,
)
from satchel.content.lessons import structure
from satchel.content.locales import locale_name
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.objects import verify_object
from satchel.content.render_cnxml import Kind, Target, render_cnxml
from satchel.content.render_markdown import render_markdown
from satchel.content.toc import Lesson
from satchel.edge.http import stream_body
from satchel.sync.publish import Publisher, PublishResult
from satchel.sync.store import store_lookup

from .authz import authorize_publish
from .publishing import LocalTarget
from .ratelimit import FailureLimiter
from .readmodels import LineInfo
from .repository import Repository
from .textdiff import content_changes
from .tokens import Principal
from .webdata import (
    FileHashes,
    UploadHeader,
    UploadStream,
    WebLimits,
    diff_manifests,
    extract_zip,
    held_files,
    materialize,
)

HERE = Path(__file__).resolve().parent
COOKIE = "satchel_web"
SESSION_SECONDS = 8 * 3600  # a shared school computer forgets the token after a working day
MAX_FORM = 16 * 1024
FEED_BYTES = 1024 * 1024  # write uploads to disk in pieces this large (few thread hops)

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Lesson files: an opaque origin with no scripts, plugins, forms or outside requests; only
# images, media, fonts and styles from this server. Only our own pages may frame them.
RAW_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; "
    "style-src 'self' 'unsafe-inline'; font-src 'self'; frame-ancestors 'self'"
)
# Lessons the preview shows rendered (as the viewer does) rather than as their source.
RENDERED = (".md", ".markdown", ".cnxml")
MAX_RENDERED = 4 * 1024 * 1024
RENDERED_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:0 auto;padding:8px 16px}"
    "img{max-width:100%}pre{overflow-x:auto;background:#f4f6f8;padding:8px}"
    "table{border-collapse:collapse}td,th{border:1px solid #c9ced4;padding:2px 6px}"
    ".external::after{content:' (outside link)';color:#555d66;font-size:.85em}"
    ".dead-link{color:#555d66}"
)
STATIC = {"app.css": "text/css; charset=utf-8", "upload.js": "text/javascript; charset=utf-8"}
# Shown as text in the preview rather than downloaded by the browser.
AS_TEXT = {"text/markdown", "text/x-markdown", "application/json", "application/yaml"}


def csrf_token(token: str) -> str:
    """The per-session CSRF token: only someone who holds the session token can compute it."""
    return hmac.new(token.encode("utf-8"), b"satchel-web-csrf-v1", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    who: Principal
    csrf: str

    @property
    def label(self) -> str:
        """'Ana, teacher of numbers' / 'curator of fractions/es' / 'admin'."""
        scope = "/".join(x for x in (self.who.bundle, self.who.locale) if x)
        role = f"{self.who.role} of {scope}" if scope else self.who.role
        return f"{self.who.label}, {role}" if self.who.label else role


class SignInNeeded(AuthError):
    """A page that needs a signed-in person (answered by a redirect to sign in)."""


def safe_next(target: str | None) -> str:
    """A redirect target after sign-in: a path on this site's /web/ pages, nothing else."""
    if (
        not target
        or not target.startswith("/web/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x21 for c in target)
    ):
        return "/web/"
    return target


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size):,} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def human_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = human_bytes
    env.filters["when"] = human_time
    env.filters["path"] = lambda p: urllib.parse.quote(str(p), safe="/")
    # "Español (es)": a locale by its name in its own language, with the code people type.
    env.filters["language"] = lambda code: f"{locale_name(str(code))} ({code})"
    return env


class Web:
    """State behind the pages: the repository, caches and limits."""

    def __init__(self, repo: Repository, limits: WebLimits, limiter: FailureLimiter) -> None:
        self.repo = repo
        self.limits = limits
        self.limiter = limiter
        self.hashes = FileHashes(repo.store)
        self.env = _environment()
        self.uploads = repo.data / "web-uploads"
        self.uploads.mkdir(exist_ok=True)
        self._sweep_uploads()

    def _sweep_uploads(self) -> None:
        # A server killed mid-upload leaves a temp folder; a day later it is surely abandoned.
        for old in self.uploads.iterdir():
            try:
                if time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass

    # -- sessions ----------------------------------------------------------------------------
    def session(self, request: Request) -> WebSession | None:
        """The signed-in person, or None. A cookie with a wrong token counts as a failed
        guess for the address, like a wrong bearer token on the API."""
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        address = client_address(request)
        self.limiter.check(address)
        try:
            who = self.repo.tokens.authenticate(token)
        except AuthError:
            self.limiter.failure(address)
            return None
        return WebSession(who, csrf_token(token))

    def need_session(self, request: Request) -> WebSession:
        sess = self.session(request)
        if sess is None:
            raise SignInNeeded("sign in first")
        return sess

    # -- rendering ---------------------------------------------------------------------------
    def render(
        self,
        request: Request,
        name: str,
        sess: WebSession | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(session=sess, path=request.url.path, **context)
        return HTMLResponse(html, status_code=status, headers=page_headers())

    def page(
        self, request: Request, build: Callable[[WebSession], HTMLResponse | Response]
    ) -> Response:
        """A signed-in page: redirect to sign in, or render errors as a page with a status."""
        try:
            sess = self.session(request)
        except RateLimitedError as exc:
            return self.render(request, "error.html", None, status=exc.status, message=str(exc))
        if sess is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            query = urllib.parse.urlencode({"next": safe_next(target)})
            response = RedirectResponse(f"/web/signin?{query}", status_code=303)
            if COOKIE in request.cookies:  # unknown or revoked: stop sending it
                response.delete_cookie(COOKIE, path="/web", httponly=True, samesite="strict")
            return response
        try:
            return build(sess)
        except SatchelError as exc:
            return self.render(
                request, "error.html", sess, status=http_status(exc), message=str(exc)
            )

    # -- data --------------------------------------------------------------------------------
    def line(self, bundle: str, locale: str) -> LineInfo:
        return self.repo.reads.line(bundle, locale)

    def version_manifest(self, bundle: str, locale: str, version: str | int) -> Manifest:
        line = self.line(bundle, locale)
        return self.repo.source.manifest(line.version_manifest_id(parse_version(version)))

    def latest_manifest(self, bundle: str, locale: str) -> Manifest | None:
        try:
            line = self.line(bundle, locale)
        except NotFoundError:
            return None
        if not line.latest_version:
            return None
        return self.repo.source.manifest(line.version_manifest_id(line.latest_version))

    def can_publish(
        self, who: Principal, bundle: str, locale: str, from_locale: str | None
    ) -> bool:
        try:
            authorize_publish(self.repo.db, who, bundle, locale, from_locale)
        except SatchelError:
            return False
        return True

    def lessons(self, manifest: Manifest) -> tuple[Lesson, ...]:
        return structure(manifest).lessons

    def candidates(self, bundle: str, locale: str, from_locale: str | None) -> list[Manifest]:
        """Versions whose files an upload may reuse: the line's latest, and its base's."""
        found = [self.latest_manifest(bundle, locale)]
        if from_locale is not None and from_locale != locale:
            found.append(self.latest_manifest(bundle, from_locale))
        return [m for m in found if m is not None]

    def unchanged(
        self, bundle: str, locale: str, from_locale: str | None, files: list[tuple[str, str, int]]
    ) -> list[str]:
        held = held_files(
            self.hashes,
            self.candidates(bundle, locale, from_locale),
            [(digest, size) for _, digest, size in files],
        )
        return [path for path, digest, size in files if (digest, size) in held]

    def publish_upload(
        self,
        who: Principal,
        bundle: str,
        locale: str,
        variant: tuple[str | None, int | None],
        header: UploadHeader,
        root: Path,
    ) -> PublishResult:
        """Assemble the uploaded tree (sent files + files the server has) and publish it."""
        from_locale, base_version = variant
        tree = root / "tree"
        if header.kind == "zip":
            extract_zip(root / "upload.zip", tree, self.limits)
        else:
            kept = [f for f in header.files if not f.send]
            if kept:
                assert all(f.sha256 is not None for f in kept)
                held = held_files(
                    self.hashes,
                    self.candidates(bundle, locale, from_locale),
                    [(str(f.sha256), f.size) for f in kept],
                )
                for f in kept:
                    found = held.get((str(f.sha256), f.size))
                    if found is None:
                        raise UsageError(
                            f"{f.path!r} was not sent and the server does not have it"
                            " (a new version was published meanwhile?); upload again"
                        )
                    materialize(found, self.repo.store, tree, f.path)
        latest = self.latest_manifest(bundle, locale)
        base = latest or (self.latest_manifest(bundle, from_locale) if from_locale else None)
        # The same chunker as the line so far, so unchanged files cut into the same chunks.
        chunker = Chunker(base.chunker) if base is not None else Chunker()
        # No title given: the server keeps the line's (publishing.line_title, as for the CLI).
        return Publisher(LocalTarget(self.repo.publishing, who), chunker=chunker).publish(
            tree,
            bundle=bundle,
            locale=locale,
            title=header.title,
            notes=header.notes,
            from_locale=from_locale,
            base_version=base_version,
        )

    def file_entry(self, manifest: Manifest, path: str) -> FileEntry:
        # A path from an address is only compared with the manifest's paths, never joined
        # onto a folder: anything else, traversal included, simply names no file.
        for entry in manifest.files:
            if entry.path == path:
                return entry
        raise NotFoundError(f"version {manifest.version} has no file {path[:200]!r}")

    def read_file(self, manifest: Manifest, entry: FileEntry) -> bytes:
        return b"".join(self.file_bytes(manifest, entry))

    def rendered_page(self, manifest: Manifest, entry: FileEntry) -> str:
        """A lesson as a small HTML document: links to lessons open rendered, images load
        from /web/raw/, outside links are marked and never loaded (the viewer's rules)."""
        if entry.size > MAX_RENDERED:
            raise UsageError(f"{entry.path} is over {MAX_RENDERED:,} bytes: open the source")
        base = f"/web/{{}}/{manifest.bundle}/{manifest.locale}/{manifest.version}/"
        paths = {f.path for f in manifest.files}

        def resolve(ref: str, kind: Kind) -> Target:
            parts = urllib.parse.urlsplit(ref.strip())
            if parts.scheme or parts.netloc:
                ok = parts.scheme in ("http", "https", "mailto")
                return Target(ref if ok else None, external=ok)
            rel = urllib.parse.unquote(parts.path)
            if not rel:
                return Target(f"#{parts.fragment}" if parts.fragment else None)
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), rel))
            if joined not in paths:
                return Target(None)
            way = "rendered" if kind == "link" and joined.lower().endswith(RENDERED) else "raw"
            return Target(base.format(way) + urllib.parse.quote(joined, safe="/"))

        data = self.read_file(manifest, entry)
        if entry.path.lower().endswith(".cnxml"):
            shown = render_cnxml(data, resolve)
        else:
            shown = render_markdown(data.decode("utf-8", "replace"), resolve)
        title = html.escape(shown.title or entry.path)
        lang = html.escape(manifest.locale)
        return (
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}'
            f"</title><style>{RENDERED_STYLE}</style></head><body>{shown.html}</body></html>"
        )

    def file_bytes(self, manifest: Manifest, entry: FileEntry) -> Iterator[bytes]:
        lookup = store_lookup(self.repo.store, dict(manifest.dictionaries))
        for cid, length in entry.chunks:
            yield verify_object(self.repo.store.get(cid), cid, length, lookup)


def page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def parse_version(raw: str | int) -> int:
    text = str(raw)
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise UsageError(f"version {text[:20]!r} is not a version number")
    return int(text)


def check_same_origin(request: Request) -> None:
    """Refuse a POST another site made the browser send (CSRF), before anything else."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise ForbiddenError("refused: this request came from another site")
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin == "null" or urllib.parse.urlsplit(origin).netloc != host:
            raise ForbiddenError("refused: this request came from another site")


def check_csrf(request: Request, sess: WebSession, supplied: str | None) -> None:
    check_same_origin(request)
    if not supplied or not hmac.compare_digest(supplied, sess.csrf):
        raise ForbiddenError("refused: the form is stale or came from another site; reload")


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (the sign-in and sign-out forms)."""
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_FORM:
            raise UsageError("form is too large")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise UsageError("expected a form")
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise UsageError("form is not valid") from None
    return dict(pairs)


def web_router(
    repo: Repository, limiter: FailureLimiter | None = None, limits: WebLimits | None = None
) -> APIRouter:
    web = Web(repo, limits or WebLimits(), limiter or FailureLimiter())
    router = APIRouter(prefix="/web", include_in_schema=False)

    # -- signing in ----------------------------------------------------------------------------
    @router.get("/signin")
    def signin_form(request: Request, next: str | None = None) -> Response:
        return web.render(request, "signin.html", None, next=safe_next(next))

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        try:
            check_same_origin(request)
            form = await read_form(request)
        except (UsageError, ForbiddenError) as exc:
            return web.render(
                request, "signin.html", None, status=exc.status, next="/web/", error=str(exc)
            )
        token = form.get("token", "").strip()
        target = safe_next(form.get("next"))
        address = client_address(request)
        try:
            web.limiter.check(address)
            await run_in_threadpool(repo.tokens.authenticate, token)
        except RateLimitedError as exc:
            return web.render(
                request, "signin.html", None, status=exc.status, next=target, error=str(exc)
            )
        except AuthError:
            web.limiter.failure(address)
            return web.render(
                request,
                "signin.html",
                None,
                status=401,
                next=target,
                error="That token is unknown or revoked. Ask your administrator for a new one.",
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=SESSION_SECONDS,
            path="/web",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        sess = await run_in_threadpool(web.session, request)
        if sess is not None:  # with no valid session there is nothing to protect
            check_csrf(request, sess, (await read_form(request)).get("csrf"))
        else:
            check_same_origin(request)
        response = RedirectResponse("/web/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/web", httponly=True, samesite="strict")
        return response

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404)
        body = (HERE / "static" / name).read_bytes()
        return Response(
            body,
            media_type=STATIC[name],
            headers={"Cache-Control": "no-cache", "ETag": f'"{hashlib.sha256(body).hexdigest()}"'},
        )

    # -- pages -------------------------------------------------------------------------------
    @router.get("/")
    def home(request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            bundles: dict[str, list[LineInfo]] = {}
            for line in repo.reads.catalog():
                bundles.setdefault(line.bundle, []).append(line)
            return web.render(request, "index.html", sess, bundles=bundles)

        return web.page(request, build)

    @router.get("/b/{bundle}/{locale}")
    def line_page(bundle: str, locale: str, request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            line = web.line(bundle, locale)
            others = [x.locale for x in repo.reads.catalog(bundle)]
            return web.render(
                request,
                "line.html",
                sess,
                line=line,
                versions=repo.reads.history(bundle, locale),
                locales=others,
                can_publish=web.can_publish(sess.who, bundle, locale, line.base_locale),
            )

        return web.page(request, build)

    @router.get("/b/{bundle}/{locale}/v/{version}")
    def version_page(bundle: str, locale: str, version: str, request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            manifest = web.version_manifest(bundle, locale, version)
            return web.render(
                request,
                "version.html",
                sess,
                line=web.line(bundle, locale),
                manifest=manifest,
                lessons=web.lessons(manifest),
            )

        return web.page(request, build)

    @router.get("/b/{bundle}/{locale}/v/{version}/preview/{file_path:path}")
    def preview_page(
        bundle: str, locale: str, version: str, file_path: str, request: Request
    ) -> Response:
        def build(sess: WebSession) -> Response:
            manifest = web.version_manifest(bundle, locale, version)
            entry = web.file_entry(manifest, file_path)
            return web.render(
                request,
                "preview.html",
                sess,
                line=web.line(bundle, locale),
                manifest=manifest,
                entry=entry,
                lessons=web.lessons(manifest),
                rendered=entry.path.lower().endswith(RENDERED),
            )

        return web.page(request, build)

    @router.get("/raw/{bundle}/{locale}/{version}/{file_path:path}")
    def raw_file(bundle: str, locale: str, version: str, file_path: str) -> Response:
        """A lesson file as stored: public like the chunks it is made of, but sandboxed."""
        try:
            manifest = web.version_manifest(bundle, locale, version)
            entry = web.file_entry(manifest, file_path)
        except SatchelError as exc:
            return Response(str(exc), status_code=exc.status, media_type="text/plain")
        media = entry.media_type
        if media in AS_TEXT:
            media = "text/plain"
        if media.startswith("text/") and "charset" not in media:
            media += "; charset=utf-8"
        return StreamingResponse(
            web.file_bytes(manifest, entry),
            media_type=media,
            headers={
                "Content-Length": str(entry.size),
                "Content-Security-Policy": RAW_CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, max-age=3600",
                "Referrer-Policy": "no-referrer",
            },
        )

    @router.get("/rendered/{bundle}/{locale}/{version}/{file_path:path}")
    def rendered_file(bundle: str, locale: str, version: str, file_path: str) -> Response:
        """A Markdown or CNXML lesson rendered as the offline viewer renders it, sandboxed
        like the raw file (public like it too: it is made of the same published bytes)."""
        try:
            manifest = web.version_manifest(bundle, locale, version)
            entry = web.file_entry(manifest, file_path)
            if not entry.path.lower().endswith(RENDERED):
                raise NotFoundError(f"{entry.path[:200]!r} is not a Markdown or CNXML lesson")
            page = web.rendered_page(manifest, entry)
        except SatchelError as exc:
            return Response(str(exc), status_code=exc.status, media_type="text/plain")
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": RAW_CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, max-age=3600",
                "Referrer-Policy": "no-referrer",
            },
        )

    @router.get("/b/{bundle}/{locale}/diff")
    def diff_page(bundle: str, locale: str, request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            line = web.line(bundle, locale)
            numbers = [v.version for v in line.versions]
            if not numbers:
                raise NotFoundError(f"{bundle}/{locale} has no versions yet")
            new = parse_version(request.query_params.get("to") or numbers[-1])
            old_raw = request.query_params.get("from")
            old = parse_version(old_raw) if old_raw else max(new - 1, 1)
            before = web.version_manifest(bundle, locale, old)
            after = web.version_manifest(bundle, locale, new)
            return web.render(
                request,
                "diff.html",
                sess,
                line=line,
                numbers=numbers,
                old=before,
                new=after,
                diff=diff_manifests(before, after),
                changes=content_changes(before, after, web.read_file),
            )

        return web.page(request, build)

    @router.get("/b/{bundle}/{locale}/translations")
    def translations_page(bundle: str, locale: str, request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            report = repo.reads.translation_report(bundle, locale)
            # The work first: stale, then missing, then the rest (each by path).
            order = {"stale": 0, "missing": 1, "extra": 2, "up-to-date": 3}
            files = sorted(report.files, key=lambda f: (order.get(f.state, 9), f.path))
            return web.render(
                request,
                "translations.html",
                sess,
                line=web.line(bundle, locale),
                report=report,
                files=files,
            )

        return web.page(request, build)

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

    # -- JSON API behind the upload page -----------------------------------------------------
    def api_session(
        request: Request, bundle: str, locale: str
    ) -> tuple[WebSession, tuple[str | None, int | None]]:
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
        files = _parse_unchanged(bytes(body), web.limits.max_files)
        latest = await run_in_threadpool(web.latest_manifest, bundle, locale)
        same = await run_in_threadpool(web.unchanged, bundle, locale, from_locale, files)
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
                web.publish_upload, sess.who, bundle, locale, variant, header, root
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

    from .classweb import add_class_pages  # here: it builds on this module's Web

    add_class_pages(router, web)
    return router


def _parse_unchanged(raw: bytes, max_files: int) -> list[tuple[str, str, int]]:
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
