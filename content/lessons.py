"""Lesson structure: a bundle's metadata and its ordered table of contents.

A publisher reads it from an optional ``satchel.toml`` at the top of the source folder::

    [bundle]
    title = "Introductory Statistics"
    subject = "Mathematics"
    grade = "11-12"
    description = "Descriptive statistics, probability and inference."
    locale = "en"                 # optional; must match the published locale when given

    [[lessons]]
    title = "Sampling and Data"
    entry = "modules/m46882/index.cnxml"
    include = ["media/fig-1.jpg", "data/"]   # optional: more files or folders ("x/")

or, when the file is absent, derives one from the folder layout (:func:`derive`). The result
travels inside the signed manifest (``meta`` and ``lessons``), so a viewer or a selective sync
can trust it like the files. Each lesson lists every path it needs (its own folder, what its
text files reference, and ``include``), so ``--only LESSON`` needs no other lookup.

:func:`structure` is the reader's API: given a Manifest, the metadata and ordered lessons,
derived from the file names alone for manifests published before lessons existed.
"""

from __future__ import annotations

import bisect
import html
import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import UnsafePathError, UsageError
from .manifest import Manifest
from .paths import check_path
from .toc import MAX_FIELD, MAX_LESSONS, BundleMeta, Lesson, Structure

CONFIG_NAME = "satchel.toml"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_SCAN_BYTES = 4 * 1024 * 1024  # text files larger than this are not searched for links

# Names that make a folder a lesson (in this order of preference) and files that are text.
INDEX_NAMES = ("index.html", "index.htm", "index.cnxml", "index.md", "README.md", "readme.md")
TEXT_SUFFIXES = (".html", ".htm", ".md", ".cnxml", ".xml", ".xhtml", ".svg")
PAGE_SUFFIXES = (".html", ".htm", ".md")
# Repository furniture, not lessons.
NOT_LESSONS = {
    "readme.md",
    "license.md",
    "licence.md",
    "contributing.md",
    "code_of_conduct.md",
    "changelog.md",
    "authors.md",
    "citation.md",
}

_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"'#?]+)|\]\(\s*<?([^)\s#?>]+)""", re.I)
_TITLE_TAG = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_MD_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)
_FRONT_TITLE = re.compile(r"\A---\s*\n(?:.*\n)*?title:\s*['\"]?(.+?)['\"]?\s*\n(?:.*\n)*?---", re.M)
_TAG = re.compile(r"<[^>]+>")
_MODULE_REF = re.compile(r"""document\s*=\s*["']([^"']+)["']""")


# -- publisher side: satchel.toml or a layout rule ----------------------------------------
Reader = Callable[[str], bytes | None]
"""Returns the bytes of a bundle path (None when too large to scan)."""


def folder_reader(root: Path) -> Reader:
    def read(path: str) -> bytes | None:
        full = root / path
        if full.stat().st_size > MAX_SCAN_BYTES:
            return None
        return full.read_bytes()

    return read


def load(root: Path, files: list[str], *, title: str = "", locale: str = "") -> Structure:
    """The structure of a source folder: its ``satchel.toml`` when present, else derived."""
    read = folder_reader(root)
    config = root / CONFIG_NAME
    if CONFIG_NAME in files:
        if config.stat().st_size > MAX_CONFIG_BYTES:
            raise UsageError(f"{CONFIG_NAME} is over {MAX_CONFIG_BYTES:,} bytes")
        return from_config(config.read_bytes(), files, read, title=title, locale=locale)
    return derive(files, read, title=title, locale=locale)


