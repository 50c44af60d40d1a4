"""The viewer's HTML: escaping, the page frame (breadcrumbs, search box, who is learning, the
viewer's one script) and its style, error pages, subtitle and sign-language tracks.

Every value that reaches a page goes through :func:`h`. The only script a page carries is the
viewer's own file, pinned by its hash (:mod:`satchel.clients.view_script`).
"""

from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from satchel.content.locales import locale_name
from starlette.responses import HTMLResponse, Response

from .view_script import SCRIPT_INTEGRITY, SCRIPT_URL

if TYPE_CHECKING:
    from satchel.content.manifest import FileEntry

    from .view_model import Line

_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z]{2,8});")
_VIDEO = (".mp4", ".webm", ".ogv", ".m4v", ".mov")


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def shown(title: str) -> str:
    """A lesson title for display: derived titles may still carry XML entities (``&amp;``)."""
    return html.unescape(title) if _ENTITY.search(title) else title


def url_path(path: str) -> str:
    return quote(path, safe="/")


def language(code: str) -> str:
    """A locale as a person reads it: its name in its own language, marked with its ``lang``."""
    return f'<span lang="{h(code)}">{h(locale_name(code))}</span>'


STYLE = """
:root { color-scheme: light; --fg: #1b1b1b; --muted: #555; --accent: #0b57a4; --line: #d0d7e0;
  --soft: #f1f4f8; --ok: #1e6b34; --bad: #a4161a; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.55 system-ui, sans-serif; color: var(--fg); background: #fff; }
header.top { background: var(--soft); border-bottom: 1px solid var(--line); padding: .5rem 1rem;
  display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center;
  justify-content: space-between; }
header.top nav { display: flex; flex-wrap: wrap; gap: .25rem .75rem; align-items: center;
  min-width: 0; }
header.top nav a, header.top nav span { overflow-wrap: anywhere; }
.tools { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
form.search { display: flex; gap: .25rem; flex: 1 1 16rem; max-width: 26rem; }
form.search input { flex: 1; min-width: 0; font: inherit; padding: .3rem .5rem;
  border: 1px solid #7a8591; border-radius: 4px; }
button { font: inherit; padding: .3rem .8rem; border: 1px solid var(--accent); border-radius: 4px;
  background: var(--accent); color: #fff; cursor: pointer; }
button.quiet { background: #fff; color: var(--accent); }
.who { font-size: .95em; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem; }
a { color: var(--accent); }
a:focus, button:focus, summary:focus, input:focus, textarea:focus, main:focus-visible,
iframe:focus { outline: 3px solid #f5a623; outline-offset: 2px; }
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
.error { border: 2px solid var(--bad); padding: 1rem; }
.notice { border: 2px solid #8a6100; background: #fff8e1; padding: .5rem 1rem; margin: 1rem 0; }
ol.toc ol { padding-left: 1.25rem; }
ol.toc li { margin: .2rem 0; }
.done-mark { color: var(--ok); font-weight: 600; font-size: .9em; }
li[aria-current] > a { font-weight: 700; }
.pager { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 1rem;
  margin: 2rem 0 1rem; border-top: 1px solid var(--line); padding-top: 1rem; }
.meta { color: var(--muted); font-size: .9em; }
iframe.lesson { display: block; width: 100%; height: 75vh; min-height: 320px;
  border: 1px solid var(--line); background: #fff; }
.courses { list-style: none; padding: 0; display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); }
.course { border: 1px solid var(--line); border-radius: 6px; padding: .75rem; }
.course img.cover { display: block; width: 100%; aspect-ratio: 4 / 3; object-fit: cover;
  border-radius: 4px; background: var(--soft); margin-bottom: .5rem; }
.course h2 { font-size: 1.15rem; margin: .25rem 0; }
.course ul { list-style: none; padding: 0; margin: .25rem 0; }
.course li { margin: .35rem 0; }
progress { width: 8rem; vertical-align: middle; }
.continue { display: inline-block; margin: .5rem 0; font-weight: 600; }
.hits { padding-left: 1.25rem; }
.hits li { margin: 0 0 1rem; }
.hits .snippet { margin: .2rem 0; }
mark { background: #ffe58a; color: inherit; padding: 0 .1em; }
form.gift, form.self-check, form.done { margin: 1rem 0; }
form.gift { border-top: 1px solid var(--line); padding-top: .75rem; }
.step { margin: 0 0 .5rem; }
form.gift fieldset, form.self-check fieldset { border: 1px solid var(--line); border-radius: 4px; }
.gift-choice { margin: .35rem 0; }
.gift-choice input, .gift-choice label { cursor: pointer; }
form.gift input[type=text], form.gift textarea { font: inherit; padding: .3rem .5rem;
  border: 1px solid #7a8591; border-radius: 4px; max-width: 100%; }
form.gift button, form.self-check button { margin-top: .5rem; }
.exercise-feedback { margin-top: .5rem; font-weight: 600; }
.exercise-feedback.right { color: var(--ok); }
.exercise-feedback.wrong { color: var(--bad); }
.learners { list-style: none; padding: 0; }
.learners li { margin: .5rem 0; }
.learners button { min-width: 12rem; text-align: left; }
.sign { margin: 1rem 0; }
.sign video { max-width: 20rem; }
@media (max-width: 700px) { body { font-size: 16px; } main { padding: .5rem; }
  header.top { padding: .5rem; } form.search { max-width: none; flex-basis: 100%; }
  iframe.lesson { height: 70vh; } .learners button { width: 100%; } }
"""


