"""OpenStax CNXML to safe HTML, and the table of contents of an OpenStax collection.

A small transform over :mod:`xml.etree.ElementTree`: every element maps to a fixed HTML tag
(or to its children only), every text is escaped, and only the attributes written here are
emitted, so a module cannot smuggle a script, a style or an event handler into the page.
MathML passes through (Chromium renders it) with the same rule: MathML elements only, no
``href``/``src``/event attributes, no annotations.

Documents with a DOCTYPE or entity declaration are refused (no entity expansion, no external
entities), and nesting deeper than :data:`MAX_DEPTH` is flattened to its text. Links and
images are resolved by the caller (``resolve``), which decides what a path inside the bundle
points to; the renderer itself never touches a file.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from .errors import FormatError

CNXML = "{http://cnx.rice.edu/cnxml}"
MATHML = "{http://www.w3.org/1998/Math/MathML}"
MDML = "{http://cnx.rice.edu/mdml}"
COLLXML = "{http://cnx.rice.edu/collxml}"
MAX_DEPTH = 100
MAX_BYTES = 16 * 1024 * 1024

Kind = Literal["image", "link"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a link or image of a document points, as decided by the caller."""

    url: str | None  # None: nothing to load or follow (missing, or not allowed)
    external: bool = False  # outside the laptop: shown, marked, never loaded
    absent: bool = False  # in the bundle, but not synced to this laptop (yet)


def unavailable(target: Target, kind: str = "image") -> str:
    """How a link or image that will not load is described in its place."""
    if target.external:
        return f"external {kind}"
    return f"{kind} not on this laptop" if target.absent else f"{kind} not available"


Resolver = Callable[[str, Kind], Target]


@dataclass(frozen=True, slots=True)
class Rendered:
    title: str
    html: str


@dataclass(frozen=True, slots=True)
class Exercise:
    """An ``<exercise>`` of a module: the viewer shows the problem, and the solution on demand.

    ``id`` is the exercise's own ``id`` (a valid, first-seen one), else ``exercise-<n>``, its
    1-based position in the module: unique within the module, stable while the module is.
    """

    id: str
    problem_html: str  # everything in the exercise but its solutions
    solution_html: str | None  # the solutions' content, or None when it has none


ExerciseHook = Callable[[Exercise], str]
"""Renders an exercise in place of the default (problem, then a folded solution)."""


def _esc(text: str | None) -> str:
    return html.escape(text or "", quote=True)


def parse_xml(data: bytes, what: str) -> ET.Element:
    """Parse untrusted XML: bounded size, no DOCTYPE or entity declarations."""
    if len(data) > MAX_BYTES:
        raise FormatError(f"{what} is over {MAX_BYTES:,} bytes")
    head = data[:65536].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data.upper():
        raise FormatError(f"{what} declares a DOCTYPE or entities, which are not allowed")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise FormatError(f"{what} is not well-formed XML ({exc})") from None


def local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def document_title(data: bytes) -> str | None:
    """The module's title from the first bytes of a CNXML document, without a full parse."""
    m = re.search(rb"<title>(.*?)</title>", data[:8192], re.S)
    if m is None:
        return None
    text = re.sub(rb"<[^>]*>", b"", m.group(1)).decode("utf-8", "replace")
    return html.unescape(" ".join(text.split()))[:300] or None


# -- MathML ------------------------------------------------------------------------------------
_MATH_ATTR = re.compile(r"[a-z][a-z0-9-]{0,40}")
_MATH_DROP = {"annotation", "annotation-xml", "maction"}


def _math(el: ET.Element, depth: int, out: list[str]) -> None:
    name = local(el.tag)
    if not el.tag.startswith(MATHML) or not _MATH_ATTR.fullmatch(name) or name in _MATH_DROP:
        return
    attrs = ""
    for key, value in el.attrib.items():
        if (
            _MATH_ATTR.fullmatch(key)
            and not key.startswith("on")
            and key not in ("href", "src", "style", "xlink", "id")
        ):
            attrs += f' {key}="{_esc(value)}"'
    if name == "math":
        attrs = ' xmlns="http://www.w3.org/1998/Math/MathML"' + attrs
    out.append(f"<{name}{attrs}>{_esc(el.text)}")
    if depth < MAX_DEPTH:
        for child in el:
            _math(child, depth + 1, out)
            out.append(_esc(child.tail))
    out.append(f"</{name}>")


