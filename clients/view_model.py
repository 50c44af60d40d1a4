"""The store side of the viewer: lines, tables of contents, titles and neighbours; no HTTP.

A :class:`Line` is one bundle and locale at one version as a request sees it; the
:class:`Viewer` reads refs afresh for every request (a sync may switch one meanwhile) and keeps
verified manifests and first-chunk titles in bounded caches (both content-addressed, so a
cached entry never goes stale).
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
import secrets
import threading
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache
from satchel.content.errors import ContentError, NotFoundError, SatchelError, UsageError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.render_cnxml import TocNode, parse_collection
from satchel.content.text import HEAD_BYTES, head_title, kind_of
from satchel.content.toc import Lesson
from satchel.sync.local import LocalStore, Ref
from satchel.sync.reader import StoredFile, file_etag, find_file, missing_chunks
from satchel.sync.search import SearchIndex
from satchel.sync.store import Holds, held_now

from .view_html import shown, url_path

PAGE_LIMIT = 16 * 1024 * 1024  # larger documents are offered as files, not rendered
RENDERED = (".md", ".markdown", ".cnxml")
HTML_DOCS = (".html", ".htm", ".xhtml")
DOCUMENTS = (*RENDERED, *HTML_DOCS)
CACHED_MANIFESTS = 16
# Titles by content, bounded by characters: a course of 100,000 pages keeps all of its titles
# (about 10 MB); a cache of 20,000 entries re-read every page's head on every contents page.
CACHED_TITLE_CHARS = 32_000_000
CACHED_TOCS = 64
TITLES_FROM_INDEX = 64  # untitled pages before a contents asks the search index for titles
TOC_SECONDS = 5.0
# A bundle's cover picture: a file of one of these names at the top of the bundle (the first
# found, in this order, whatever the case). A convention, not a satchel.toml key: a new key in
# the signed metadata would make laptops on an older satchel refuse the manifest.
COVER_NAMES = ("cover.svg", "cover.webp", "cover.png", "cover.jpg", "cover.jpeg")


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
        """Where a lesson is read: in the viewer's page (rendered, or an HTML page framed)."""
        return self.page_url(path)

    @property
    def manifest_id(self) -> str:
        return self.ref.versions.get(self.version, self.ref.manifest)

    def file_url(self, path: str) -> str:
        # Pinned to the version: a page's images come from the version of its text.
        return f"{self.base}/{self.version}/file/{url_path(path)}"


@dataclass(frozen=True, slots=True)
class BaseNotice:
    """A translated lesson whose base line has moved on since the translation was made."""

    base_locale: str
    made_from: int  # the base version the translation was made from (the signed ``base``)
    base_version: int  # the base line's current version on this laptop
    changed: bool | None  # this lesson's base files changed (None: that version is not kept)
    base_url: str  # the same lesson in the base locale (or that line's contents)


@dataclass(frozen=True, slots=True)
class TocItem:
    title: str
    path: str | None  # None: a chapter heading
    present: bool
    children: tuple[TocItem, ...] = ()