def from_config(
    data: bytes, files: list[str], read: Reader, *, title: str = "", locale: str = ""
) -> Structure:
    """Parse a ``satchel.toml``; anything wrong is a UsageError that names the place."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{CONFIG_NAME}: {exc}") from None
    unknown = sorted(set(doc) - {"bundle", "lessons"})
    if unknown:
        raise UsageError(
            f"{CONFIG_NAME}: unknown table {unknown[0]!r}; use [bundle] and [[lessons]]"
        )
    meta = BundleMeta.from_json(doc.get("bundle", {}), UsageError)
    if locale and meta.locale and meta.locale != locale:
        raise UsageError(
            f"{CONFIG_NAME} says locale {meta.locale!r} but this publish is for {locale!r}"
        )
    meta = BundleMeta(
        meta.title or title, meta.subject, meta.grade, meta.description, meta.locale or locale
    )
    raw = doc.get("lessons")
    if raw is None:
        return Structure(meta, derive(files, read).lessons)
    if not isinstance(raw, list) or len(raw) > MAX_LESSONS:
        raise UsageError(f"{CONFIG_NAME}: lessons must be a list of [[lessons]] tables")
    tree = _Tree(files)
    known = tree.known
    lessons: list[Lesson] = []
    for n, item in enumerate(raw, 1):
        where = f"{CONFIG_NAME}: lesson {n}"
        if not isinstance(item, dict):
            raise UsageError(f"{where} must be a table with title and entry")
        extra = sorted(set(item) - {"title", "entry", "include"})
        if extra:
            raise UsageError(f"{where}: unknown key {extra[0]!r}; use title, entry, include")
        entry, include = item.get("entry"), item.get("include", [])
        if not isinstance(entry, str) or not entry:
            raise UsageError(f'{where} needs entry = "path/to/file" (a string)')
        entry = _inside(entry, where)
        if entry not in known:
            raise UsageError(f"{where}: entry {entry!r} is not a file in the folder")
        name = item.get("title", "")
        if not isinstance(name, str) or len(name) > MAX_FIELD:
            raise UsageError(f"{where}: title must be a string of at most {MAX_FIELD} characters")
        if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
            raise UsageError(f"{where}: include must be a list of paths")
        paths = set(_needs(entry, tree, read, folder_lesson=False))
        for pattern in include:
            pattern = pattern.rstrip("/") if pattern.endswith("/") else pattern
            pattern = _inside(pattern, where)
            hits = [pattern] if pattern in known else tree.under(pattern)
            if not hits:
                raise UsageError(f"{where}: include {pattern!r} matches no file")
            paths.update(hits)
        lessons.append(Lesson(name or _title(entry, read), entry, tuple(sorted(paths))))
    if len({lesson.entry for lesson in lessons}) != len(lessons):
        raise UsageError(f"{CONFIG_NAME}: two lessons have the same entry")
    return Structure(meta, tuple(lessons))


def _inside(path: str, where: str) -> str:
    normal = posixpath.normpath(path)
    try:
        return check_path(normal)
    except UnsafePathError:
        raise UsageError(f"{where}: {path[:200]!r} is not a path inside the folder") from None


def derive(
    files: list[str], read: Reader | None = None, *, title: str = "", locale: str = ""
) -> Structure:
    """A table of contents from the layout alone.

    1. Each folder (not the top) that holds an index page (index.html, index.cnxml,
       index.md, README.md) is a lesson: OpenStax modules, one-page-per-folder sites.
       When a ``*.collection.xml`` lists those folders (OpenStax), its order is the book's.
    2. Otherwise the pages (.html/.md) of the folder that has the most of them, by name
       (Carpentries ``episodes/01-intro.md``...; numbered names sort in teaching order).
    3. Otherwise one lesson: the top index page, or the first page.
    Titles come from ``<title>``, a Markdown front-matter ``title:`` or ``# heading``, else
    the file or folder name.
    """
    meta = BundleMeta(title=title, locale=locale)
    tree = _Tree(files)
    by_dir: dict[str, list[str]] = {}
    for path in files:
        by_dir.setdefault(posixpath.dirname(path), []).append(path)
    folder_entries: list[str] = []
    for folder, names in sorted(by_dir.items()):
        if not folder:
            continue
        base = {posixpath.basename(n): n for n in names}
        for index in INDEX_NAMES:
            if index in base:
                folder_entries.append(base[index])
                break
    if folder_entries:
        order = _collection_order(files, read) if read is not None else {}
        folder_entries.sort(
            key=lambda e: (order.get(posixpath.basename(posixpath.dirname(e)), len(order)), e)
        )
        lessons = [
            Lesson(_title(e, read), e, tuple(sorted(_needs(e, tree, read, folder_lesson=True))))
            for e in folder_entries
        ]
        return Structure(meta, tuple(lessons))
    pages = {
        folder: [
            n
            for n in names
            if n.lower().endswith(PAGE_SUFFIXES)
            and posixpath.basename(n).lower() not in NOT_LESSONS
        ]
        for folder, names in by_dir.items()
    }
    best = max(sorted(pages), key=lambda f: (len(pages[f]), f == ""), default=None)
    if best is not None and pages[best]:
        chosen = sorted(pages[best])
    else:
        chosen = sorted(p for p in files if p.lower().endswith(PAGE_SUFFIXES))[:1]
    lessons = [
        Lesson(_title(e, read), e, tuple(sorted(_needs(e, tree, read, folder_lesson=False))))
        for e in chosen
    ]
    return Structure(meta, tuple(lessons))


def _collection_order(files: list[str], read: Reader) -> dict[str, int]:
    order: dict[str, int] = {}
    for path in files:
        if path.endswith(".collection.xml"):
            data = read(path)
            if data is None:
                continue
            for match in _MODULE_REF.finditer(data.decode("utf-8", "replace")):
                order.setdefault(match.group(1), len(order))
    return order


class _Tree:
    """The file list, sorted and hashed once: lookups stay cheap for 10,000 lessons."""

    def __init__(self, files: Iterable[str]) -> None:
        self.sorted = sorted(files)
        self.known = set(self.sorted)

    def under(self, folder: str) -> list[str]:
        """Every file inside ``folder`` (a bundle path without a trailing slash)."""
        prefix = folder + "/"
        start = bisect.bisect_left(self.sorted, prefix)
        # Everything that starts with prefix sorts before prefix + the highest code point.
        end = bisect.bisect_left(self.sorted, prefix + "\U0010ffff", start)
        return self.sorted[start:end]


def _needs(entry: str, tree: _Tree, read: Reader | None, *, folder_lesson: bool) -> set[str]:
    """The entry, its folder's files (a folder lesson) and what their text links to."""
    known = tree.known
    folder = posixpath.dirname(entry)
    own = {entry}
    if folder_lesson and folder:
        own.update(tree.under(folder))
    needed = set(own)
    if read is None:
        return needed
    for path in sorted(own):
        if not path.lower().endswith(TEXT_SUFFIXES):
            continue
        data = read(path)
        if data is None:
            continue
        here = posixpath.dirname(path)
        for match in _LINK.finditer(data.decode("utf-8", "replace")):
            ref = match.group(1) or match.group(2) or ""
            if "://" in ref or ref.startswith(("/", "mailto:", "data:")):
                continue
            target = posixpath.normpath(posixpath.join(here, ref))
            if target in known:
                needed.add(target)
    return needed


