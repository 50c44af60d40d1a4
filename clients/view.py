"""``satchel view``: an offline lesson viewer over a LocalStore, on 127.0.0.1 (or, served by
``satchel share --viewer``, a classroom hub's viewer for every browser on the LAN).

Every byte comes straight from the chunk store through :mod:`satchel.sync.reader` (no
checkout, no second copy), each chunk re-verified as it is read. The current version is read
from the ref on every request, so a sync that switches the ref (``os.replace``) mid-session
is picked up by the next request while the request in flight finishes on the version it
started with. Rendered pages point their images at version-pinned URLs
(``/b/B/L/N/file/...``), so a page and its images always come from the same version.

URLs::

    /                                    catalog: courses, languages, progress, continue
    /search?q=WORDS[&page=N]             full-text search of every lesson on the laptop
    /learners                            who is learning (GET: the list; POST: choose)
    /api/events                          POST: record opened / completed / answered
    /b/BUNDLE/LOCALE/                    table of contents of the current version
    /b/BUNDLE/LOCALE/REV/page/PATH       a lesson rendered (Markdown, CNXML), framed (HTML)
                                         or shown (media)
    /b/BUNDLE/LOCALE/REV/file/PATH       the file's bytes (Content-Type, ETag, Range)
                                         REV is "current" or a version number
    /_lesson/TOKEN/BUNDLE/LOCALE/N/PATH  the same bytes for an HTML lesson's sandboxed frame
    /_/style.css, /_/viewer.js           the viewer's style and its one script

The jobs live beside this module: lines, contents and titles (``view_model``), the page frame
(``view_html``), catalog and contents (``view_pages``), lessons (``view_lesson``), search
(``view_search``), learners and events (``view_learning``), the script (``view_script``).

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
pages run exactly one script, the viewer's, allowed by its hash and nothing else (not
``'self'``: a bundle's ``.js`` comes from the viewer's origin too). Requests whose ``Host`` is
not the viewer's own address get 421 and nothing else (DNS rebinding).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from satchel.content.errors import (
    ContentError,
    ForbiddenError,
    NotFoundError,
    SatchelError,
    StoreError,
    UsageError,
    http_status,
)
from satchel.edge.hosts import LOCAL_NAMES, HostGuard
from satchel.edge.http import IMMUTABLE, not_modified, public_error, ranged
from satchel.sync.learning import Journey
from satchel.sync.local import LocalStore
from satchel.sync.reader import NotOnLaptopError, StoredFile, file_etag
from satchel.sync.search import SearchIndex
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .view_html import STYLE, error_page
from .view_learning import Learning, learning_routes
from .view_lesson import lesson_page
from .view_model import HTML_DOCS, Line, Viewer
from .view_pages import catalog, contents
from .view_script import SCRIPT, SCRIPT_INTEGRITY, SCRIPT_URL
from .view_search import search_page

# The viewer's own pages: its one script (by hash), fetches to itself (POST /api/events),
# frames and everything else from the viewer only.
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' "
    f"'unsafe-inline'; script-src '{SCRIPT_INTEGRITY}'; connect-src 'self'; font-src 'self'; "
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
    # same-origin: the viewer's own forms carry their true Origin; nothing leaves with a Referer.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect x="2" y="5" width="12"'
    b' height="9" rx="2" fill="#0b57a4"/><path d="M5 5V3.5A1.5 1.5 0 0 1 6.5 2h3A1.5 1.5 0 0 1'
    b' 11 3.5V5" fill="none" stroke="#0b57a4" stroke-width="1.5"/></svg>'
)
VERIFY_BEFORE_SENDING = 4 * 1024 * 1024  # up to this, a bad chunk still gets an error page


class SecurityHeaders:
    """Pure ASGI middleware: every response gets the hardening headers, and the page CSP
    unless the route set a CSP of its own (lesson files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @property
    def routes(self) -> list[BaseRoute]:
        """The routes of the app inside (a mount lists them: docs and tests walk them)."""
        return list(getattr(self.app, "routes", []))

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


def create_app(store: LocalStore, *, hub: bool = False) -> ASGIApp:
    """The viewer. ``hub``: served by ``satchel share --viewer`` to the LAN, whose own Host
    guard (the relay's rule: its names and addresses, any port) stands in front of it."""
    index = SearchIndex.of(store)  # read-only: sync, import and gc keep it
    viewer = Viewer(store, index)
    learning = Learning(store.root, viewer)
    handlers = learning_routes(viewer, learning)

    def journey(request: Request) -> Journey | None:
        return learning.journey(learning.chosen(request))

    def catalog_page(request: Request) -> Response:
        return catalog(viewer, journey(request), learning.chrome(request))

    def contents_page(request: Request) -> Response:
        return contents(viewer, request, journey(request), learning.chrome(request))

    def lesson(request: Request) -> Response:
        chrome = learning.chrome(request)
        mine = journey(request)
        p = request.path_params
        line_journey = mine.line(p["bundle"], p["locale"]) if mine is not None else None
        return lesson_page(viewer, request, line_journey, chrome)

    def search(request: Request) -> Response:
        chrome = learning.chrome(request, request.query_params.get("q", "")[:200])
        return search_page(index, request, chrome)

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
        return JSONResponse({"status": "ok", "role": "hub" if hub else "viewer"})

    def style(request: Request) -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "no-cache"})

    def script(request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    def icon(request: Request) -> Response:
        return Response(
            ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    async def satchel_error(request: Request, exc: Exception) -> Response:
        # The status is the error's own (content/errors.py); the heading says it for people.
        shown_exc = public_error(exc)
        status = http_status(shown_exc)
        chrome = learning.chrome(request)
        if isinstance(exc, NotOnLaptopError):
            return error_page(status, "Not on this laptop", str(exc), chrome)
        if isinstance(exc, NotFoundError | UsageError):
            return error_page(
                status, "Not found" if status == 404 else "Not done", str(exc), chrome
            )
        if isinstance(exc, ForbiddenError):
            return error_page(status, "Refused", str(exc), chrome)
        if isinstance(exc, ContentError):
            return error_page(
                status,
                "This file failed verification",
                f"{exc}. Nothing from it was shown. Run 'satchel fsck' and sync again.",
                chrome,
            )
        if isinstance(shown_exc, StoreError):
            return error_page(status, "The store cannot be read", str(shown_exc), chrome)
        return error_page(status, "Error", str(shown_exc), chrome)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return error_page(status, "Not found" if status == 404 else "Error", "No such page.")

    app = Starlette(
        routes=[
            Route("/", catalog_page),
            Route("/healthz", health),
            Route("/_/style.css", style),
            Route(SCRIPT_URL, script),
            Route("/_/icon.svg", icon),
            Route("/favicon.ico", icon),
            Route("/search", search),
            Route("/learners", handlers.learners),
            Route("/learners", handlers.choose, methods=["POST"]),
            Route("/api/events", handlers.events, methods=["POST"]),
            Route("/b/{bundle}/{locale}/", contents_page),
            Route("/b/{bundle}/{locale}/{rev}/page/{path:path}", lesson),
            Route("/b/{bundle}/{locale}/{rev}/file/{path:path}", raw_file),
            Route("/_lesson/{token}/{bundle}/{locale}/{rev}/{path:path}", framed_file),
        ],
        exception_handlers={SatchelError: satchel_error, HTTPException: http_error},
    )
    secured = SecurityHeaders(app)
    return secured if hub else HostGuard(secured, LOCAL_NAMES)


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
