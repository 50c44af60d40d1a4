"""The web page for teachers and curators, under ``/web/``: server-rendered Jinja2 templates.

A thin adapter like :mod:`satchel.server.app`: pages read the server's read models and
manifests, and a browser upload is published through the same
:class:`~satchel.sync.publish.Publisher` path as ``satchel publish`` (a
:class:`~satchel.server.publishing.LocalTarget`), so only chunks the server lacks are stored.
Data work lives in :mod:`satchel.server.webdata`; the upload form and its JSON API in
:mod:`satchel.server.webupload`; the Class page in :mod:`satchel.server.classweb`.

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
import posixpath
import shutil
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
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from satchel.content.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    SatchelError,
    UsageError,
    http_status,
)
from satchel.content.lessons import structure
from satchel.content.locales import locale_name
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import verify_object
from satchel.content.render_cnxml import Kind, Target, render_cnxml
from satchel.content.render_markdown import render_markdown
from satchel.content.toc import Lesson
from satchel.sync.store import store_lookup

from .authz import authorize_publish
from .ratelimit import FailureLimiter
from .readmodels import LineInfo
from .repository import Repository
from .textdiff import content_changes
from .tokens import Principal
from .webdata import (
    FileHashes,
    WebLimits,
    diff_manifests,
)

HERE = Path(__file__).resolve().parent
COOKIE = "satchel_web"
SESSION_SECONDS = 8 * 3600  # a shared school computer forgets the token after a working day
MAX_FORM = 16 * 1024

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

    from .classweb import add_class_pages  # here: they build on this module's Web
    from .webupload import add_upload_routes

    add_upload_routes(router, web)
    add_class_pages(router, web)
    return router