# -- CNXML -------------------------------------------------------------------------------------
_SIMPLE = {
    "sub": "sub",
    "sup": "sup",
    "cite": "cite",
    "caption": "figcaption",
    "quote": "q",
    "foreign": "span",
    "label": "span",
}
_BOXES = {"example", "exercise", "problem", "commentary", "equation", "glossary", "footnote"}
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,120}")


@dataclass
class _Renderer:
    resolve: Resolver
    out: list[str] = field(default_factory=list)
    exercise_ids: dict[ET.Element, str] = field(default_factory=dict)
    exercise_hook: ExerciseHook | None = None

    def id_attr(self, el: ET.Element) -> str:
        value = el.get("id", "")
        return f' id="{_esc(value)}"' if _ID.fullmatch(value) else ""

    def children(self, el: ET.Element, depth: int, level: int) -> None:
        self.out.append(_esc(el.text))
        for child in el:
            self.element(child, depth + 1, level)
            self.out.append(_esc(child.tail))

    def wrap(self, tag: str, el: ET.Element, depth: int, level: int, extra: str = "") -> None:
        self.out.append(f"<{tag}{self.id_attr(el)}{extra}>")
        self.children(el, depth, level)
        self.out.append(f"</{tag}>")

    def element(self, el: ET.Element, depth: int, level: int) -> None:
        if depth > MAX_DEPTH:
            self.out.append(_esc("".join(el.itertext())))
            return
        if not isinstance(el.tag, str):
            return
        if el.tag.startswith(MATHML):
            _math(el, depth, self.out)
            return
        if not el.tag.startswith(CNXML):
            return  # metadata and foreign vocabularies are not shown
        name = local(el.tag)
        h = min(level, 6)
        if name in ("metadata",):
            return
        if name == "title":
            self.wrap(f"h{h}", el, depth, level)
        elif name == "section":
            self.wrap("section", el, depth, level + 1)
        elif name == "para":
            self.wrap("div", el, depth, level, ' class="para"')
        elif name == "emphasis":
            effect = el.get("effect", "bold")
            tag = {"italics": "em", "underline": "u"}.get(effect, "strong")
            self.wrap(tag, el, depth, level)
        elif name == "term":
            self.wrap("dfn", el, depth, level)
        elif name == "list":
            ordered = el.get("list-type") == "enumerated"
            self.wrap("ol" if ordered else "ul", el, depth, level)
        elif name == "item":
            self.wrap("li", el, depth, level)
        elif name == "newline":
            self.out.append("<br>")
        elif name == "space":
            self.out.append(" ")
        elif name == "code":
            block = el.get("display") == "block"
            self.out.append("<pre><code>" if block else "<code>")
            self.out.append(_esc("".join(el.itertext())))
            self.out.append("</code></pre>" if block else "</code>")
        elif name == "figure":
            self.figure(el, depth, level)
        elif name == "media":
            self.media(el)
        elif name == "image":
            self.image(el, el.get("alt", ""))
        elif name == "note":
            self.wrap("aside", el, depth, level + 1, ' class="note" role="note"')
        elif name == "exercise" and self.exercise_hook is not None and el in self.exercise_ids:
            self.out.append(self.exercise_hook(self.exercise(el, depth, level)))
        elif name == "solution":
            self.out.append(f"<details{self.id_attr(el)}><summary>Solution</summary>")
            self.children(el, depth, level + 1)
            self.out.append("</details>")
        elif name in _BOXES:
            self.wrap("div", el, depth, level + 1, f' class="{name}"')
        elif name == "definition":
            self.wrap("dl", el, depth, level)
        elif name == "meaning":
            self.wrap("dd", el, depth, level)
        elif name == "table":
            self.table(el, depth, level)
        elif name == "link":
            self.link(el, depth, level)
        elif name in _SIMPLE:
            self.wrap(_SIMPLE[name], el, depth, level)
        else:  # content, document, div and vocabulary we do not style: keep the text
            self.children(el, depth, level)

    def fragment(self, els: list[ET.Element], depth: int, level: int) -> str:
        """The HTML of ``els`` in a renderer of their own (same rules, separate output)."""
        inner = _Renderer(self.resolve, exercise_ids=self.exercise_ids)
        for child in els:
            inner.element(child, depth + 1, level)
            inner.out.append(_esc(child.tail))
        return "".join(inner.out)

    def exercise(self, el: ET.Element, depth: int, level: int) -> Exercise:
        solutions = [c for c in el if c.tag == f"{CNXML}solution"]
        rest = [c for c in el if c.tag != f"{CNXML}solution"]
        problem = _esc(el.text) + self.fragment(rest, depth, level + 1)
        solution = None
        if solutions:
            solution = "".join(
                _esc(s.text) + self.fragment(list(s), depth + 1, level + 1) for s in solutions
            )
        return Exercise(self.exercise_ids[el], problem, solution)

    def figure(self, el: ET.Element, depth: int, level: int) -> None:
        self.out.append(f'<figure{self.id_attr(el)} class="figure">')
        caption: ET.Element | None = None
        for child in el:
            if local(child.tag) == "caption":
                caption = child
            elif local(child.tag) != "title":
                self.element(child, depth + 1, level)
        title = el.find(f"{CNXML}title")
        if caption is not None or title is not None:
            self.out.append("<figcaption>")
            for part in (title, caption):
                if part is not None:
                    self.children(part, depth + 1, level)
                    self.out.append(" ")
            self.out.append("</figcaption>")
        self.out.append("</figure>")

    def media(self, el: ET.Element) -> None:
        alt = el.get("alt", "")
        images = [i for i in el.iter(f"{CNXML}image") if i.get("for", "online") != "pdf"]
        if images:
            self.image(images[0], alt)
        elif alt:
            self.out.append(f'<span class="missing">[{_esc(alt)}]</span>')

    def image(self, el: ET.Element, alt: str) -> None:
        src = el.get("src", "")
        target = self.resolve(src, "image")
        if target.url is None or target.external:
            label = unavailable(target)
            self.out.append(f'<span class="missing">[{label}: {_esc(alt or src)}]</span>')
            return
        self.out.append(f'<img src="{_esc(target.url)}" alt="{_esc(alt)}" loading="lazy">')

    def table(self, el: ET.Element, depth: int, level: int) -> None:
        summary = el.get("summary", "")
        label = f' aria-label="{_esc(summary[:300])}"' if summary else ""
        self.out.append(f'<div class="table-wrap"><table{self.id_attr(el)}{label}>')
        title = el.find(f"{CNXML}title")
        caption = el.find(f"{CNXML}caption")
        if title is not None or caption is not None:
            self.out.append("<caption>")
            for part in (title, caption):
                if part is not None:
                    self.children(part, depth + 1, level)
            self.out.append("</caption>")
        for group in el.iter(f"{CNXML}tgroup"):
            for section in group:
                kind = local(section.tag)
                if kind not in ("thead", "tbody", "tfoot"):
                    continue
                cell = "th" if kind == "thead" else "td"
                self.out.append(f"<{kind}>")
                for row in section.iter(f"{CNXML}row"):
                    self.out.append("<tr>")
                    for entry in row:
                        if local(entry.tag) == "entry":
                            self.out.append(f"<{cell}>")
                            self.children(entry, depth + 4, level)
                            self.out.append(f"</{cell}>")
                    self.out.append("</tr>")
                self.out.append(f"</{kind}>")
        self.out.append("</table></div>")

    def link(self, el: ET.Element, depth: int, level: int) -> None:
        url = el.get("url")
        document = el.get("document")
        target_id = el.get("target-id", "")
        frag = f"#{target_id}" if _ID.fullmatch(target_id) else ""
        if url:
            target = self.resolve(url, "link")
        elif document and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", document):
            target = self.resolve(f"../{document}/index.cnxml", "link")
            if target.url is not None and not target.external:
                target = Target(target.url + frag)
        elif frag:
            target = Target(frag)
        else:
            target = Target(None)
        has_text = bool("".join(el.itertext()).strip())
        if target.url is None:
            self.wrap("span", el, depth, level, ' class="dead-link"')
        elif target.external:
            self.out.append(
                f'<a href="{_esc(target.url)}" class="external" rel="external noopener noreferrer"'
                ' referrerpolicy="no-referrer">'
            )
            self.children(el, depth, level)
            if not has_text:
                self.out.append(_esc(target.url))
            self.out.append('<span class="visually-hidden"> (external link, needs internet)</span>')
            self.out.append("</a>")
        else:
            self.out.append(f'<a href="{_esc(target.url)}">')
            self.children(el, depth, level)
            if not has_text:
                self.out.append(_esc(document or target_id or "link"))
            self.out.append("</a>")


