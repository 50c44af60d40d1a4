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
    /b/BUNDLE/LOCALE/REV/page/PATH       a lesson rendered (Markdown, CNXML) or shown (media)
    /b/BUNDLE/LOCALE/REV/file/PATH       the file's bytes (Content-Type, ETag, Range)
                                         REV is "current" or a version number

A path from a URL is only ever compared with the manifest's file list (never joined onto a
folder), so ``..``, absolute or encoded traversal simply is not found. Every response carries
a Content-Security-Policy that allows only this origin: a lesson cannot make the browser
reach outside the laptop; external links are shown and marked, never loaded.
"""

from __future__ import annotations

import html
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
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
)
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.render_cnxml import (
    Kind,
    Rendered,
    Resolver,
    Target,
    TocNode,
    document_title,
    parse_collection,
    render_cnxml,
)
from satchel.content.render_markdown import markdown_title, render_markdown
from satchel.content.toc import Lesson
from satchel.sync.local import LocalStore, Ref
from satchel.sync.reader import (
    NotOnLaptopError,
    StoredFile,
    file_etag,
    find_file,
    missing_chunks,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' "
    "'unsafe-inline'; script-src 'self'; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
IMMUTABLE = "public, max-age=31536000, immutable"
PAGE_LIMIT = 16 * 1024 * 1024  # larger documents are offered as files, not rendered
VERIFY_BEFORE_SENDING = 4 * 1024 * 1024  # up to this, a bad chunk still gets an error page
RENDERED = (".md", ".markdown", ".cnxml")
DOCUMENTS = (*RENDERED, ".html", ".htm")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z]{2,8});")


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def shown(title: str) -> str:
    """A lesson title for display: derived titles may still carry XML entities (``&amp;``)."""
    return html.unescape(title) if _ENTITY.search(title) else title


def url_path(path: str) -> str:
    return quote(path, safe="/")


class SecurityHeaders:
    """Pure ASGI middleware: the same CSP and hardening headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True, slots=True)
class Line:
    """One bundle/locale at one version, as a request sees it."""

    ref: Ref
    version: int
    manifest: Manifest

    @property
    def base(self) -> str:
        return f"/b/{self.ref.bundle}/{self.ref.locale}"

    def page_url(self, path: str, rev: str = "current") -> str:
        return f"{self.base}/{rev}/page/{url_path(path)}"

    def doc_url(self, path: str) -> str:
        """Where a lesson is read: rendered, or an HTML page as it is."""
        if path.lower().endswith((".html", ".htm")):
            return f"{self.base}/current/file/{url_path(path)}"
        return self.page_url(path)

    def file_url(self, path: str) -> str:
        # Pinned to the version: a page's images come from the version of its text.
        return f"{self.base}/{self.version}/file/{url_path(path)}"


@dataclass(frozen=True, slots=True)
class TocItem:
    title: str
    path: str | None  # None: a chapter heading
    present: bool
    children: tuple[TocItem, ...] = ()


