"""``satchel view``: catalog, contents, rendered lessons, files from the chunk store (Range,
ETag, Content-Type), hostile paths and documents, missing and rotten chunks, locales, and a
real viewer process that keeps answering while a sync switches versions."""

from __future__ import annotations

import asyncio
import html
import os
import random
import re
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.clients.view import (
    CSP,
    LESSON_CSP,
    SCRIPT_INTEGRITY,
    SCRIPT_URL,
    Line,
    Viewer,
    create_app,
    open_store,
)
from satchel.content.chunking import ChunkerParams, chunk_id
from satchel.content.errors import FormatError, IntegrityError, NotFoundError, UsageError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import encode_object
from satchel.content.render_cnxml import Target, parse_collection, render_cnxml
from satchel.edge.http import parse_range
from satchel.server.repository import Repository
from satchel.sync.local import LocalStore
from satchel.sync.reader import NotOnLaptopError, StoredFile, file_etag, open_file
from satchel.sync.store import MemoryChunkStore
from satchel.sync.updater import Updater

from harness import e2e
from harness.http import TestClient
from harness.lessons import build_course, png
from harness.paths import CORPUS
from harness.repo import RepoFetcher, make_repository, publish, write_tree

EN = "/b/course/en"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """One published and synced course per module; tests get their own copy of the store."""
    tmp = tmp_path_factory.mktemp("course")
    store = LocalStore(tmp / "store", durable=False)
    return store.root, build_course(make_repository(tmp / "srv"), store, tmp)


@pytest.fixture
def client_store(pristine: tuple[Path, dict[str, bytes]], tmp_path: Path) -> LocalStore:
    shutil.copytree(pristine[0], tmp_path / "store")
    return LocalStore(tmp_path / "store", durable=False)


@pytest.fixture
def course(pristine: tuple[Path, dict[str, bytes]]) -> dict[str, bytes]:
    return pristine[1]


@pytest.fixture
def client(client_store: LocalStore) -> TestClient:
    return TestClient(create_app(client_store))