def _exercise_ids(root: ET.Element) -> dict[ET.Element, str]:
    ids: dict[ET.Element, str] = {}
    used: set[str] = set()
    for n, el in enumerate(root.iter(f"{CNXML}exercise"), 1):
        own = el.get("id", "")
        chosen = own if _ID.fullmatch(own) and own not in used else f"exercise-{n}"
        while chosen in used:  # an own id that looks like a positional one
            chosen += "-"
        used.add(chosen)
        ids[el] = chosen
    return ids


def exercises_in_cnxml(data: bytes, resolve: Resolver) -> list[Exercise]:
    """Every ``<exercise>`` of a CNXML module in document order, with its problem and
    solution rendered as the module itself is (same element rules, same ``resolve``)."""
    root = parse_xml(data, "CNXML module")
    if local(root.tag) != "document":
        raise FormatError("CNXML module does not start with <document>")
    r = _Renderer(resolve, exercise_ids=_exercise_ids(root))
    return [r.exercise(el, 1, 3) for el in r.exercise_ids]


def render_cnxml(data: bytes, resolve: Resolver, exercise: ExerciseHook | None = None) -> Rendered:
    """Render one CNXML module as an HTML fragment (title first, as an h1).

    With ``exercise``, each ``<exercise>`` is rendered by it (the viewer's "check your
    answer" form) with the same :class:`Exercise` that :func:`exercises_in_cnxml` gives.
    """
    root = parse_xml(data, "CNXML module")
    if local(root.tag) != "document":
        raise FormatError("CNXML module does not start with <document>")
    title_el = root.find(f"{CNXML}title")
    title = " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""
    r = _Renderer(resolve, exercise_ids=_exercise_ids(root), exercise_hook=exercise)
    if title:
        r.out.append(f"<h1>{_esc(title)}</h1>")
    content = root.find(f"{CNXML}content")
    if content is not None:
        r.children(content, 1, 2)
    glossary = root.find(f"{CNXML}glossary")
    if glossary is not None:
        r.out.append('<section class="glossary"><h2>Glossary</h2>')
        r.children(glossary, 1, 3)
        r.out.append("</section>")
    return Rendered(title, "".join(r.out))