@dataclass(frozen=True, slots=True)
class Chrome:
    """What a page shows around its content: who is learning, the query in the search box."""

    learner_id: str | None = None
    learner_name: str | None = None
    learning: bool = False  # the store has learners to choose from
    query: str = ""
    here: str = "/"  # this page's path, to come back to after choosing a learner


NO_CHROME = Chrome()


def page(
    title: str,
    body: str,
    *,
    lang: str = "en",
    crumbs: str = "",
    status: int = 200,
    chrome: Chrome = NO_CHROME,
    lesson: tuple[str, str, str] | None = None,
) -> Response:
    """A viewer page. ``lesson`` (bundle, locale, path) marks a lesson page for the script,
    which records "opened" for the learner chosen, if any."""
    who = ""
    if chrome.learner_name is not None:
        who = (
            f'<a class="who" href="/learners?next={quote(chrome.here, safe="/")}">'
            f'Learning: <strong>{h(chrome.learner_name)}</strong> <span class="visually-hidden">'
            "(change who is learning)</span></a>"
        )
    elif chrome.learning:
        who = (
            f'<a class="who" href="/learners?next={quote(chrome.here, safe="/")}">'
            "Who is learning?</a>"
        )
    data = f' data-learner="{h(chrome.learner_id)}"' if chrome.learner_id else ""
    if lesson is not None:
        data += (
            f' data-bundle="{h(lesson[0])}" data-locale="{h(lesson[1])}"'
            f' data-lesson="{h(lesson[2])}"'
        )
    doc = (
        f'<!doctype html>\n<html lang="{h(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{h(title)} · Satchel</title><link rel="stylesheet" href="/_/style.css">'
        '<link rel="icon" href="/_/icon.svg" type="image/svg+xml">'
        f'<script src="{SCRIPT_URL}" integrity="{SCRIPT_INTEGRITY}" defer></script>'
        f"</head><body{data}>"
        '<a class="skip" href="#main" lang="en">Skip to content</a>'
        '<header class="top" lang="en">'
        f'<nav aria-label="Breadcrumb"><a href="/">Library</a>{crumbs}</nav>'
        '<div class="tools"><form class="search" role="search" action="/search" method="get">'
        '<label for="q" class="visually-hidden">Search the lessons</label>'
        f'<input type="search" id="q" name="q" value="{h(chrome.query)}"'
        ' placeholder="Search the lessons" maxlength="200" autocomplete="off">'
        f'<button type="submit">Search</button></form>{who}</div>'
        f'</header><main id="main" tabindex="-1">{body}</main></body></html>'
    )
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-cache"})


def error_page(status: int, heading: str, message: str, chrome: Chrome = NO_CHROME) -> Response:
    body = f'<div class="error" role="alert"><h1>{h(heading)}</h1><p>{h(message)}</p></div>'
    return page(heading, body, status=status, chrome=chrome)


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
            f' label="{h(locale_name(lang))}"{default}>'
        )
    return "".join(out)


def sign_video(line: Line, video: str) -> FileEntry | None:
    """The sign-language version of a video, beside it as ``STEM.sgn.EXT`` (``clip.sgn.mp4``
    for ``clip.mp4``, any video type), or None."""
    stem, _ = posixpath.splitext(video)
    if stem.endswith(".sgn"):
        return None
    for f in line.manifest.files:
        rest = f.path[len(stem) :]
        if f.path.startswith(stem) and rest.startswith(".sgn.") and rest[4:].lower() in _VIDEO:
            return f
    return None


def video_html(line: Line, path: str, title: str) -> str:
    """A video with its subtitle tracks and, when there is one, its sign-language video in a
    second frame beside it (the viewer's script keeps the two playing together)."""
    main = (
        f'<video id="main-video" controls preload="metadata" src="{h(line.file_url(path))}"'
        f' aria-label="{h(title)}">{tracks(line, path)}</video>'
    )
    sign = sign_video(line, path)
    if sign is None:
        return main
    return (
        f'{main}<figure class="sign"><video id="sign-video" controls muted preload="metadata"'
        f' src="{h(line.file_url(sign.path))}" aria-describedby="sign-caption"'
        f' data-follows="main-video"></video><figcaption id="sign-caption">Sign language'
        " version (plays along with the video)</figcaption></figure>"
    )


def crumbs(line: Line, extra: str = "") -> str:
    title = line.manifest.title or line.ref.bundle
    return (
        f' › <a href="{line.base}/"><span lang="{h(line.ref.locale)}">{h(title)}</span>'
        f" ({language(line.ref.locale)})</a>{extra}"
    )
