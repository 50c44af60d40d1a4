"""``satchel view``: an offline lesson viewer over a LocalStore, on 127.0.0.1.

Every byte comes straight from the chunk store through :mod:`satchel.sync.reader` (no
checkout, no second copy), each chunk re-verified as it is read. The current version is read
from the ref on every request, so a sync that switches the ref (``os.replace``) mid-session
is picked up by the next request while the request in flight finishes on the version it
started with. Rendered pages point their images at version-pinned URLs
(``/b/B/L/N/file/...``), so a page and its images always come from the same version.

URLs::

    /                                    catalog: bundles, locales, titles, versions
    /b/BUNDLE/LOCALE/                    table of contents of the current version
    /b/BUNDLE/LOCALE/REV/page/PATH       a lesson rendered (Markdown, CNXML), framed (HTML)
                                         or shown (media)
    /b/BUNDLE/LOCALE/REV/file/PATH       the file's bytes (Content-Type, ETag, Range)
                                         REV is "current" or a version number
    /_lesson/TOKEN/BUNDLE/LOCALE/N/PATH  the same bytes for an HTML lesson's sandboxed frame

A path from a URL is only ever compared with the manifest's file list (never joined onto a
folder), so ``..``, absolute or encoded traversal simply is not found.

Lessons are other people's files, so none of them runs in the viewer's origin. Every file of
a bundle is served with ``LESSON_CSP``: ``sandbox`` (no scripts, no same origin: an opaque
origin that can reach neither the viewer, the catalogue nor another bundle; no forms, popups
or navigation of the page around it; in Chromium no meta refresh either), ``default-src
'none'`` with images, media, styles and fonts from the viewer alone, ``form-action 'none'``,
and ``nosniff``. An HTML lesson is shown inside the viewer's own page (breadcrumbs, lessons
before and after) in an ``<iframe sandbox>``, loaded from ``/_lesson/``: an opaque origin's
requests are cross-origin, so those bytes go without the viewer's ``Cross-Origin-Resource-
Policy: same-origin``, and instead behind a token per bundle and locale that only the
viewer's own page knows, so no web site can probe what the laptop holds. The viewer's own
pages allow no script at all. Requests whose ``Host`` is not the viewer's own address get 421
and nothing else (DNS rebinding).
"""

from __future__ import annotations

import hmac
import posixpath
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from satchel.content.errors import (
    ContentError,
    FormatError,
    NotFoundError,
    SatchelError,
    StoreError,
    UsageError,
    http_status,
)
from satchel.content.render_cnxml import Kind, Rendered, Resolver, Target, render_cnxml
from satchel.content.render_markdown import render_markdown
from satchel.edge.hosts import LOCAL_NAMES, HostGuard
from satchel.edge.http import IMMUTABLE, not_modified, public_error, ranged
from satchel.sync.local import LocalStore, Ref
from satchel.sync.reader import NotOnLaptopError, StoredFile, file_etag, find_file, missing_chunks
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .view_html import STYLE, crumbs, error_page, h, page, shown, tracks
from .view_model import DOCUMENTS, HTML_DOCS, PAGE_LIMIT, RENDERED, Line, TocItem, Viewer

# The viewer's own pages: no script at all, frames and everything else from the viewer only.
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' "
    "'unsafe-inline'; script-src 'none'; connect-src 'none'; font-src 'self'; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# Every file of a bundle (HTML, SVG, XML, anything a browser may render or run).
LESSON_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
VERIFY_BEFORE_SENDING = 4 * 1024 * 1024  # up to this, a bad chunk still gets an error page


