"""A lesson inside the viewer's frame: rendered (Markdown with its GIFT questions as forms,
CNXML with "check your answer"), framed (an HTML lesson in its sandbox) or shown (pictures,
sound, video with subtitles and a sign-language video), always with the breadcrumbs, the
course's contents, previous/next, the other languages, the search box, and for the learner
chosen a "done" button.

Links and images of a rendered lesson go through :func:`resolver`, which only ever compares a
path with the manifest's file list (never joins it onto a folder), so ``..`` or an absolute
or encoded path simply is not found; outside addresses are marked external, never loaded.
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote, unquote, urlsplit

from satchel.content.errors import FormatError
from satchel.content.exercise_html import exercise_html
from satchel.content.render_cnxml import Kind, Rendered, Resolver, Target, render_cnxml
from satchel.content.render_markdown import render_markdown
from satchel.sync.learning import LineJourney
from satchel.sync.reader import NotOnLaptopError, find_file, missing_chunks
from starlette.requests import Request
from starlette.responses import Response

from .view_html import Chrome, crumbs, h, language, page, shown, video_html
from .view_model import HTML_DOCS, PAGE_LIMIT, RENDERED, Line, Viewer
from .view_pages import other_locales, toc_list


def resolver(viewer: Viewer, line: Line, doc_path: str) -> Resolver:
    objects = viewer.store.objects

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
            if missing_chunks(entry, objects):
                return Target(None, absent=True)
            if kind == "image" or not cand.lower().endswith(RENDERED):
                return Target(line.file_url(cand) + ("" if kind == "image" else frag))
            return Target(line.page_url(cand) + frag)
        return Target(None)

    return resolve


def render(viewer: Viewer, line: Line, path: str) -> Rendered | Response:
    """The lesson's own content, or an error page when it cannot be shown as a page."""
    sf = viewer.file(line, path)
    if not sf.is_complete():
        raise NotOnLaptopError(f"{path} is not on this laptop yet; sync to get it")
    lower = path.lower()
    raw = line.file_url(path)
    if lower.endswith(RENDERED):
        data = sf.read(PAGE_LIMIT)  # verified: a bad chunk is a 500, not a render error
        resolve = resolver(viewer, line, path)
        try:
            if lower.endswith(".cnxml"):
                return render_cnxml(
                    data, resolve, exercise=lambda ex: exercise_html(ex, lesson=path)
                )
            return render_markdown(data.decode("utf-8", "replace"), resolve, lesson=path)
        except FormatError as exc:
            body = (
                f'<div class="error" role="alert"><h1>This lesson cannot be shown as a page'
                f'</h1><p>{h(exc)}</p><p><a href="{h(raw)}">Open the file as it is</a>'
                "</p></div>"
            )
            return page(path, body, lang=line.ref.locale, crumbs=crumbs(line), status=422)
    mt = sf.entry.media_type
    title = viewer.title(line, sf.entry) or _lesson_title(line, path) or posixpath.basename(path)
    if lower.endswith(HTML_DOCS):
        # Someone else's page, framed in an opaque origin: it keeps its own layout and the
        # viewer keeps its way around it; nothing in it can reach the viewer.
        body = (
            f'<h1 class="visually-hidden">{h(title)}</h1>'
            f'<iframe class="lesson" sandbox="" src="{h(viewer.lesson_url(line, path))}"'
            f' title="{h(title)}" referrerpolicy="no-referrer"></iframe>'
        )
        return Rendered(title, body)
    name = posixpath.basename(path)
    if mt.startswith("image/"):
        body = f'<h1>{h(name)}</h1><img src="{h(raw)}" alt="{h(name)}">'
    elif mt.startswith("video/"):
        body = f"<h1>{h(name)}</h1>{video_html(line, path, name)}"
    elif mt.startswith("audio/"):
        body = f'<h1>{h(name)}</h1><audio controls preload="metadata" src="{h(raw)}"></audio>'
    else:
        body = (
            f'<h1>{h(name)}</h1><p><a href="{h(raw)}">Open the file</a>'
            f" ({sf.size:,} bytes, {h(mt)})</p>"
        )
    return Rendered(name, body)


def _lesson_title(line: Line, path: str) -> str | None:
    for lesson in line.manifest.lessons:
        if lesson.entry == path:
            return shown(lesson.title)
    return None


def base_notice_html(viewer: Viewer, line: Line, path: str) -> str:
    notice = viewer.base_notice(line, path)
    if notice is None:
        return ""
    what = (
        "The original of this lesson has changed since it was translated"
        if notice.changed
        else "The original lessons have changed since this translation was made, and this one"
        " may have too"
    )
    return (
        f'<aside class="notice" role="note" lang="en"><p>{what} (translated from'
        f" {language(notice.base_locale)} version {notice.made_from}; that course is at"
        f' version {notice.base_version} on this laptop). <a href="{h(notice.base_url)}"'
        f' hreflang="{h(notice.base_locale)}">Read the newer version in'
        f" {language(notice.base_locale)}</a>.</p></aside>"
    )


def lesson_page(
    viewer: Viewer, request: Request, mine: LineJourney | None, chrome: Chrome
) -> Response:
    p = request.path_params
    line = viewer.line(p["bundle"], p["locale"], p["rev"])
    path = p["path"]
    rendered = render(viewer, line, path)
    if isinstance(rendered, Response):
        return rendered
    title = shown(rendered.title) if rendered.title else path
    before, after = viewer.neighbours(line, path)
    steps = []
    if before is not None:
        href = h(line.doc_url(before.entry))
        steps.append(f'<a rel="prev" href="{href}">← {h(shown(before.title))}</a>')
    if after is not None:
        href = h(line.doc_url(after.entry))
        steps.append(f'<a rel="next" href="{href}">{h(shown(after.title))} →</a>')
    pager = ""
    if steps:
        pager = (
            '<nav class="pager" aria-label="Previous and next lesson" lang="en">'
            f"{''.join(steps)}</nav>"
        )
    is_lesson = path.lower().endswith((*RENDERED, *HTML_DOCS))
    done = ""
    if is_lesson and chrome.learner_id is not None:
        finished = mine is not None and path in mine.completed
        done = (
            '<form class="done" lang="en"><button type="submit"'
            + (" disabled>Done ✓" if finished else ">I have finished this lesson")
            + '</button> <span role="status"></span></form>'
        )
    elif is_lesson and chrome.learning:
        done = (
            '<p class="meta" lang="en"><a href="/learners?next='
            f'{h(quote(chrome.here, safe="/"))}">Choose who is learning</a> to keep your'
            " place and answers.</p>"
        )
    toc = ""
    sections = viewer.toc(line)
    if sections:
        parts = "".join(
            f"<p><strong>{h(heading)}</strong></p>{toc_list(line, items, mine, path)}"
            for heading, items in sections
        )
        toc = (
            '<details class="course-toc"><summary lang="en">Contents of this course</summary>'
            f"{parts}</details>"
        )
    lessons = [lesson.entry for lesson in line.manifest.lessons]
    step = ""
    if path in lessons:
        step = (
            f'<p class="step meta" lang="en">Lesson {lessons.index(path) + 1} of {len(lessons)}</p>'
        )
    body = (
        step
        + base_notice_html(viewer, line, path)
        + other_locales(viewer, line, path)
        + f"<article>{rendered.html}</article>{done}{pager}{toc}"
    )
    return page(
        title,
        body,
        lang=line.ref.locale,
        crumbs=crumbs(line, f' › <span aria-current="page">{h(title)}</span>'),
        chrome=chrome,
        lesson=(line.ref.bundle, line.ref.locale, path) if is_lesson else None,
    )
