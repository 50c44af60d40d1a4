"""The searchable text of a lesson file: its title, headings and body, without markup.

:func:`extract_text` takes a file's bytes and its kind (Markdown, HTML or OpenStax CNXML; see
:func:`kind_of`) and returns plain text for a full-text index: no tags, no scripts or styles,
entities decoded, whitespace collapsed. It is pure and bounded: inputs over
:data:`MAX_SOURCE_BYTES` give no text, and each part is capped (:data:`MAX_BODY` and friends),
so one huge page cannot swell an index. It never raises for bad content: a malformed page
yields what text can be read from it, because one broken lesson must not stop a search index
from covering the rest.

What counts as text follows what a student sees in the viewer: Markdown through the same
CommonMark parser (raw HTML in Markdown is shown as text, so it is indexed as text), CNXML
through the same namespaces and titles as :mod:`satchel.content.render_cnxml` (MathML and
metadata left out), HTML through libxml2's tolerant parser (lxml), with ``<img alt>``
kept and ``<script>``, ``<style>``, ``<template>`` and the head's other content dropped.

The two private-use characters :data:`MARK_START` and :data:`MARK_END` are removed from every
output, so an index may use them to mark matches in snippets without a page forging a mark.
"""

from __future__ import annotations

import codecs
import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lxml import etree
from markdown_it import MarkdownIt
from markdown_it.token import Token

from .errors import FormatError
from .exercises import is_gift_fence
from .gift import parse_gift
from .lessons import MAX_SCAN_BYTES
from .render_cnxml import CNXML, document_title, local, parse_xml
from .render_markdown import markdown_title

Kind = Literal["markdown", "html", "cnxml"]

# Larger pages are not read: real lessons are well under 1 MB, and Markdown's and CNXML's
# parsers are Python (the same limit as scanning pages for links).
MAX_SOURCE_BYTES = MAX_SCAN_BYTES
MAX_TITLE = 300
MAX_HEADINGS = 16_000  # characters
MAX_BODY = 400_000  # characters: an OpenStax module has at most ~120,000

# Private-use code points: never in lesson text we index, so safe as match marks.
MARK_START = "\ue000"
MARK_END = "\ue001"

_SUFFIXES: dict[str, Kind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".cnxml": "cnxml",
}

# Control characters (tab and newline aside) and the marks: removed from all output.
_UNWANTED = re.compile(f"[\x00-\x08\x0b-\x1f\x7f{MARK_START}{MARK_END}]")


@dataclass(frozen=True, slots=True)
class PageText:
    """The text of one page: title, headings (one per line) and body (headings excluded)."""

    title: str = ""
    headings: str = ""
    body: str = ""

    @property
    def size(self) -> int:
        """UTF-8 bytes of all three parts (what an index covers)."""
        return sum(len(part.encode("utf-8")) for part in (self.title, self.headings, self.body))


def kind_of(path: str) -> Kind | None:
    """The kind of a bundle path by its suffix, or None when it is not a text page."""
    dot = path.rfind(".")
    return _SUFFIXES.get(path[dot:].lower()) if dot >= 0 else None


HEAD_BYTES = 8192  # a table of contents reads a page's title from this much of it
_HEAD_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.S | re.I)


def head_title(kind: Kind, head: bytes) -> str | None:
    """The title a table of contents shows for a page, from its first :data:`HEAD_BYTES`:
    a CNXML module's ``<title>``, Markdown's front matter or first heading, an HTML page's
    ``<title>``; None when it has none. Cheap on purpose (no parse): the viewer asks it of
    every page of a course, and the search index keeps it so the viewer need not."""
    head = head[:HEAD_BYTES]
    if kind == "cnxml":
        return document_title(head)
    if kind == "markdown":
        return markdown_title(head.decode("utf-8", "replace"))
    m = _HEAD_TITLE.search(head)
    return (
        html.unescape(" ".join(m.group(1).decode("utf-8", "replace").split()))[:300] if m else None
    )


def extract_text(data: bytes, kind: Kind) -> PageText:
    """Title, headings and body text of a page (empty when over :data:`MAX_SOURCE_BYTES`)."""
    if len(data) > MAX_SOURCE_BYTES:
        return PageText()
    if kind == "cnxml":
        try:
            return _cnxml(data)
        except FormatError:
            # Not well-formed, or a DOCTYPE (refused, never expanded): read it as tag soup.
            return _html(data, skip_head=False)
    if kind == "html":
        return _html(data, skip_head=True)
    if kind == "markdown":
        return _markdown(_decode(data))
    raise FormatError(f"no text extractor for {str(kind)[:40]!r}; use markdown, html or cnxml")


