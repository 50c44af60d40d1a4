"""The viewer's library pages: the catalog of courses and a course's table of contents.

Both show, for the learner chosen (if any), where to continue, which lessons are done and how
far through the course they are (:mod:`satchel.sync.learning`); locales by their names in
their own language (:mod:`satchel.content.locales`); a course's cover picture when it has one.
"""

from __future__ import annotations

from satchel.content.errors import SatchelError
from satchel.sync.learning import Journey, LineJourney
from satchel.sync.local import Ref
from satchel.sync.reader import find_file, missing_chunks
from satchel.sync.store import held_now
from starlette.requests import Request
from starlette.responses import Response

from .view_html import Chrome, crumbs, h, language, page, shown
from .view_model import DOCUMENTS, Line, TocItem, Viewer

# The contents page lists this many files under "All files": a course of 100,000 pages would
# otherwise send a phone on the hub 27 MB of links it never opens.
MAX_LISTED_FILES = 1000


def lesson_paths(line: Line) -> list[str]:
    """The version's lessons, by entry path (what progress is counted over)."""
    if line.manifest.lessons:
        return [lesson.entry for lesson in line.manifest.lessons]
    return [f.path for f in line.manifest.files if f.path.lower().endswith(DOCUMENTS)]


def progress_html(line: Line, mine: LineJourney | None) -> str:
    """ "3 of 12 lessons done" with a bar, and a link to continue, for the learner chosen."""
    if mine is None:
        return ""
    paths = lesson_paths(line)
    done = mine.done_of(paths)
    out = []
    if paths:
        out.append(
            f'<p class="progress"><progress max="{len(paths)}" value="{done}"'
            f' aria-label="Lessons done in {h(line.manifest.title or line.ref.bundle)}">'
            f"</progress> {done} of {len(paths)} lessons done</p>"
        )
    last = mine.last
    if last is not None and find_file(line.manifest, last) is not None:
        out.append(
            f'<a class="continue" href="{h(line.doc_url(last))}">Continue where you were:'
            f' <span lang="{h(line.ref.locale)}">{h(_title(line, last))}</span></a>'
        )
    return "".join(out)


def _title(line: Line, path: str) -> str:
    for lesson in line.manifest.lessons:
        if lesson.entry == path:
            return shown(lesson.title)
    return path


def other_locales(viewer: Viewer, line: Line, path: str | None) -> str:
    """Links to the same lesson (or course) in the other locales on this laptop, by name."""
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
            f'<li><a href="{h(href)}" hreflang="{h(ref.locale)}">{language(ref.locale)}</a></li>'
        )
    if not links:
        return ""
    return (
        '<nav class="locales" aria-label="Other languages" lang="en"><p>Also in:</p>'
        f"<ul>{''.join(links)}</ul></nav>"
    )


def toc_list(
    line: Line, items: list[TocItem] | tuple[TocItem, ...], mine: LineJourney | None, here: str = ""
) -> str:
    out = ['<ol class="toc">']
    for it in items:
        if it.path is None:
            inner = toc_list(line, it.children, mine, here)
            out.append(f"<li><strong>{h(it.title)}</strong>{inner}</li>")
        elif it.present:
            current = ' aria-current="page"' if it.path == here else ""
            done = ""
            if mine is not None and it.path in mine.completed:
                done = ' <span class="done-mark">✓ done</span>'
            out.append(
                f'<li{current}><a href="{h(line.doc_url(it.path))}">{h(it.title)}</a>{done}</li>'
            )
        else:
            out.append(f'<li><span class="absent">{h(it.title)}</span></li>')
    out.append("</ol>")
    return "".join(out)


def catalog(viewer: Viewer, journey: Journey | None, chrome: Chrome) -> Response:
    bundles: dict[str, list[Ref]] = {}
    for ref in viewer.refs():
        bundles.setdefault(ref.bundle, []).append(ref)
    if not bundles:
        body = (
            "<h1>Library</h1><p>Nothing is synced into this store yet: <code>satchel sync"
            " --server URL --bundle NAME --store DIR</code> brings a course.</p>"
        )
        return page("Library", body, chrome=chrome)
    out = ["<h1>Library</h1>"]
    if journey is not None and journey.last_line is not None:
        b, loc = journey.last_line
        try:
            line = viewer.line(b, loc)
        except SatchelError:
            line = None
        last = journey.line(b, loc).last
        if line is not None and last is not None and find_file(line.manifest, last):
            out.append(
                f'<p><a class="continue" href="{h(line.doc_url(last))}">Continue where you were:'
                f' <span lang="{h(loc)}">{h(_title(line, last))}</span></a>'
                f' <span class="meta">in <span lang="{h(loc)}">'
                f"{h(line.manifest.title or b)}</span></span></p>"
            )
    out.append('<ul class="courses">')
    for bundle, refs in bundles.items():
        out.append(course_card(viewer, bundle, refs, journey))
    out.append("</ul>")
    return page("Library", "".join(out), chrome=chrome)