class Viewer:
    """The store side of the viewer: refs, manifests, titles; no HTTP here."""

    def __init__(self, store: LocalStore, index: SearchIndex | None = None) -> None:
        self.store = store
        self.index = index  # titles of whole courses in one query (see make_toc)
        self._secret = secrets.token_bytes(32)  # new each start: lesson tokens never outlive it
        self._lock = threading.Lock()
        self._manifests: LRUCache[str, Manifest] = LRUCache(CACHED_MANIFESTS)
        self._titles: LRUCache[str, str | None] = LRUCache(
            CACHED_TITLE_CHARS, getsizeof=lambda title: len(title or "") + 100
        )
        # Every lesson page shows its course's contents; which lessons are on the laptop only
        # changes while a sync adds chunks, so a contents is kept a few seconds.
        self._tocs: TTLCache[str, list[tuple[str, list[TocItem]]]] = TTLCache(
            CACHED_TOCS, TOC_SECONDS
        )

    def manifest(self, manifest_id: str) -> Manifest:
        # Manifests are content-addressed: verified once, a cached copy cannot go stale.
        with self._lock:
            cached = self._manifests.get(manifest_id)
        if cached is not None:
            return cached
        manifest = self.store.load_manifest(manifest_id)
        with self._lock:
            self._manifests[manifest_id] = manifest
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

    def lesson_token(self, bundle: str, locale: str) -> str:
        """The token in ``/_lesson/`` URLs of one bundle and locale (one line's lessons cannot
        name another line's files by it)."""
        mac = hmac.new(self._secret, f"{bundle}/{locale}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def lesson_url(self, line: Line, path: str) -> str:
        token = self.lesson_token(line.ref.bundle, line.ref.locale)
        where = f"{line.ref.bundle}/{line.ref.locale}/{line.version}/{url_path(path)}"
        return f"/_lesson/{token}/{where}"

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
        title = head_title(kind_of(entry.path) or "html", b"".join(sf.iter_range(0, HEAD_BYTES)))
        with self._lock:
            self._titles[key] = title
        return title

    # -- table of contents -----------------------------------------------------------------
    def toc(self, line: Line) -> list[tuple[str, list[TocItem]]]:
        """The line's table of contents (:meth:`make_toc`), kept for :data:`TOC_SECONDS`."""
        key = f"{line.ref.bundle}/{line.ref.locale}/{line.version}/{line.manifest_id}"
        with self._lock:
            cached = self._tocs.get(key)
        if cached is not None:
            return cached
        made = self.make_toc(line)
        with self._lock:
            self._tocs[key] = made
        return made

    def make_toc(self, line: Line, held: Holds | None = None) -> list[tuple[str, list[TocItem]]]:
        """Sections of (heading, items), then every other document under "Other pages".

        The signed lesson structure comes first when the manifest has one (the publisher's
        ``satchel.toml`` or its layout rule), grouped under the chapters of an OpenStax
        collection when there is one. Manifests without it fall back to the collection's
        chapters and a Carpentries ``config.yaml`` episode list.
        """
        # One listing, not a stat per chunk (``held``: the caller's, when it has one).
        store = held if held is not None else held_now(self.store.objects)
        docs = [f for f in line.manifest.files if f.path.lower().endswith(DOCUMENTS)]
        self._titles_from_index(line, docs)
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
            sections.append((heading, self._lessons(line, collections, used, store)))
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
            sf = StoredFile(config, self.store.objects, line.manifest)
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

    def _titles_from_index(self, line: Line, docs: list[FileEntry]) -> None:
        """Cache the titles the search index holds for this version's pages (one query)
        instead of reading each page's first chunk: the same rule (head_title) over the same
        bytes, 16 s for a course of 100,000 pages. Pages the index lacks are read as before."""
        if self.index is None or len(docs) < TITLES_FROM_INDEX:
            return
        with self._lock:
            todo = {f.path: key for f in docs if (key := file_etag(f)) not in self._titles}
        if len(todo) < TITLES_FROM_INDEX:
            return
        try:
            known = self.index.titles(line.ref.bundle, line.ref.locale, line.version)
        except SatchelError:
            return  # derived data: a damaged index costs the reads, not the page
        with self._lock:
            for path, key in todo.items():
                if path in known:
                    self._titles[key] = known[path]

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
        held: Holds,
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
                if entry is None or missing_chunks(entry, held):
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

    def cover(self, line: Line) -> str | None:
        """The bundle's cover picture (see :data:`COVER_NAMES`) when it is on this laptop."""
        tops = {f.path.lower(): f for f in line.manifest.files if "/" not in f.path}
        for name in COVER_NAMES:
            entry = tops.get(name)
            if entry is not None and not missing_chunks(entry, self.store.objects):
                return entry.path
        return None

    def base_notice(self, line: Line, path: str) -> BaseNotice | None:
        """Whether to tell the student that the lesson's base has changed since translation.

        The signed ``base`` of the variant's manifest says which base version it was made
        from; the base line on this laptop says where that line is now. When the laptop still
        keeps the version it was made from, the lesson's own files decide (a lesson whose base
        files are as they were says nothing); otherwise the line has changed and the lesson
        may have. A file the variant shares with the base as it is now was never translated.
        """
        base = line.manifest.base
        if base is None:
            return None
        ref = self.store.ref(line.ref.bundle, base.locale)
        if ref is None or ref.version <= base.version:
            return None
        try:
            now = self.manifest(ref.manifest)
        except ContentError:
            return None
        mine, theirs = find_file(line.manifest, path), find_file(now, path)
        if mine is not None and theirs is not None and mine.chunks == theirs.chunks:
            return None
        lesson = next((x for x in line.manifest.lessons if x.entry == path), None)
        paths = lesson.paths if lesson is not None else (path,)
        changed: bool | None = None
        old_id = ref.versions.get(base.version)
        if old_id is not None:
            try:
                then = self.manifest(old_id)
            except ContentError:
                then = None
            if then is not None:
                changed = any(_chunks(then, p) != _chunks(now, p) for p in paths)
                if not changed:
                    return None
        base_line = Line(ref, ref.version, now)
        url = base_line.page_url(path) if theirs is not None else f"{base_line.base}/"
        return BaseNotice(base.locale, base.version, ref.version, changed, url)

    def neighbours(self, line: Line, path: str) -> tuple[Lesson | None, Lesson | None]:
        """The lessons before and after ``path`` in the signed order (None at the ends)."""
        lessons = line.manifest.lessons
        for i, lesson in enumerate(lessons):
            if lesson.entry == path:
                before = lessons[i - 1] if i > 0 else None
                after = lessons[i + 1] if i + 1 < len(lessons) else None
                return before, after
        return None, None


def _chunks(manifest: Manifest, path: str) -> tuple[tuple[str, int], ...] | None:
    entry = find_file(manifest, path)
    return None if entry is None else tuple(entry.chunks)


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