# -- shared -----------------------------------------------------------------------------------
class _Parts:
    """Text gathered into title, headings and body; capped when the page is done (the input
    is bounded by MAX_SOURCE_BYTES, so the pieces are too)."""

    def __init__(self) -> None:
        self.title: list[str] = []
        self.headings: list[str] = []
        self.body: list[str] = []

    def heading(self, text: str) -> None:
        line = _clean(text)
        if line:
            self.headings.append(line)

    def result(self, title: str | None = None) -> PageText:
        chosen = _clean(title if title is not None else "".join(self.title))
        heads = "\n".join(self.headings)[:MAX_HEADINGS]
        return PageText(chosen[:MAX_TITLE], heads, _clean("".join(self.body))[:MAX_BODY])


def _clean(text: str) -> str:
    # str.split() splits on the same Unicode whitespace as \s, in C and without a regex
    # match object per gap.
    return " ".join(_UNWANTED.sub("", text).split())


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)


def _decode(data: bytes) -> str:
    """Bytes to text: a BOM, else UTF-8, else a ``<meta charset>`` the page declares."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    m = _META_CHARSET.search(data[:4096])
    if m:
        try:
            return data.decode(codecs.lookup(m.group(1).decode("ascii")).name, "replace")
        except (LookupError, UnicodeError):
            pass
    return data.decode("utf-8", "replace")


# -- HTML -------------------------------------------------------------------------------------
_SKIP = {"script", "style", "template", "noscript", "svg", "math", "iframe", "object"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Inline elements join their text to the words around them; every other tag separates words.
_INLINE = {
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "i", "ins",
    "kbd", "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
}  # fmt: skip
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}  # fmt: skip


if TYPE_CHECKING:  # a protocol in the type stubs only; lxml looks methods up by name
    _Target = etree.ParserTarget[None]
else:
    _Target = object


class _HTMLText(_Target):
    """An lxml parser target: libxml2 tokenizes the page in C and these callbacks decide what
    is text (2.1x the standard library's pure-Python parser for the whole extraction of 10,000
    pages; the search index is built at every sync and import)."""

    def __init__(self, skip_head: bool) -> None:
        self.parts = _Parts()
        self.skip_head = skip_head
        self.skipping: list[str] = []  # open elements whose content is not text
        self.in_title = False
        self.in_head = False
        self.in_heading = False
        self.heading: list[str] = []
        self.heading_size = 0

    def start(self, tag: str, attrib: dict[str, str], /) -> None:
        if tag in _VOID:
            if tag == "img" and not self.skipping:
                alt = attrib.get("alt")
                if alt:
                    self._text(f" {alt} ")
            elif not self.skipping:
                self._text(" ")
            return
        if self.skipping or tag in _SKIP:
            self.skipping.append(tag)
            return
        if tag == "head":
            self.in_head = True
        elif tag == "body":
            self.in_head = False
        elif tag == "title":
            self.in_title = True
        if tag not in _INLINE:
            # A heading holds phrasing only: a block (or another heading) starts after it, so
            # an unclosed <h2> cannot swallow the page.
            self.end_heading()
            self.in_heading = tag in _HEADINGS
            self._text(" ")

    def end(self, tag: str, /) -> None:
        if tag in _VOID:
            return
        if self.skipping:
            # Close up to the matching tag: a missing </span> inside <script> cannot trap us.
            if tag in self.skipping:
                while self.skipping and self.skipping.pop() != tag:
                    pass
            return
        if tag == "head":
            self.in_head = False
        elif tag == "title":
            self.in_title = False
        if tag not in _INLINE:
            self.end_heading()
            self._text(" ")

    def end_heading(self) -> None:
        if self.in_heading:
            self.parts.heading("".join(self.heading))
            self.heading.clear()
            self.heading_size = 0
            self.in_heading = False

    def data(self, data: str, /) -> None:
        if not self.skipping:
            self._text(data)

    def close(self) -> None:
        self.end_heading()  # a heading left open at the end of the page

    def _text(self, text: str) -> None:
        if self.in_title:
            self.parts.title.append(text)
        elif self.in_heading:
            if self.heading_size < MAX_HEADINGS:  # a running count: no rescans of the list
                self.heading.append(text)
                self.heading_size += len(text)
        elif not (self.in_head and self.skip_head):
            self.parts.body.append(text)


def _html(data: bytes, *, skip_head: bool) -> PageText:
    target = _HTMLText(skip_head)
    # No network, no DTD, no entity expansion beyond HTML's own; libxml2 recovers from any
    # tag soup. Fed our decoded text, so the page's charset follows _decode's rules.
    parser = etree.HTMLParser(
        target=target, no_network=True, remove_pis=True, default_doctype=False
    )
    # Control characters are not text (the output drops them) and libxml2 refuses some.
    text = _UNWANTED.sub("", _decode(data))
    try:
        parser.feed(text or " ")  # lxml refuses an empty feed
        parser.close()
    except (etree.LxmlError, ValueError):
        target.close()  # what was read before libxml2 gave up is still the page's text
    parts = target.parts
    title = _clean("".join(parts.title))
    if not title and parts.headings:  # no <title>: the first heading names the page
        title = parts.headings[0]
    return parts.result(title)


# -- CNXML ------------------------------------------------------------------------------------
_CNXML_LEN = len(CNXML)
_CNXML_INLINE = {
    "emphasis", "term", "sub", "sup", "link", "foreign", "cite", "quote", "code", "span",
    "cite-title",
}  # fmt: skip


def _cnxml(data: bytes) -> PageText:
    root = parse_xml(data, "CNXML module")
    if local(root.tag) != "document" or not root.tag.startswith(CNXML):
        raise FormatError("CNXML module does not start with <document>")
    parts = _Parts()
    title_el = root.find(f"{CNXML}title")
    title = "".join(title_el.itertext()) if title_el is not None else document_title(data) or ""
    for name in ("content", "glossary"):
        el = root.find(f"{CNXML}{name}")
        if el is not None:
            _walk(el, parts, 0)
    return parts.result(title)


def _walk(el: ET.Element, parts: _Parts, depth: int) -> None:
    """Body text of ``el``'s children, titles of sections, figures, notes... as headings."""
    body = parts.body
    body.append(el.text or "")
    for child in el:
        tag = child.tag
        name = tag[_CNXML_LEN:] if isinstance(tag, str) and tag.startswith(CNXML) else None
        if name is None or name in ("metadata", "newline", "space"):
            body.append(" ")  # formulas (MathML) and foreign vocabularies are not searched
        elif name == "title":
            parts.heading("".join(child.itertext()))
            body.append(" ")
        elif depth >= 100:  # deeper than the renderer goes: its text, flattened
            body.append(" " + "".join(child.itertext()) + " ")
        elif name in _CNXML_INLINE:
            _walk(child, parts, depth + 1)
        else:
            body.append(" ")
            _walk(child, parts, depth + 1)
            body.append(" ")
        body.append(child.tail or "")