def course_card(viewer: Viewer, bundle: str, refs: list[Ref], journey: Journey | None) -> str:
    lines: list[Line] = []
    broken = []
    for ref in refs:
        try:
            lines.append(viewer.line(ref.bundle, ref.locale))
        except SatchelError as exc:
            broken.append(f"<li>{language(ref.locale)}: unreadable ({h(exc)})</li>")
    first = lines[0] if lines else None
    cover = viewer.cover(first) if first is not None else None
    heading = h(first.manifest.title or bundle) if first is not None else h(bundle)
    lang = f' lang="{h(first.ref.locale)}"' if first is not None else ""
    out = [f'<li class="course" aria-labelledby="c-{h(bundle)}">']
    if first is not None and cover is not None:
        out.append(f'<img class="cover" src="{h(first.file_url(cover))}" alt="">')
    out.append(f'<h2 id="c-{h(bundle)}"{lang}>{heading}</h2>')
    meta = first.manifest.meta if first is not None else None
    if meta is not None:
        about = " · ".join(x for x in (meta.subject, meta.grade) if x)
        if about:
            out.append(f'<p class="meta"{lang}>{h(about)}</p>')
        if meta.description:
            out.append(f"<p{lang}>{h(meta.description)}</p>")
    out.append("<ul>")
    for line in lines:
        docs = len(lesson_paths(line))
        files = line.manifest.files
        absent = sum(1 for f in files if missing_chunks(f, viewer.store.objects))
        note = f" · {absent} files not on this laptop" if absent else ""
        title = line.manifest.title or bundle
        mine = journey.line(line.ref.bundle, line.ref.locale) if journey is not None else None
        out.append(
            f'<li><a href="{line.base}/" hreflang="{h(line.ref.locale)}">'
            f'<span lang="{h(line.ref.locale)}">{h(title)}</span></a> · '
            f"{language(line.ref.locale)}<br>"
            f'<span class="meta">version {line.version} · {docs} lesson{"" if docs == 1 else "s"}'
            f"{h(note)}</span>"
            f"{progress_html(line, mine)}</li>"
        )
    out.extend(broken)
    out.append("</ul></li>")
    return "".join(out)


def contents(viewer: Viewer, request: Request, journey: Journey | None, chrome: Chrome) -> Response:
    line = viewer.line(request.path_params["bundle"], request.path_params["locale"])
    mine = journey.line(line.ref.bundle, line.ref.locale) if journey is not None else None
    title = line.manifest.title or line.ref.bundle
    out = [
        f"<h1>{h(title)}</h1>",
        f'<p class="meta" lang="en">{language(line.ref.locale)} · version {line.version}</p>',
        progress_html(line, mine),
        other_locales(viewer, line, None),
    ]
    held = held_now(viewer.store.objects)  # fresh: what is on the laptop right now
    for heading, items in viewer.make_toc(line, held):
        out.append(f"<section><h2>{h(heading)}</h2>{toc_list(line, items, mine)}</section>")
    files = []
    listed = line.manifest.files[:MAX_LISTED_FILES]
    for f in listed:
        absent = missing_chunks(f, held) > 0
        link = (
            f'<span class="absent">{h(f.path)}</span>'
            if absent
            else f'<a href="{h(line.page_url(f.path))}">{h(f.path)}</a>'
        )
        files.append(f'<li>{link} <span class="meta">{f.size:,} bytes</span></li>')
    more = len(line.manifest.files) - len(listed)
    if more:
        files.append(f'<li class="meta">… and {more:,} more (search finds any page)</li>')
    out.append(
        f'<details lang="en"><summary>All files ({len(line.manifest.files):,})</summary>'
        f"<ul>{''.join(files)}</ul></details>"
    )
    return page(title, "".join(out), lang=line.ref.locale, crumbs=crumbs(line), chrome=chrome)
