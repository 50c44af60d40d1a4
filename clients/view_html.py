"""The viewer's HTML: escaping, the page frame and its style, error pages, subtitle tracks.

Every value that reaches a page goes through :func:`h`; pages carry no script.
"""

from __future__ import annotations

import html
import posixpath
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.responses import HTMLResponse, Response

if TYPE_CHECKING:
    from .view_model import Line

_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z]{2,8});")


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def shown(title: str) -> str:
    """A lesson title for display: derived titles may still carry XML entities (``&amp;``)."""
    return html.unescape(title) if _ENTITY.search(title) else title


def url_path(path: str) -> str:
    return quote(path, safe="/")


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
iframe.lesson { display: block; width: 100%; height: 75vh; min-height: 320px;
  border: 1px solid #d0d7e0; background: #fff; }
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


def crumbs(line: Line, extra: str = "") -> str:
    title = line.manifest.title or line.ref.bundle
    return f' › <a href="{line.base}/">{h(title)} ({h(line.ref.locale)})</a>{extra}'