# -- Markdown ---------------------------------------------------------------------------------
_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(['\"]?)(.+?)\1[ \t]*$", re.M)
_FENCE_DIV = re.compile(r"^:{3,}[ \t]*[A-Za-z]?[\w-]*[ \t]*:*[ \t]*$", re.M)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(the YAML front matter's ``title:``, the Markdown after the front matter)."""
    m = _FRONT.match(text)
    if m is None:
        return None, text
    t = _FRONT_TITLE.search(m.group(1))
    return (t.group(2).strip() if t else None), text[m.end() :]


def _inline_text(token: Token) -> str:
    out: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "image":
            out.append(f" {child.content} ")  # the alt text
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
    return "".join(out)


def _markdown(text: str) -> PageText:
    front_title, rest = split_front_matter(text)
    # Pandoc fenced divs (``::: challenge``) mark boxes: the markers are not text.
    rest = _FENCE_DIV.sub("", rest[: MAX_BODY * 4])
    parts = _Parts()
    first_heading: str | None = None
    in_heading = False
    for token in _md.parse(rest):
        if token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline":
            line = _inline_text(token)
            if in_heading:
                if first_heading is None and token.level <= 1:
                    first_heading = line
                parts.heading(line)
            else:
                parts.body.append(line + " ")
        elif token.type == "fence" and is_gift_fence(token.info):
            parts.body.append(_gift_text(token.content) + " ")
        elif token.type in ("fence", "code_block"):
            parts.body.append(token.content + " ")
    title = front_title if front_title else first_heading
    return parts.result(title or "")


def _gift_text(block: str) -> str:
    """What a learner sees of a GIFT block's questions: titles, stems and the choices offered,
    never the accepted answers, the right choice or feedback (a search must not give away an
    exercise's answer). A block that does not parse gives nothing."""
    try:
        questions = parse_gift(block, where="a lesson's GIFT block")
    except FormatError:
        return ""
    words: list[str] = []
    for q in questions:
        words += [q.title, q.text, q.text_after]
        if q.kind in ("multiple_choice", "multiple_answers"):
            words += [c.text for c in q.choices]
    return " ".join(w for w in words if w)