class SecurityHeaders:
    """Pure ASGI middleware: every response gets the hardening headers, and the page CSP
    unless the route set a CSP of its own (lesson files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(store: LocalStore) -> ASGIApp:
    viewer = Viewer(store)

    def catalog(request: Request) -> Response:
        refs = viewer.refs()
        bundles: dict[str, list[Ref]] = {}
        for ref in refs:
            bundles.setdefault(ref.bundle, []).append(ref)
        if not bundles:
            return page("Library", "<h1>Library</h1><p>Nothing is synced into this store yet.</p>")
        out = ["<h1>Library</h1>"]
        for bundle, lines in bundles.items():
            out.append(f'<section aria-labelledby="b-{h(bundle)}"><h2 id="b-{h(bundle)}">')
            out.append(f"{h(bundle)}</h2><ul>")
            for ref in lines:
                try:
                    line = viewer.line(ref.bundle, ref.locale)
                except SatchelError as exc:
                    out.append(f"<li>{h(ref.locale)}: unreadable ({h(exc)})</li>")
                    continue
                docs = line.manifest.lessons or [
                    f for f in line.manifest.files if f.path.lower().endswith(DOCUMENTS)
                ]
                meta = line.manifest.meta
                about = (
                    " · ".join(x for x in (meta.subject, meta.grade, meta.description) if x)
                    if meta is not None
                    else ""
                )
                absent = sum(1 for f in line.manifest.files if missing_chunks(f, store.objects))
                note = f", {absent} files not on this laptop" if absent else ""
                out.append(
                    f'<li lang="{h(ref.locale)}"><a href="{line.base}/">'
                    f"{h(line.manifest.title or bundle)}</a>"
                    f' <span class="meta" lang="en">{h(ref.locale)} · version {line.version}'
                    f" · {len(docs)} lessons · {len(line.manifest.files)} files{h(note)}"
                    "</span>" + (f"<br><span>{h(about)}</span>" if about else "") + "</li>"
                )
            out.append("</ul></section>")
        return page("Library", "".join(out))

    def other_locales(line: Line, path: str | None) -> str:
        links = []
        for ref in viewer.refs():
            if ref.bundle != line.ref.bundle or ref.locale == line.ref.locale:
                continue
            try:
                other = viewer.line(ref.bundle, ref.locale)
            except SatchelError:
                continue
            href = f"{other.base}/"
            if path is not None and find_file(other.manifest, path) is not None:
                href = other.page_url(path)
            links.append(
                f'<li><a href="{h(href)}" hreflang="{h(ref.locale)}" lang="{h(ref.locale)}">'
                f"{h(other.manifest.title or ref.bundle)} ({h(ref.locale)})</a></li>"
            )
        if not links:
            return ""
        return (
            '<nav aria-label="Other languages" lang="en"><p>Also in:</p>'
            f"<ul>{''.join(links)}</ul></nav>"
        )

    def toc_list(line: Line, items: list[TocItem] | tuple[TocItem, ...]) -> str:
        out = ['<ol class="toc">']
        for it in items:
            if it.path is None:
                out.append(f"<li><strong>{h(it.title)}</strong>{toc_list(line, it.children)}</li>")
            elif it.present:
                out.append(f'<li><a href="{h(line.doc_url(it.path))}">{h(it.title)}</a></li>')
            else:
                out.append(f'<li><span class="absent">{h(it.title)}</span></li>')
        out.append("</ol>")
        return "".join(out)

    def contents(request: Request) -> Response:
        line = viewer.line(request.path_params["bundle"], request.path_params["locale"])
        sections = viewer.toc(line)
        out = [
            f"<h1>{h(line.manifest.title or line.ref.bundle)}</h1>",
            f'<p class="meta" lang="en">{h(line.ref.locale)} · version {line.version}</p>',
            other_locales(line, None),
        ]
        for heading, items in sections:
            out.append(f"<section><h2>{h(heading)}</h2>{toc_list(line, items)}</section>")
        files = []
        for f in line.manifest.files:
            absent = missing_chunks(f, store.objects) > 0
            link = (
                f'<span class="absent">{h(f.path)}</span>'
                if absent
                else f'<a href="{h(line.page_url(f.path))}">{h(f.path)}</a>'
            )
            files.append(f'<li>{link} <span class="meta">{f.size:,} bytes</span></li>')
        out.append(
            f"<details><summary>All files ({len(files)})</summary>"
            f"<ul>{''.join(files)}</ul></details>"
        )
        return page(
            line.manifest.title or line.ref.bundle,
            "".join(out),
            lang=line.ref.locale,
            crumbs=crumbs(line),
        )

    def resolver(line: Line, doc_path: str) -> Resolver:
        def resolve(ref: str, kind: Kind) -> Target:
            ref = ref.strip()
            if not ref or len(ref) > 2000:
                return Target(None)
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc:
                if parts.scheme in ("http", "https", "mailto", "ftp"):
                    return Target(ref, external=True)
                return Target(None)  # javascript:, data:, file: ... never
            frag = f"#{quote(parts.fragment, safe='')}" if parts.fragment else ""
            rel = unquote(parts.path)
            if not rel:
                return Target(frag or None)
            joined = posixpath.normpath(
                rel.lstrip("/")
                if rel.startswith("/")
                else posixpath.join(posixpath.dirname(doc_path), rel)
            )
            candidates = [joined]
            if joined.endswith(".html"):  # a built site's link to a page we have as Markdown
                candidates.append(joined[:-5] + ".md")
            for cand in candidates:
                entry = find_file(line.manifest, cand)
                if entry is None:
                    continue
                if missing_chunks(entry, store.objects):
                    return Target(None, absent=True)
                if kind == "image" or not cand.lower().endswith(RENDERED):
                    return Target(line.file_url(cand) + ("" if kind == "image" else frag))
                return Target(line.page_url(cand) + frag)
            return Target(None)

        return resolve

    def lesson(request: Request) -> Response:
        p = request.path_params
        line = viewer.line(p["bundle"], p["locale"], p["rev"])
        path = p["path"]
        sf = viewer.file(line, path)
        if not sf.is_complete():
            raise NotOnLaptopError(f"{path} is not on this laptop yet; sync to get it")
        lower = path.lower()
        resolve = resolver(line, path)
        rendered: Rendered | None = None
        raw = line.file_url(path)
        if lower.endswith(RENDERED):
            data = sf.read(PAGE_LIMIT)  # verified: a bad chunk is a 500, not a render error
            try:
                if lower.endswith(".cnxml"):
                    rendered = render_cnxml(data, resolve)
                else:
                    rendered = render_markdown(data.decode("utf-8", "replace"), resolve)
            except FormatError as exc:
                body = (
                    f'<div class="error" role="alert"><h1>This lesson cannot be shown as a page'
                    f'</h1><p>{h(exc)}</p><p><a href="{h(raw)}">Open the file as it is</a>'
                    "</p></div>"
                )
                return page(path, body, lang=line.ref.locale, crumbs=crumbs(line), status=422)
        if rendered is None:
            mt = sf.entry.media_type
            if lower.endswith(HTML_DOCS):
                # Someone else's page, framed in an opaque origin: it keeps its own layout and
                # the viewer keeps its way around it; nothing in it can reach the viewer.
                title = viewer.title(line, sf.entry) or path
                body = (
                    f'<h1 class="visually-hidden">{h(title)}</h1>'
                    f'<iframe class="lesson" sandbox="" src="{h(viewer.lesson_url(line, path))}"'
                    f' title="{h(title)}" referrerpolicy="no-referrer"></iframe>'
                )
                rendered = Rendered(title, body)
            elif mt.startswith("image/"):
                body = f'<h1>{h(path)}</h1><img src="{h(raw)}" alt="{h(posixpath.basename(path))}">'
            elif mt.startswith("video/"):
                body = (
                    f'<h1>{h(path)}</h1><video controls preload="metadata" src="{h(raw)}">'
                    f"{tracks(line, path)}</video>"
                )
            elif mt.startswith("audio/"):
                body = (
                    f'<h1>{h(path)}</h1><audio controls preload="metadata" src="{h(raw)}"></audio>'
                )
            else:
                body = (
                    f'<h1>{h(path)}</h1><p><a href="{h(raw)}">Open the file</a>'
                    f" ({sf.size:,} bytes, {h(mt)})</p>"
                )
            if rendered is None:
                rendered = Rendered(path, body)
        before, after = viewer.neighbours(line, path)
        steps = []
        if before is not None:
            href = h(line.doc_url(before.entry))
            steps.append(f'<a rel="prev" href="{href}">← {h(shown(before.title))}</a>')
        if after is not None:
            href = h(line.doc_url(after.entry))
            steps.append(f'<a rel="next" href="{href}">{h(shown(after.title))} →</a>')
        pager = f'<nav class="pager" aria-label="Lessons">{" ".join(steps)}</nav>' if steps else ""
        body = other_locales(line, path) + f"<article>{rendered.html}</article>{pager}"
        return page(
            rendered.title or path,
            body,
            lang=line.ref.locale,
            crumbs=crumbs(line, f" › <span>{h(rendered.title or path)}</span>"),
        )

    def raw_file(request: Request) -> Response:
        p = request.path_params
        line = viewer.line(p["bundle"], p["locale"], p["rev"])
        return lesson_file(request, line, p["path"], pinned=p["rev"] != "current", framed=False)

    def framed_file(request: Request) -> Response:
        """An HTML lesson's frame and what it loads: the token must be this line's."""
        p = request.path_params
        token = viewer.lesson_token(p["bundle"], p["locale"])
        if not hmac.compare_digest(token, str(p["token"])):
            raise NotFoundError("no such lesson file")
        line = viewer.line(p["bundle"], p["locale"], p["rev"])
        return lesson_file(request, line, p["path"], pinned=True, framed=True)

    def lesson_file(
        request: Request, line: Line, path: str, *, pinned: bool, framed: bool
    ) -> Response:
        sf = viewer.file(line, path)
        if not sf.is_complete():
            raise NotOnLaptopError(f"{path} is not on this laptop yet; sync to get it")
        if path.lower().endswith(HTML_DOCS) and request.headers.get("sec-fetch-dest") in (
            "document",
            "frame",
        ):
            # Opened as a page of its own: show it in the viewer's frame instead.
            return RedirectResponse(line.page_url(path, str(line.version)), status_code=303)
        response = send_file(request, sf, pinned=pinned)
        response.headers["Content-Security-Policy"] = LESSON_CSP
        if framed:  # loaded by an opaque origin: cross-origin by definition, token-guarded
            response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response

    def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def style(request: Request) -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "no-cache"})

    async def satchel_error(request: Request, exc: Exception) -> Response:
        # The status is the error's own (content/errors.py); the heading says it for people.
        shown_exc = public_error(exc)
        status = http_status(shown_exc)
        if isinstance(exc, NotOnLaptopError):
            return error_page(status, "Not on this laptop", str(exc))
        if isinstance(exc, NotFoundError | UsageError):
            return error_page(status, "Not found", str(exc))
        if isinstance(exc, ContentError):
            return error_page(
                status,
                "This file failed verification",
                f"{exc}. Nothing from it was shown. Run 'satchel fsck' and sync again.",
            )
        if isinstance(shown_exc, StoreError):
            return error_page(status, "The store cannot be read", str(shown_exc))
        return error_page(status, "Error", str(shown_exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return error_page(status, "Not found" if status == 404 else "Error", "No such page.")

    app = Starlette(
        routes=[
            Route("/", catalog),
            Route("/healthz", health),
            Route("/_/style.css", style),
            Route("/b/{bundle}/{locale}/", contents),
            Route("/b/{bundle}/{locale}/{rev}/page/{path:path}", lesson),
            Route("/b/{bundle}/{locale}/{rev}/file/{path:path}", raw_file),
            Route("/_lesson/{token}/{bundle}/{locale}/{rev}/{path:path}", framed_file),
        ],
        exception_handlers={SatchelError: satchel_error, HTTPException: http_error},
    )
    return HostGuard(SecurityHeaders(app), LOCAL_NAMES)


def send_file(request: Request, sf: StoredFile, *, pinned: bool) -> Response:
    etag = file_etag(sf.entry)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": IMMUTABLE if pinned else "no-cache",
    }
    media_type = sf.entry.media_type
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    answer = ranged(request, sf.size, etag, headers)
    if answer is None:
        return Response(status_code=416, headers=headers)
    status, start, end = answer
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    pieces: Iterator[bytes] = sf.iter_range(start, end)
    if end - start <= VERIFY_BEFORE_SENDING:
        # Verify everything before the status line: a bad chunk gets a proper error page.
        return Response(
            b"".join(pieces), status_code=status, headers=headers, media_type=media_type
        )
    # Large media: verify the first chunk before answering, the rest as it streams; a bad
    # chunk later cuts the connection short (the client sees fewer bytes than Content-Length),
    # never wrong bytes.
    first = next(pieces, b"")
    return StreamingResponse(
        chain([first], pieces), status_code=status, headers=headers, media_type=media_type
    )


def open_store(path: Path) -> LocalStore:
    """The store to view; it must already exist (viewing never creates one)."""
    if not (path / "satchel.json").is_file():
        raise UsageError(f"{path} is not a satchel store; run 'satchel sync --store {path}' first")
    return LocalStore(path, durable=False)