class Viewer:
    """The store side of the viewer: refs, manifests, titles; no HTTP here."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._titles: OrderedDict[str, str | None] = OrderedDict()

    def manifest(self, manifest_id: str) -> Manifest:
        # Manifests are content-addressed: verified once, a cached copy cannot go stale.
        with self._lock:
            cached = self._manifests.get(manifest_id)
            if cached is not None:
                self._manifests.move_to_end(manifest_id)
                return cached
        manifest = self.store.load_manifest(manifest_id)
        with self._lock:
            self._manifests[manifest_id] = manifest
            while len(self._manifests) > 16:
                self._manifests.popitem(last=False)
        return manifest

    def refs(self) -> list[Ref]:
        return self.store.refs()

    def line(self, bundle: str, locale: str, rev: str = "current") -> Line:
        try:
            check_bundle(bundle)
            check_locale(locale)
        except UsageError:
            raise NotFoundError(f"there is no bundle {bundle[:80]!r} in {locale[:20]!r}") from None
        ref = self.store.ref(bundle, locale)
        if ref is None:
            raise NotFoundError(f"{bundle}/{locale} is not on this laptop; sync it first")
        if rev == "current":
            version = ref.version
        elif rev.isdigit() and len(rev) < 10 and int(rev) in ref.versions:
            version = int(rev)
        else:
            raise NotFoundError(f"{bundle}/{locale} has no version {rev[:20]!r} on this laptop")
        return Line(ref, version, self.manifest(ref.versions.get(version, ref.manifest)))

    def file(self, line: Line, path: str) -> StoredFile:
        entry = find_file(line.manifest, path)
        if entry is None:
            raise NotFoundError(
                f"{path[:200]!r} is not in {line.ref.bundle}/{line.ref.locale}"
                f" version {line.version}"
            )
        return StoredFile(entry, self.store.objects, line.manifest)

    def title(self, line: Line, entry: FileEntry) -> str | None:
        """A document's title from its first chunk (cached by content), None if unknown."""
        key = file_etag(entry)
        with self._lock:
            if key in self._titles:
                return self._titles[key]
        sf = StoredFile(entry, self.store.objects, line.manifest)
        if not sf.is_complete():
            return None
        head = b"".join(sf.iter_range(0, 8192))
        if entry.path.endswith(".cnxml"):
            title = document_title(head)
        elif entry.path.endswith((".md", ".markdown")):
            title = markdown_title(head.decode("utf-8", "replace"))
        else:
            m = re.search(rb"<title[^>]*>(.*?)</title>", head, re.S | re.I)
            title = (
                html.unescape(" ".join(m.group(1).decode("utf-8", "replace").split()))[:300]
                if m
                else None
            )
        with self._lock:
            self._titles[key] = title
            while len(self._titles) > 20000:
                self._titles.popitem(last=False)
        return title

    # -- table of contents -----------------------------------------------------------------
    def toc(self, line: Line) -> list[tuple[str, list[TocItem]]]:
        """Sections of (heading, items), then every other document under "Other pages".

        The signed lesson structure comes first when the manifest has one (the publisher's
        ``satchel.toml`` or its layout rule), grouped under the chapters of an OpenStax
        collection when there is one. Manifests without it fall back to the collection's
        chapters and a Carpentries ``config.yaml`` episode list.
        """
        store = self.store.objects
        docs = [f for f in line.manifest.files if f.path.lower().endswith(DOCUMENTS)]
        by_path = {f.path: f for f in docs}
        used: set[str] = set()

        def item(path: str, fallback: str) -> TocItem:
            entry = by_path[path]
            used.add(path)
            present = missing_chunks(entry, store) == 0
            return TocItem(self.title(line, entry) or fallback, path, present)

        sections: list[tuple[str, list[TocItem]]] = []
        collections = self._collections(line)
        if line.manifest.lessons:
            heading = collections[0][1] if collections and collections[0][1] else "Lessons"
            sections.append((heading, self._lessons(line, collections, used)))
        for folder, book, nodes in collections if not line.manifest.lessons else ():

            def convert(node: TocNode, folder: str) -> TocItem | None:
                if node.module is not None:
                    path = posixpath.join(folder, "modules", node.module, "index.cnxml")
                    return item(path, node.module) if path in by_path else None
                kids = tuple(
                    k for k in (convert(c, folder) for c in node.children) if k is not None
                )
                return TocItem(node.title or "Chapter", None, all(k.present for k in kids), kids)

            items = [i for i in (convert(n, folder) for n in nodes) if i is not None]
            sections.append((book or "Book", items))
        config = find_file(line.manifest, "config.yaml")
        if not line.manifest.lessons and config is not None and config.size < 256 * 1024:
            sf = StoredFile(config, store, line.manifest)
            if sf.is_complete():
                episodes = _episodes(sf.read().decode("utf-8", "replace"))
                items = [
                    item(f"episodes/{name}", name)
                    for name in episodes
                    if f"episodes/{name}" in by_path and f"episodes/{name}" not in used
                ]
                if items:
                    sections.append(("Episodes", items))
        rest = [item(f.path, f.path) for f in docs if f.path not in used]
        rest.sort(key=lambda i: (i.path not in ("index.md", "README.md"), i.path or ""))
        if rest:
            sections.append(("Other pages" if sections else "Pages", rest))
        return sections

    def _collections(self, line: Line) -> list[tuple[str, str, tuple[TocNode, ...]]]:
        """(bundle folder, book title, chapters) of each readable ``*.collection.xml``."""
        out = []
        for coll in [f for f in line.manifest.files if f.path.endswith(".collection.xml")][:4]:
            sf = StoredFile(coll, self.store.objects, line.manifest)
            if not sf.is_complete() or coll.size > PAGE_LIMIT:
                continue
            try:
                book, nodes = parse_collection(sf.read())
            except ContentError:
                continue  # a broken collection only costs the chapter headings
            out.append((posixpath.dirname(posixpath.dirname(coll.path)), book, nodes))
        return out

    def _lessons(
        self,
        line: Line,
        collections: list[tuple[str, str, tuple[TocNode, ...]]],
        used: set[str],
    ) -> list[TocItem]:
        """The signed lessons in order; a lesson is on the laptop when every file it needs is."""
        chapter_of: dict[str, str] = {}
        for folder, _book, nodes in collections:
            for node in nodes:
                if node.module is None:
                    for module in node.modules():
                        path = posixpath.join(folder, "modules", module, "index.cnxml")
                        chapter_of.setdefault(path, node.title or "Chapter")
        items: list[TocItem] = []
        group: list[TocItem] = []
        chapter: str | None = None

        def flush() -> None:
            if chapter is not None and group:
                kids = tuple(group)
                items.append(TocItem(chapter, None, all(k.present for k in kids), kids))
            group.clear()

        for lesson in line.manifest.lessons:
            used.add(lesson.entry)
            present = True
            for path in lesson.paths:
                entry = find_file(line.manifest, path)
                if entry is None or missing_chunks(entry, self.store.objects):
                    present = False
                    break
            # Titles derived from XML/HTML may arrive with their entities still escaped.
            it = TocItem(shown(lesson.title), lesson.entry, present)
            where = chapter_of.get(lesson.entry)
            if where != chapter:
                flush()
                chapter = where
            if chapter is None:
                items.append(it)
            else:
                group.append(it)
        flush()
        return items

    def neighbours(self, line: Line, path: str) -> tuple[Lesson | None, Lesson | None]:
        """The lessons before and after ``path`` in the signed order (None at the ends)."""
        lessons = line.manifest.lessons
        for i, lesson in enumerate(lessons):
            if lesson.entry == path:
                before = lessons[i - 1] if i > 0 else None
                after = lessons[i + 1] if i + 1 < len(lessons) else None
                return before, after
        return None, None