def _title(entry: str, read: Reader | None) -> str:
    data = read(entry) if read is not None else None
    if data is not None:
        text = data[:65536].decode("utf-8", "replace")
        found: str | None = None
        if entry.lower().endswith(".md"):
            front = _FRONT_TITLE.search(text)
            heading = _MD_HEADING.search(text)
            found = front.group(1) if front else heading.group(1) if heading else None
        else:
            tag = _TITLE_TAG.search(text)
            # <title>Sampling &amp; Data</title>: the title is text, not markup.
            found = html.unescape(_TAG.sub("", tag.group(1))) if tag else None
        if found:
            cleaned = " ".join(found.split())[:MAX_FIELD]
            if cleaned:
                return cleaned
    stem = posixpath.basename(entry)
    if posixpath.splitext(stem)[0].lower() in ("index", "readme") and posixpath.dirname(entry):
        stem = posixpath.basename(posixpath.dirname(entry))
    stem = posixpath.splitext(stem)[0]
    return (re.sub(r"[-_]+", " ", re.sub(r"^\d+[-_. ]*", "", stem)).strip() or stem).capitalize()[
        :MAX_FIELD
    ]


# -- reader side ----------------------------------------------------------------------------
def structure(manifest: Manifest) -> Structure:
    """Metadata and ordered lessons of a manifest (derived from names for older manifests)."""
    meta = manifest.meta
    if meta is None:
        meta = BundleMeta(title=manifest.title, locale=manifest.locale)
    if manifest.lessons:
        return Structure(meta, tuple(manifest.lessons))
    derived = derive([f.path for f in manifest.files])
    return Structure(meta, derived.lessons)
