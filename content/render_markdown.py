"""Markdown lessons (e.g. Software Carpentry episodes) to safe HTML with markdown-it-py.

Shared by the offline viewer (``satchel view``) and the server's web page preview, so a
teacher previews a lesson exactly as a laptop will show it.

Raw HTML in Markdown is shown as text, not passed through (``html: False``): lesson HTML files
are served as they are, but a Markdown page is ours to render. Links and images go through
the caller's resolver, which maps a path relative to the document onto a bundle URL, or marks
it external (shown, never loaded). Two Carpentries conventions are understood so pages read
well: YAML front matter (``title:``) and pandoc image attributes (``{alt='...'}``); fenced
``::: name`` blocks become a labelled line.

Given the lesson's path, a ```` ```gift ```` block becomes its questions as accessible forms
(:mod:`satchel.content.exercise_html`), with the ids the publish check gave them
(:mod:`satchel.content.exercises`); a block that does not parse (published before the check)
stays code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .errors import FormatError
from .exercise_html import question_html
from .exercises import GiftBlock, gift_blocks, is_gift_fence
from .render_cnxml import Rendered, Resolver, unavailable

_FRONT = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.S)
_TITLE = re.compile(r"^title:[ \t]*(['\"]?)(.+?)\1[ \t]*$", re.M)
_PANDOC_ALT = re.compile(r"(!\[)([^\]]*)(\]\([^)\s]*\))\{alt=(['\"])(.*?)\4[^}]*\}")
_FENCE_DIV = re.compile(r"^:{3,}[ \t]*([A-Za-z][\w-]*)?[ \t]*:*[ \t]*$", re.M)
_HEADING = re.compile(r"^#{1,3}[ \t]+(.+?)[ \t#]*$", re.M)

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown_title(text: str) -> str | None:
    """The title from front matter, else the first heading."""
    m = _FRONT.match(text)
    if m:
        t = _TITLE.search(m.group(1))
        if t:
            return t.group(2).strip()[:300]
        text = text[m.end() :]
    h = _HEADING.search(text[:20000])
    return h.group(1).strip()[:300] if h else None


def _prepare(text: str) -> str:
    m = _FRONT.match(text)
    if m:
        text = text[m.end() :]

    def alt(match: re.Match[str]) -> str:
        label = match.group(5).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        return f"{match.group(1)}{label}{match.group(3)}"

    text = _PANDOC_ALT.sub(alt, text)

    def fence(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"\n**{name.replace('-', ' ').capitalize()}**\n" if name else "\n"

    return _FENCE_DIV.sub(fence, text)


def _rewrite(tokens: list[Token], resolve: Resolver) -> None:
    for tok in tokens:
        if tok.children:
            _rewrite(tok.children, resolve)
        if tok.type == "link_open":
            href = str(tok.attrGet("href") or "")
            if href.startswith("#"):
                continue
            target = resolve(href, "link")
            if target.url is None:
                tok.attrs.pop("href", None)
                tok.tag = "span"
                tok.attrSet("class", "dead-link")
            elif target.external:
                tok.attrSet("href", target.url)
                tok.attrSet("class", "external")
                tok.attrSet("rel", "external noopener noreferrer")
                tok.attrSet("referrerpolicy", "no-referrer")
            else:
                tok.attrSet("href", target.url)
        elif tok.type == "image":
            src = str(tok.attrGet("src") or "")
            target = resolve(src, "image")
            alt_text = "".join(c.content for c in tok.children or []) or src
            if target.url is None or target.external:
                label = unavailable(target)
                tok.type = "text"
                tok.tag = ""
                tok.children = None
                tok.content = f"[{label}: {alt_text}]"
            else:
                tok.attrSet("src", target.url)
                tok.attrSet("loading", "lazy")


def _fix_closers(tokens: list[Token]) -> None:
    # A link whose opener became a <span> must close as one too.
    for tok in tokens:
        if tok.children:
            _fix_closers(tok.children)
    stack: list[Token] = []
    for tok in tokens:
        if tok.type == "link_open":
            stack.append(tok)
        elif tok.type == "link_close" and stack:
            opener = stack.pop()
            tok.tag = opener.tag


def _inline(resolve: Resolver) -> Callable[[str], str]:
    """GIFT text in Markdown as safe inline HTML, its links through the same resolver."""

    def render(text: str) -> str:
        tokens = _md.parseInline(text)
        _rewrite(tokens, resolve)
        _fix_closers(tokens)
        return str(_md.renderer.render(tokens, _md.options, {}))

    return render


def _exercises(tokens: list[Token], text: str, lesson: str, resolve: Resolver) -> None:
    """Turn the lesson's gift fences into their forms, the n-th fence the n-th block."""
    try:
        blocks: list[GiftBlock] = gift_blocks(text, lesson)
    except FormatError:
        return  # published before the check: the blocks stay code
    fences = [t for t in tokens if t.type == "fence" and is_gift_fence(t.info)]
    if len(fences) != len(blocks):
        return
    inline = _inline(resolve)
    for token, block in zip(fences, blocks, strict=True):
        token.type = "html_block"
        token.content = "".join(
            question_html(q, lesson=lesson, render_markdown=inline) for q in block.questions
        )


def render_markdown(text: str, resolve: Resolver, *, lesson: str | None = None) -> Rendered:
    """``lesson``: the lesson's path, to render its exercises as forms (else they stay code)."""
    tokens = _md.parse(_prepare(text))
    _rewrite(tokens, resolve)
    _fix_closers(tokens)
    if lesson is not None:
        _exercises(tokens, text, lesson, resolve)
    body = _md.renderer.render(tokens, _md.options, {})
    title = markdown_title(text) or ""
    if _FRONT.match(text) and title:  # the front matter's title is not in the body: show it
        body = f"<h1>{html.escape(title)}</h1>\n{body}"
    return Rendered(title, body)