def _episodes(config: str) -> list[str]:
    """The ``episodes:`` list of a Carpentries config.yaml (a list of plain file names)."""
    out: list[str] = []
    inside = False
    for line in config.splitlines():
        if re.match(r"episodes:\s*$", line):
            inside = True
        elif inside:
            m = re.match(r"\s*-\s*['\"]?([A-Za-z0-9._-]+\.md)['\"]?\s*$", line)
            if m:
                out.append(m.group(1))
            elif line.strip() and not line.lstrip().startswith("#"):
                break
    return out[:1000]


# -- HTML ----------------------------------------------------------------------------------------
STYLE = """
:root { color-scheme: light; --fg: #1b1b1b; --muted: #555; --accent: #0b57a4; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.55 system-ui, sans-serif; color: var(--fg); background: #fff; }
header { background: #f1f4f8; border-bottom: 1px solid #d0d7e0; padding: .5rem 1rem; }
header nav { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem; }
a { color: var(--accent); }
a:focus, button:focus, summary:focus, main:focus-visible { outline: 3px solid #f5a623;
  outline-offset: 2px; }
a.external::after { content: " ↗ (external)"; font-size: .8em; color: var(--muted); }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: .5rem; background: #fff; padding: .5rem; z-index: 9; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
img, video { max-width: 100%; height: auto; }
figure { margin: 1rem 0; }
figcaption { color: var(--muted); font-size: .95em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #c4ccd6; padding: .25rem .5rem; vertical-align: top; }
.note, .example, .exercise { border-left: 4px solid #9db7d9; padding: .25rem 1rem;
  margin: 1rem 0; background: #f7f9fc; }
.para { margin: .75rem 0; }
pre { overflow-x: auto; background: #f4f4f4; padding: .5rem; }
.missing, .absent { color: #8a4b00; }
.absent::after { content: " — not on this laptop"; }
.error { border: 2px solid #b00020; padding: 1rem; }
ol.toc ol { padding-left: 1.25rem; }
.pager { display: flex; justify-content: space-between; gap: 1rem; margin: 2rem 0 1rem;
  border-top: 1px solid #d0d7e0; padding-top: 1rem; }
.meta { color: var(--muted); font-size: .9em; }
@media (max-width: 700px) { body { font-size: 16px; } main { padding: .5rem; } }
"""