def raw_get(
    app: object,
    path: str,
    *,
    host: str = "127.0.0.1",
    server: tuple[str, int] = ("127.0.0.1", 80),
) -> tuple[int, bytes]:
    """GET with the path exactly as given: no client-side dot-segment normalization."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    raw = path.encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": raw,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "client": ("127.0.0.1", 1),
        "server": server,
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    status = int(sent[0]["status"])  # type: ignore[call-overload]
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    return status, body


def current_manifest(store: LocalStore, locale: str = "en") -> Manifest:
    ref = store.ref("course", locale)
    assert ref is not None
    return store.load_manifest(ref.manifest)


def entry(store: LocalStore, path: str) -> FileEntry:
    found = [f for f in current_manifest(store).files if f.path == path]
    assert found, path
    return found[0]


def object_path(store: LocalStore, cid: str) -> Path:
    return store.root / "objects" / cid[:2] / cid


# -- catalog and contents ------------------------------------------------------------------------
def test_catalog_lists_bundles_locales_titles_and_versions(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == CSP
    assert '<html lang="en">' in r.text
    assert 'href="/b/course/en/"' in r.text and 'href="/b/course/es/"' in r.text
    assert "Course" in r.text and "Curso" in r.text
    assert "version 1" in r.text
    counts = re.findall(r"version \d+ · (\d+) (lessons?)\b", r.text)
    assert counts and all((n == "1") == (word == "lesson") for n, word in counts), counts
    assert "not on this laptop" not in r.text
    # Languages by name, in their own language, marked with their lang.
    assert '<span lang="en">English</span>' in r.text and '<span lang="es">Español</span>' in r.text


def test_contents_follow_the_signed_lessons_grouped_by_chapter(client: TestClient) -> None:
    r = client.get(f"{EN}/")
    assert r.status_code == 200
    text = r.text
    # The manifest's lessons, under the collection's chapters, then every other page.
    order = ["Course Book", "Chapter One", "Sampling &amp; Data", "Descriptive Statistics"]
    order += ["Other pages", "Welcome to the course", "Introducing the Shell", "Plain Page"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert "&amp;amp;" not in text
    assert f'href="{EN}/current/page/modules/m1/index.cnxml"' in text
    assert f'href="{EN}/current/page/episodes/01-intro.md"' in text
    assert f'href="{EN}/current/page/pages/plain.html"' in text  # HTML lessons, framed
    assert 'hreflang="es"' in text  # switch locale
    assert "All files (11)" in text


def test_a_huge_course_lists_only_the_first_files(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from satchel.clients import view_pages

    monkeypatch.setattr(view_pages, "MAX_LISTED_FILES", 4)
    text = client.get(f"{EN}/").text
    listed = text[text.index("All files (11)") :]
    assert listed.count('<span class="meta">') == 4 and "… and 7 more" in listed


def test_contents_without_a_signed_structure_fall_back_to_the_layout(
    client_store: LocalStore,
) -> None:
    viewer = Viewer(client_store)
    line = viewer.line("course", "en")
    bare = Line(line.ref, line.version, replace(line.manifest, lessons=()))
    sections = viewer.toc(bare)
    assert [heading for heading, _items in sections] == ["Course Book", "Episodes", "Other pages"]
    (chapter,) = sections[0][1]
    assert chapter.title == "Chapter One" and chapter.path is None
    assert [(k.title, k.path) for k in chapter.children] == [
        ("Sampling & Data", "modules/m1/index.cnxml"),
        ("Descriptive Statistics", "modules/m2/index.cnxml"),
    ]
    assert [i.path for i in sections[1][1]] == ["episodes/01-intro.md"]
    assert [i.path for i in sections[2][1]] == ["README.md", "pages/plain.html"]


def test_lesson_pages_step_through_the_signed_order(client: TestClient) -> None:
    first = client.get(f"{EN}/current/page/modules/m1/index.cnxml").text
    assert f'<a rel="next" href="{EN}/current/page/modules/m2/index.cnxml">' in first
    assert 'rel="prev"' not in first
    second = client.get(f"{EN}/current/page/modules/m2/index.cnxml").text
    assert 'rel="prev"' in second and 'rel="next"' not in second


# -- lessons -------------------------------------------------------------------------------------
def test_cnxml_lesson_is_rendered_with_its_images(client: TestClient) -> None:
    r = client.get(f"{EN}/current/page/modules/m1/index.cnxml")
    assert r.status_code == 200
    body = r.text
    assert "<h1>Sampling &amp; Data</h1>" in body
    assert '<img src="/b/course/en/1/file/media/chart.png" alt="A blue chart"' in body
    assert "<em>data</em>" in body and "<dfn>samples</dfn>" in body and "<br>" in body
    assert '<ol id="l1"><li>first</li><li>second</li></ol>' in body
    assert "<caption>Ages</caption>" in body and "<th>Name</th>" in body
    assert "<td>Ana</td>" in body
    assert 'class="note" role="note"' in body and "<h3>Try it</h3>" in body
    # The exercise: "check your answer", the solution folded, a self-assessment inside it.
    assert '<details class="solution"><summary>Check your answer</summary>' in body
    assert 'data-question="e1" data-kind="self_assessment"' in body
    assert 'data-lesson="modules/m1/index.cnxml"' in body
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML"><mfrac><mn>1</mn>' in body
    assert '<a href="/b/course/en/current/page/modules/m2/index.cnxml">next module</a>' in body
    assert '<a href="#fig1">the figure</a>' in body
    assert re.search(r'<a href="https://openstax.org/details" class="external"[^>]*>OpenStax', body)
    assert "javascript:" not in body
    assert "[external image: outside]" in body and "example.com" not in body
    # The Spanish version of the same lesson is one link away.
    assert 'href="/b/course/es/current/page/modules/m1/index.cnxml"' in body
    assert '<html lang="en">' in body


def test_spanish_lesson_has_lang_and_a_way_back(client: TestClient) -> None:
    r = client.get("/b/course/es/current/page/modules/m1/index.cnxml")
    assert r.status_code == 200
    assert '<html lang="es">' in r.text and "Muestreo y datos" in r.text
    assert 'href="/b/course/en/current/page/modules/m1/index.cnxml"' in r.text
    # A lesson only the English line has: the Spanish link goes to the Spanish contents.
    en_only = client.get(f"{EN}/current/page/modules/m2/index.cnxml").text
    assert 'href="/b/course/es/"' in en_only


def test_markdown_lesson_resolves_images_and_marks_external_links(client: TestClient) -> None:
    r = client.get(f"{EN}/current/page/episodes/01-intro.md")
    assert r.status_code == 200
    assert "<h1>Introducing the Shell</h1>" in r.text  # from the front matter
    assert '<img src="/b/course/en/1/file/episodes/fig/shell.png" alt="A shell window"' in r.text
    assert f'<a href="{EN}/current/page/README.md">start</a>' in r.text
    assert f'<a href="{EN}/1/file/media/clip.mp4">the clip</a>' in r.text
    assert "<strong>Objectives</strong>" in r.text and ":::" not in r.text
    readme = client.get(f"{EN}/current/page/README.md").text
    # The lesson's script is text; the page's one script is the viewer's, pinned by hash.
    assert "&lt;script&gt;" in readme and readme.count("<script") == 1
    assert f'<script src="{SCRIPT_URL}" integrity="{SCRIPT_INTEGRITY}" defer>' in readme
    assert 'class="external"' in readme and 'href="javascript' not in readme
    assert "[external image: tracker]" in readme
    assert 'src="https://example.com' not in readme


def test_media_and_html_get_their_own_pages(client: TestClient) -> None:
    video = client.get(f"{EN}/current/page/media/clip.mp4")
    assert (
        '<video id="main-video" controls preload="metadata"'
        ' src="/b/course/en/1/file/media/clip.mp4"'
    ) in video.text
    assert (
        '<track kind="subtitles" src="/b/course/en/1/file/media/clip.uk.vtt" srclang="uk"'
        ' label="Українська">'
    ) in video.text
    vtt = client.get(f"{EN}/1/file/media/clip.uk.vtt")
    assert vtt.headers["content-type"].startswith("text/vtt") and vtt.content.startswith(b"WEBVTT")
    plain = client.get(f"{EN}/current/file/pages/plain.html")
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/html")
    assert plain.headers["content-security-policy"] == LESSON_CSP  # as it is, sandboxed
    assert plain.headers["x-content-type-options"] == "nosniff"
    for path in ("media/chart.png", "media/clip.uk.vtt", "README.md"):  # every bundle file
        assert client.get(f"{EN}/1/file/{path}").headers["content-security-policy"] == LESSON_CSP
    # In the viewer: its own page (breadcrumbs, lessons around it) frames the lesson in a
    # sandbox, from a URL only this page knows.
    framed = client.get(f"{EN}/current/page/pages/plain.html")
    assert framed.headers["content-security-policy"] == CSP
    m = re.search(
        r'<iframe class="lesson" sandbox="" src="([^"]+)" title="Plain Page"', framed.text
    )
    assert m is not None, framed.text
    assert m.group(1).startswith("/_lesson/") and m.group(1).endswith(
        "/course/en/1/pages/plain.html"
    )
    assert 'aria-label="Breadcrumb"' in framed.text
    inner = client.get(m.group(1))
    assert inner.content == plain.content
    assert inner.headers["content-security-policy"] == LESSON_CSP
    assert inner.headers["cross-origin-resource-policy"] == "cross-origin"
    image = client.get(m.group(1).replace("pages/plain.html", "media/chart.png"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    # The token is this line's: another line's, or none, finds nothing.
    token = m.group(1).split("/")[2]
    assert client.get(f"/_lesson/{token}/course/es/1/media/chart.png").status_code == 404
    assert client.get(f"/_lesson/{'0' * 32}/course/en/1/media/chart.png").status_code == 404
    # Opened as a page of its own, an HTML lesson goes to the viewer's frame.
    direct = client.get(
        f"{EN}/current/file/pages/plain.html",
        headers={"Sec-Fetch-Dest": "document"},
        follow_redirects=False,
    )
    assert direct.status_code == 303
    assert direct.headers["location"] == f"{EN}/1/page/pages/plain.html"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example",
                                  "localhost:1", "", "127.0.0.2"])  # fmt: skip
def test_a_foreign_host_gets_421_and_no_content(client_store: LocalStore, host: str) -> None:
    """DNS rebinding (issue 12, finding 11): a site that points its own name at 127.0.0.1
    reaches the viewer with its name in Host; the viewer answers only to its own addresses."""
    app = create_app(client_store)
    for path in ("/", f"{EN}/", f"{EN}/1/file/media/chart.png"):
        status, body = raw_get(app, path, host=host)
        assert status == 421 and b"course" not in body and b"PNG" not in body, (host, path)
    for ok in ("127.0.0.1", "127.0.0.1:80", "localhost", "LOCALHOST:80", "[::1]"):
        assert raw_get(app, "/", host=ok)[0] == 200, ok
    assert raw_get(app, "/", host="127.0.0.1:8010", server=("127.0.0.1", 8010))[0] == 200
    assert raw_get(app, "/", host="127.0.0.1:80", server=("127.0.0.1", 8010))[0] == 421
    assert raw_get(app, "/", host="10.1.2.3:8010", server=("10.1.2.3", 8010))[0] == 200
    assert raw_get(app, "/", host="evil.example:8010", server=("10.1.2.3", 8010))[0] == 421


# -- files ---------------------------------------------------------------------------------------
def test_file_bytes_type_and_etag(client: TestClient, course: dict[str, bytes]) -> None:
    r = client.get(f"{EN}/current/file/media/chart.png")
    assert r.status_code == 200
    assert r.content == course["media/chart.png"]
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-cache"
    etag = r.headers["etag"]
    pinned = client.get(f"{EN}/1/file/media/chart.png")
    assert pinned.headers["etag"] == etag and "immutable" in pinned.headers["cache-control"]
    # The same bytes in the Spanish line share chunks, so they share the tag.
    assert client.get("/b/course/es/current/file/media/chart.png").headers["etag"] == etag
    again = client.get(f"{EN}/current/file/media/chart.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    head = client.head(f"{EN}/current/file/media/clip.mp4")
    assert head.status_code == 200 and head.headers["content-length"] == "300000"
    assert head.content == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-20000", 100, 20001),
        ("bytes=-500", 299_500, 300_000),
        ("bytes=299000-", 299_000, 300_000),
        ("bytes=250000-999999999", 250_000, 300_000),
    ],
)
def test_range_requests_serve_exact_slices(
    client: TestClient, course: dict[str, bytes], header: str, start: int, end: int
) -> None:
    r = client.get(f"{EN}/current/file/media/clip.mp4", headers={"Range": header})
    assert r.status_code == 206
    assert r.content == course["media/clip.mp4"][start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/300000"
    assert r.headers["content-length"] == str(end - start)


def test_unsatisfiable_ignored_and_conditional_ranges(
    client: TestClient, course: dict[str, bytes]
) -> None:
    url = f"{EN}/current/file/media/clip.mp4"
    r = client.get(url, headers={"Range": "bytes=300000-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */300000"
    for ignored in ("bytes=0-1,5-9", "items=0-5", "bytes=9-2", "bytes=abc"):
        whole = client.get(url, headers={"Range": ignored})
        assert whole.status_code == 200 and whole.content == course["media/clip.mp4"], ignored
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.content) == 300_000


@given(st.integers(0, 300_000), st.integers(0, 300_000))
def test_range_parser_matches_slicing(a: int, b: int) -> None:
    rng = parse_range(f"bytes={a}-{b}", 300_000)
    if b < a:
        assert rng is None  # not a valid range: RFC 9110 says ignore it
    elif a >= 300_000:
        assert rng is False
    else:
        assert rng == (a, min(b + 1, 300_000))


HOSTILE = [
    f"{EN}/current/file/../../satchel.json",
    f"{EN}/current/file/%2e%2e/%2e%2e/trust.json",
    f"{EN}/current/file/..%2F..%2Ftrust.json",
    f"{EN}/current/file/%2Fetc%2Fpasswd",
    f"{EN}/current/file//etc/passwd",
    f"{EN}/current/file/media%5Cchart.png",
    f"{EN}/current/file/media/./chart.png",
    f"{EN}/current/file/MEDIA/chart.png",
    f"{EN}/current/file/media/chart.png%00.txt",
    f"{EN}/current/page/..%2F..%2F..%2Fetc%2Fpasswd",
    f"{EN}/current/file/objects",
    f"{EN}/current/file/",
    f"{EN}/99/file/media/chart.png",
    f"{EN}/-1/file/media/chart.png",
    f"{EN}/1e3/file/media/chart.png",
    "/b/..%2F..%2F/en/",
    "/b/course/..%2Fen/",
    "/b/COURSE/en/",
    "/b/course/xx/",
    "/b/course/en/current/nothing/media/chart.png",
    "/nowhere",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_and_unknown_paths_are_404_pages(client: TestClient, url: str) -> None:
    status, body = raw_get(client.app, url)
    assert status == 404, url
    assert b"Not found" in body
    r = client.get(url)  # and as a browser would send it (dot segments resolved)
    if "/./" in url:  # resolves to media/chart.png itself, which is fine (and sandboxed)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["content-security-policy"] == LESSON_CSP
    else:
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == CSP


# -- missing and rotten chunks -------------------------------------------------------------------
def test_files_not_on_the_laptop_are_shown_and_explained(
    client: TestClient, client_store: LocalStore
) -> None:
    # As after a selective or interrupted sync: the manifest lists it, the chunks are absent.
    for cid, _length in entry(client_store, "modules/m2/index.cnxml").chunks:
        object_path(client_store, cid).unlink()
    toc = client.get(f"{EN}/").text
    assert '<span class="absent">Descriptive Statistics</span>' in toc
    page = client.get(f"{EN}/current/page/modules/m2/index.cnxml")
    assert page.status_code == 404 and "Not on this laptop" in page.text
    assert client.get(f"{EN}/current/file/modules/m2/index.cnxml").status_code == 404
    assert "1 files not on this laptop" in client.get("/").text
    # The link from another lesson is not offered either.
    m1 = client.get(f"{EN}/current/page/modules/m1/index.cnxml").text
    assert 'class="dead-link">next module' in m1


def test_a_lesson_missing_one_image_is_not_on_the_laptop(
    client: TestClient, client_store: LocalStore
) -> None:
    # The signed structure says lesson m1 needs media/chart.png: without it, it is incomplete.
    for cid, _length in entry(client_store, "media/chart.png").chunks:
        object_path(client_store, cid).unlink()
    toc = client.get(f"{EN}/").text
    assert '<span class="absent">Sampling &amp; Data</span>' in toc
    page = client.get(f"{EN}/current/page/modules/m1/index.cnxml")
    assert page.status_code == 200  # its text is here; the image says it is not
    assert "[image not on this laptop: A blue chart]" in page.text


def test_a_rotten_chunk_gives_an_error_page_never_wrong_bytes(
    client: TestClient, client_store: LocalStore
) -> None:
    cid, _ = entry(client_store, "media/chart.png").chunks[0]
    wrong = png(64, 32, (255, 0, 0))
    object_path(client_store, cid).write_bytes(encode_object(wrong))
    r = client.get(f"{EN}/current/file/media/chart.png")
    assert r.status_code == 422  # the error's own status (content/errors.py): bad content
    assert "failed verification" in r.text and wrong not in r.content
    lesson = client.get(f"{EN}/current/page/modules/m1/index.cnxml")
    assert lesson.status_code == 200  # the text is fine; only the image is bad


def test_a_rotten_chunk_late_in_a_large_file_cuts_the_stream(
    course: dict[str, bytes], client_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import satchel.clients.view as view

    monkeypatch.setattr(view, "VERIFY_BEFORE_SENDING", 1000)  # stream everything above 1 KB
    chunks = entry(client_store, "media/clip.mp4").chunks
    cid, length = chunks[len(chunks) // 2]
    object_path(client_store, cid).write_bytes(encode_object(b"x" * length))
    client = TestClient(create_app(client_store))
    # The status line is out when the bad chunk is reached: the only honest move left is to
    # abort the response (uvicorn then drops the connection short of Content-Length).
    with pytest.raises(Exception) as info:
        client.get(f"{EN}/current/file/media/clip.mp4")
    assert isinstance(info.value, IntegrityError) or isinstance(
        info.value.__cause__, IntegrityError
    )
    # A range before the bad chunk is still served whole and right.
    r = client.get(f"{EN}/current/file/media/clip.mp4", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == course["media/clip.mp4"][:100]


def test_on_the_wire_a_rotten_late_chunk_cuts_the_response_short(
    course: dict[str, bytes], client_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import satchel.clients.view as view
    import uvicorn

    monkeypatch.setattr(view, "VERIFY_BEFORE_SENDING", 1000)
    chunks = entry(client_store, "media/clip.mp4").chunks
    cid, length = chunks[-1]
    object_path(client_store, cid).write_bytes(encode_object(b"x" * length))
    port = e2e.free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(client_store), host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        received = bytearray()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("GET", f"http://127.0.0.1:{port}{EN}/current/file/media/clip.mp4") as r,
        ):
            assert r.status_code == 200 and r.headers["content-length"] == "300000"
            for piece in r.iter_raw():
                received += piece
        # Everything that did arrive is the true file, and the bad chunk never did.
        good = 300_000 - length
        assert len(received) <= good
        assert bytes(received) == course["media/clip.mp4"][: len(received)]
    finally:
        server.should_exit = True
        thread.join(10)


def test_hostile_documents_are_refused_or_defused(repo: Repository, tmp_path: Path) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<document xmlns="http://cnx.rice.edu/cnxml"><title>&b;</title></document>'
    )
    deep = '<document xmlns="http://cnx.rice.edu/cnxml"><content>'
    deep += "<para>" * 5000 + "deep" + "</para>" * 5000 + "</content></document>"
    sneaky = (
        '<document xmlns="http://cnx.rice.edu/cnxml" xmlns:h="http://www.w3.org/1999/xhtml"'
        ' xmlns:m="http://www.w3.org/1998/Math/MathML"><title>S</title><content>'
        '<para onclick="evil()" id="x&quot; onmouseover=&quot;evil()">hi</para>'
        "<h:script>evil()</h:script><script>evil()</script>"
        '<m:math><m:mi href="javascript:evil()" onclick="evil()" style="x">x</m:mi>'
        "<m:annotation-xml><h:script>evil()</h:script></m:annotation-xml></m:math>"
        '<link url="data:text/html,evil">d</link><link url="vbscript:evil">v</link>'
        '<image src="../../../../../etc/passwd"/></content></document>'
    )
    files = {
        "bomb.cnxml": bomb.encode(),
        "deep.cnxml": deep.encode(),
        "sneaky.cnxml": sneaky.encode(),
        "broken.cnxml": b"<document><para>unclosed",
        "binary.md": bytes(range(256)) * 10,
    }
    store = LocalStore(tmp_path / "store", durable=False)
    publish(repo, write_tree(tmp_path / "src", files))
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    client = TestClient(create_app(store))
    for name in ("bomb.cnxml", "broken.cnxml"):
        r = client.get(f"{EN}/current/page/{name}")
        assert r.status_code == 422, name
        assert "cannot be shown" in r.text
    deep_page = client.get(f"{EN}/current/page/deep.cnxml")
    assert deep_page.status_code == 200 and "deep" in deep_page.text
    s = client.get(f"{EN}/current/page/sneaky.cnxml").text
    article = s.split("<article>")[1].split("</article>")[0]
    assert "<script" not in article and "onclick" not in article and "href=" not in article
    assert "javascript:" not in article and "data:" not in article and "vbscript" not in article
    assert "annotation" not in article and "style=" not in article
    assert 'id="x' not in article  # an id that is not a plain name is dropped
    assert "[image not available" in article
    assert client.get(f"{EN}/current/page/binary.md").status_code == 200
    assert client.get(f"{EN}/").status_code == 200  # titles of hostile files do not break it


# -- the reader ----------------------------------------------------------------------------------
def _stored(data: bytes, cut: int) -> tuple[StoredFile, MemoryChunkStore]:
    store = MemoryChunkStore()
    chunks = []
    for i in range(0, len(data), cut):
        piece = data[i : i + cut]
        store.put(chunk_id(piece), encode_object(piece, level=1))
        chunks.append((chunk_id(piece), len(piece)))
    fe = FileEntry("f.bin", len(data), 0o644, "application/octet-stream", tuple(chunks))
    manifest = Manifest(
        "course",
        "en",
        1,
        None,
        datetime(2026, 1, 1, tzinfo=UTC),
        "",
        ChunkerParams(min_size=64, avg_size=256, max_size=1 << 20),
        (fe,),
    )
    return open_file(manifest, store, "f.bin"), store


@given(
    st.binary(min_size=0, max_size=3000),
    st.integers(1, 700),
    st.integers(0, 3100),
    st.integers(0, 3100),
)
def test_reader_ranges_equal_slices(data: bytes, cut: int, a: int, b: int) -> None:
    sf, _ = _stored(data, cut)
    assert b"".join(sf.iter_range(a, b)) == data[a:b]
    assert sf.read() == data


def test_reader_verifies_each_chunk_and_names_what_is_missing() -> None:
    data = random.Random(5).randbytes(2048)
    sf, store = _stored(data, 512)
    cid, length = sf.entry.chunks[2]
    store._objects[cid] = encode_object(b"\x00" * length)
    pieces = sf.iter_range()
    assert next(pieces) == data[:512] and next(pieces) == data[512:1024]
    with pytest.raises(IntegrityError):
        next(pieces)
    store.delete(cid)
    assert not sf.is_complete()
    with pytest.raises(NotOnLaptopError, match="not on this laptop"):
        sf.read()
    assert b"".join(sf.iter_range(0, 1024)) == data[:1024]  # chunks before it still read
    with pytest.raises(NotFoundError):
        open_file(sf.manifest, store, "../f.bin")
    with pytest.raises(UsageError):
        sf.read(limit=10)
    assert file_etag(sf.entry) == file_etag(sf.entry) and file_etag(sf.entry).startswith('"')


def test_collection_parser_and_renderer_refuse_bad_xml() -> None:
    title, nodes = parse_collection(
        b'<collection xmlns="http://cnx.rice.edu/collxml" xmlns:md="http://cnx.rice.edu/mdml">'
        b'<content><module document="../../x"/><module document="m9"/></content></collection>'
    )
    assert title == "" and [list(n.modules()) for n in nodes] == [["m9"]]
    with pytest.raises(FormatError):
        render_cnxml(b"<!DOCTYPE x><document/>", lambda ref, kind: Target(None))
    with pytest.raises(FormatError):
        render_cnxml(b"<other/>", lambda ref, kind: Target(None))


def test_open_store_refuses_a_folder_that_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a satchel store"):
        open_store(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()  # viewing never creates a store
    res = e2e.run_cli("view", "--store", tmp_path / "nothing", timeout=60)
    assert res.code == 2 and len(res.error_lines()) == 1


# -- a real viewer while a sync switches versions ------------------------------------------------
def _lesson(version: int) -> bytes:
    marker = f"VERSION-{version}-MARK "
    return f"# Lesson v{version}\n\n{marker * 2000}\n".encode()


@pytest.mark.slow
def test_viewer_keeps_serving_whole_versions_while_a_sync_switches(tmp_path: Path) -> None:
    v1 = {"lesson.md": _lesson(1), "media/big.bin": os.urandom(600_000)}
    v2 = {"lesson.md": _lesson(2), "media/big.bin": os.urandom(600_000)}
    store = tmp_path / "store"
    with e2e.SatchelServer(tmp_path / "srv") as server:
        token = server.token("teacher")
        assert e2e.publish(server.url, token, write_tree(tmp_path / "v1", v1), "course").code == 0
        e2e.sync_json(server.url, "course", store)
        with e2e.satchel_process("view", "--store", store, log=tmp_path / "view.log") as url:
            try:
                v2_tree = write_tree(tmp_path / "v2", v2)
                assert e2e.publish(server.url, token, v2_tree, "course").code == 0
                result: dict[str, object] = {}
                syncer = threading.Thread(
                    target=lambda: result.update(e2e.sync_json(server.url, "course", store))
                )
                seen: list[int] = []
                with httpx.Client(base_url=url, timeout=30) as http:
                    syncer.start()
                    deadline = time.monotonic() + 120
                    extra = 5
                    while extra > 0 and time.monotonic() < deadline:
                        if not syncer.is_alive():
                            extra -= 1
                        page = http.get("/b/course/en/current/page/lesson.md")
                        raw = http.get("/b/course/en/current/file/media/big.bin")
                        assert page.status_code == 200 and raw.status_code == 200
                        marks = set(re.findall(r"VERSION-(\d)-MARK", page.text))
                        assert len(marks) == 1 and page.text.count("MARK") == 2000, marks
                        assert raw.content in (v1["media/big.bin"], v2["media/big.bin"])
                        version = 1 if raw.content == v1["media/big.bin"] else 2
                        seen.append(int(marks.pop()))
                        seen.append(version)
                syncer.join(60)
                assert result.get("version") == 2
                assert seen[0] == 1 and seen[-1] == 2, seen
            finally:
                shutil.rmtree(tmp_path / "v1", ignore_errors=True)


# -- the real corpus -----------------------------------------------------------------------------


def _intro_stats_slice(root: Path, chapters: int) -> dict[str, bytes]:
    """The collection, the modules of its first chapters and every media file they name."""
    coll = next((root / "collections").glob("*.collection.xml"))
    _title, nodes = parse_collection(coll.read_bytes())
    modules = [m for node in nodes[: chapters + 1] for m in node.modules()]
    files = {f"collections/{coll.name}": coll.read_bytes()}
    for m in modules:
        data = (root / "modules" / m / "index.cnxml").read_bytes()
        files[f"modules/{m}/index.cnxml"] = data
        for src in re.findall(rb'src="\.\./\.\./media/([^"]+)"', data):
            name = src.decode()
            files[f"media/{name}"] = (root / "media" / name).read_bytes()
    return files


@pytest.mark.corpus
@pytest.mark.skipif(
    not all((CORPUS / t).is_dir() for t in ("intro-stats/v2", "intro-stats-es", "shell-novice/v2")),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2, -es, shell-novice/v2)",
)
def test_corpus_lessons_render_with_every_image(repo: Repository, tmp_path: Path) -> None:
    stats = _intro_stats_slice(CORPUS / "intro-stats" / "v2", chapters=1)
    shell_root = CORPUS / "shell-novice" / "v2"
    shell = {
        p.relative_to(shell_root).as_posix(): p.read_bytes()
        for p in sorted(shell_root.rglob("*"))
        if p.is_file()
        and (p.name in ("config.yaml", "index.md") or p.parts[-2] in ("episodes", "fig"))
    }
    publish(repo, write_tree(tmp_path / "stats", stats), bundle="intro-stats", title="Stats")
    es = _intro_stats_slice(CORPUS / "intro-stats-es", chapters=1)
    publish(repo, write_tree(tmp_path / "es", es), bundle="intro-stats", locale="es", title="Estad")
    publish(repo, write_tree(tmp_path / "shell", shell), bundle="shell-novice", title="Shell")
    store = LocalStore(tmp_path / "store", durable=False)
    for bundle, locale in (("intro-stats", "en"), ("intro-stats", "es"), ("shell-novice", "en")):
        Updater(store, RepoFetcher(repo)).sync(bundle, locale)
    client = TestClient(create_app(store))
    catalog = client.get("/").text
    assert "Stats" in catalog and "Shell" in catalog

    checked_images = 0
    for bundle, files in (("intro-stats", stats), ("shell-novice", shell)):
        toc = client.get(f"/b/{bundle}/en/")
        assert toc.status_code == 200
        contents = toc.text.split("<details")[0]  # the lessons, before the list of all files
        lessons = re.findall(rf'href="(/b/{bundle}/en/current/page/[^"]+)"', contents)
        documents = [p for p in files if p.endswith((".cnxml", ".md"))]
        assert len(set(lessons)) == len(documents)
        for url in sorted(set(lessons)):
            page = client.get(url)
            assert page.status_code == 200, url
            assert "image not available" not in page.text, url
            for src in re.findall(r'<img src="([^"]+)"', page.text):
                img = client.get(html.unescape(src))
                assert img.status_code == 200 and img.headers["content-type"].startswith("image/")
                path = unquote(src.split("/file/", 1)[1])
                assert img.content == files[path], path
                checked_images += 1
    assert checked_images >= 20
    first = client.get("/b/intro-stats/en/").text
    assert "Sampling and Data" in first  # chapter title from the collection
    assert "Definitions of Statistics, Probability, and Key Terms" in first  # module title
    # The same module in the Spanish edition is one link away, and reads in Spanish.
    m = "modules/m46909/index.cnxml"
    en_page = client.get(f"/b/intro-stats/en/current/page/{m}").text
    assert f'href="/b/intro-stats/es/current/page/{m}" hreflang="es"' in en_page
    es_page = client.get(f"/b/intro-stats/es/current/page/{m}").text
    assert '<html lang="es">' in es_page
    assert "Definiciones de estadística, probabilidad y términos clave" in es_page
    assert re.search(r'<img src="/b/intro-stats/es/1/file/media/[^"]+"', es_page)
    episodes = client.get("/b/shell-novice/en/").text
    assert episodes.index("Introducing the Shell") < episodes.index("Navigating Files")


def test_a_contents_takes_its_titles_from_the_search_index_and_they_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A course's titles in one query of the search index instead of a read of every page's
    head: the same titles, by the same rule over the same bytes (head_title)."""
    from satchel.clients import view_model
    from satchel.sync.search import INDEX_NAME, SearchIndex, update_search_index

    files: dict[str, bytes] = {"README.md": b"# Read me\n"}  # not indexed: read as before
    for n in range(30):
        files[f"md/p{n}.md"] = (
            f"---\ntitle: Front {n}\n---\n# Heading\n" if n % 2 else f"# Heading {n}\n"
        ).encode()
        files[f"web/p{n}.html"] = (
            f"<title>Caf&eacute; {n}</title><p>x</p>" if n % 3 else "<p>no title</p>"
        ).encode()
        files[f"mod/m{n}/index.cnxml"] = (
            f'<document xmlns="http://cnx.rice.edu/cnxml"><title>Module <emphasis>{n}'
            "</emphasis></title><content><para>p</para></content></document>"
        ).encode()
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", files), title="Course")
    store = LocalStore(tmp_path / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    update_search_index(store)

    reads: list[int] = []
    real = view_model.head_title
    monkeypatch.setattr(
        view_model, "head_title", lambda kind, head: reads.append(1) or real(kind, head)
    )
    plain = Viewer(store)
    expected = plain.make_toc(plain.line("course", "en"))
    assert "Café 1" in str(expected) and "Front 1" in str(expected) and "Module 1" in str(expected)
    # Every page outside the signed lessons, once per content (the modules are lessons, titled
    # by the manifest; the ten untitled HTML pages are one content).
    assert len(reads) == 30 + 21 + 1
    reads.clear()
    indexed = Viewer(store, SearchIndex.of(store))
    assert indexed.make_toc(indexed.line("course", "en")) == expected
    assert len(reads) == 1  # README.md alone (not a searchable page): the rest from the index
    # No index (a store never indexed, or one of an older format): every head is read.
    (store.root / INDEX_NAME).unlink()
    reads.clear()
    fresh = Viewer(store, SearchIndex.of(store))
    assert fresh.make_toc(fresh.line("course", "en")) == expected
    assert len(reads) == 52
