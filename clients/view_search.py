"""The viewer's search page: ``/search?q=WORDS[&page=N]`` over every bundle and locale.

The store's index (:mod:`satchel.sync.search`) is opened read-only; sync, import and gc keep
it in step. A hit's snippet is the lesson's text, so it is escaped and only then marked
(:meth:`SearchHit.snippet_html`); titles and names are escaped as everything else.
"""

from __future__ import annotations

from urllib.parse import quote

from satchel.content.locales import locale_name
from satchel.sync.search import SearchHit, SearchIndex
from starlette.requests import Request
from starlette.responses import Response

from .view_html import Chrome, h, page, shown, url_path

PAGE_SIZE = 10
MAX_PAGES = 50


def hit_html(hit: SearchHit) -> str:
    url = f"/b/{hit.bundle}/{hit.locale}/current/page/{url_path(hit.path)}"
    title = shown(hit.title or hit.lesson or hit.path)
    where = [shown(hit.bundle_title or hit.bundle), locale_name(hit.locale)]
    if hit.lesson and shown(hit.lesson) != title:
        where.append(shown(hit.lesson))
    snippet = hit.snippet_html()
    return (
        f'<li lang="{h(hit.locale)}"><a href="{h(url)}">{h(title)}</a>'
        f'<div class="meta">{" · ".join(h(w) for w in where)}</div>'
        + (f'<p class="snippet">{snippet}</p>' if snippet else "")
        + "</li>"
    )


def search_page(index: SearchIndex, request: Request, chrome: Chrome) -> Response:
    text = request.query_params.get("q", "")[:800]
    raw_page = request.query_params.get("page", "1")
    number = int(raw_page) if raw_page.isdigit() and len(raw_page) < 4 else 1
    number = max(1, min(number, MAX_PAGES))
    if not text.strip():
        body = (
            "<h1>Search</h1><p>Type words in the search box: every lesson on this laptop is"
            " searched, in every language, with no network.</p>"
        )
        return page("Search", body, chrome=chrome)
    results = index.search(text, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
    heading = f"Search: {results.query or text.strip()}"
    out = [f"<h1>{h(heading)}</h1>"]
    if not results.hits:
        if not index.path.exists():
            why = (
                "The search index is not built yet on this store: it is made by the next"
                " sync, import or gc."
            )
        elif not results.query:
            why = "There is nothing to look for in that: type a word."
        else:
            why = "No lesson on this laptop has all of these words. Try fewer or other words."
        out.append(f'<p role="status">{h(why)}</p>')
        return page(heading, "".join(out), chrome=chrome)
    first = (number - 1) * PAGE_SIZE + 1
    last = first + len(results.hits) - 1
    noun = "page" if results.total == 1 else "pages"
    out.append(
        f'<p role="status">{results.total:,} {noun} found; showing {first}–{last}.</p>'
        f'<ol class="hits" start="{first}">{"".join(hit_html(x) for x in results.hits)}</ol>'
    )
    steps = []
    query = quote(text, safe="")
    if number > 1:
        steps.append(f'<a rel="prev" href="/search?q={query}&amp;page={number - 1}">← Earlier</a>')
    if last < results.total and number < MAX_PAGES:
        steps.append(f'<a rel="next" href="/search?q={query}&amp;page={number + 1}">More →</a>')
    if steps:
        out.append(f'<nav class="pager" aria-label="Result pages">{" ".join(steps)}</nav>')
    return page(heading, "".join(out), chrome=chrome)