def page(
    title: str, body: str, *, lang: str = "en", crumbs: str = "", status: int = 200
) -> Response:
    doc = (
        f'<!doctype html>\n<html lang="{h(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{h(title)} · Satchel</title><link rel="stylesheet" href="/_/style.css">'
        '</head><body><a class="skip" href="#main">Skip to content</a>'
        f'<header><nav aria-label="Breadcrumb" lang="en"><a href="/">Library</a>{crumbs}</nav>'
        f'</header><main id="main" tabindex="-1">{body}</main></body></html>'
    )
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-cache"})


def error_page(status: int, heading: str, message: str) -> Response:
    body = f'<div class="error" role="alert"><h1>{h(heading)}</h1><p>{h(message)}</p></div>'
    return page(heading, body, status=status)


def tracks(line: Line, video: str) -> str:
    """<track> elements for the video's subtitle files beside it: ``clip.vtt`` (the line's
    own locale) or ``clip.LANG.vtt`` (a locale variant can add tracks and share the video)."""
    stem = posixpath.splitext(video)[0]
    out = []
    for f in line.manifest.files:
        if not (f.path.startswith(stem + ".") and f.path.endswith(".vtt")):
            continue
        middle = f.path[len(stem) + 1 : -len(".vtt")]
        lang = middle if re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?", middle) else ""
        lang = lang or line.ref.locale
        default = " default" if lang == line.ref.locale else ""
        out.append(
            f'<track kind="subtitles" src="{h(line.file_url(f.path))}" srclang="{h(lang)}"'
            f' label="{h(lang)}"{default}>'
        )
    return "".join(out)


def _crumbs(line: Line, extra: str = "") -> str:
    title = line.manifest.title or line.ref.bundle
    return f' › <a href="{line.base}/">{h(title)} ({h(line.ref.locale)})</a>{extra}'


# -- app -----------------------------------------------------------------------------------------
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
            crumbs=_crumbs(line),
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
                return page(path, body, lang=line.ref.locale, crumbs=_crumbs(line), status=422)
        if rendered is None:
            mt = sf.entry.media_type
            if lower.endswith((".html", ".htm")):
                body = f'<h1>{h(path)}</h1><p><a href="{h(raw)}">Open the page</a></p>'
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
            crumbs=_crumbs(line, f" › <span>{h(rendered.title or path)}</span>"),
        )

    def raw_file(request: Request) -> Response:
        p = request.path_params
        line = viewer.line(p["bundle"], p["locale"], p["rev"])
        sf = viewer.file(line, p["path"])
        if not sf.is_complete():
            raise NotOnLaptopError(f"{p['path']} is not on this laptop yet; sync to get it")
        return send_file(request, sf, pinned=p["rev"] != "current")

    def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def style(request: Request) -> Response:
        return Response(STYLE, media_type="text/css", headers={"Cache-Control": "no-cache"})

    async def satchel_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NotOnLaptopError):
            return error_page(404, "Not on this laptop", str(exc))
        if isinstance(exc, (NotFoundError, UsageError)):
            return error_page(404, "Not found", str(exc))
        if isinstance(exc, ContentError):
            return error_page(
                500,
                "This file failed verification",
                f"{exc}. Nothing from it was shown. Run 'satchel fsck' and sync again.",
            )
        if isinstance(exc, StoreError):
            return error_page(500, "The store cannot be read", str(exc))
        return error_page(500, "Error", str(exc))

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
        ],
        exception_handlers={SatchelError: satchel_error, HTTPException: http_error},
    )
    return SecurityHeaders(app)


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """(start, end exclusive) for one satisfiable byte range; None: ignore the header (serve
    the whole file); False: unsatisfiable (416)."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None  # malformed or several ranges: RFC 9110 lets us send the whole file
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if len(first) > 18 or len(last) > 18:
        return False
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, end


def send_file(request: Request, sf: StoredFile, *, pinned: bool) -> Response:
    etag = file_etag(sf.entry)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": IMMUTABLE if pinned else "no-cache",
    }
    media_type = sf.entry.media_type
    inm = request.headers.get("if-none-match")
    if inm is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Response(status_code=304, headers=headers)
    rng = parse_range(request.headers.get("range"), sf.size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        rng = None
    if rng is False:
        headers["Content-Range"] = f"bytes */{sf.size}"
        return Response(status_code=416, headers=headers)
    status = 200
    start, end = 0, sf.size
    if isinstance(rng, tuple):
        start, end = rng
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{sf.size}"
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