# -- collections -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TocNode:
    """A chapter (title and children) or a module (its document id) of a collection."""

    title: str | None
    module: str | None = None
    children: tuple[TocNode, ...] = ()

    def modules(self) -> Iterator[str]:
        if self.module is not None:
            yield self.module
        for child in self.children:
            yield from child.modules()


def parse_collection(data: bytes) -> tuple[str, tuple[TocNode, ...]]:
    """(book title, chapters and modules in reading order) of a CNX collection file."""
    root = parse_xml(data, "collection")
    meta_title = root.find(f"{COLLXML}metadata/{MDML}title")
    if meta_title is None:
        meta_title = root.find(f"{{*}}metadata/{MDML}title")
    title = " ".join((meta_title.text or "").split()) if meta_title is not None else ""

    def content(el: ET.Element | None, depth: int) -> tuple[TocNode, ...]:
        if el is None or depth > 20:
            return ()
        out: list[TocNode] = []
        for child in el:
            name = local(child.tag)
            if name == "module":
                doc = child.get("document", "")
                if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", doc):
                    out.append(TocNode(None, module=doc))
            elif name == "subcollection":
                t = child.find(f"{MDML}title")
                out.append(
                    TocNode(
                        " ".join((t.text or "").split()) if t is not None else "",
                        children=content(child.find(f"{COLLXML}content"), depth + 1),
                    )
                )
        return tuple(out)

    return title, content(root.find(f"{COLLXML}content"), 0)
