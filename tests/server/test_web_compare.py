"""The web page's compare and preview: the text changes of text files with changed words
marked, the pictures that changed, Markdown previewed as the viewer renders it, and the
server's address leading a browser to the web page."""

from __future__ import annotations

import re
from pathlib import Path

from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import verify_object
from satchel.server.repository import Repository
from satchel.server.textdiff import content_changes, diff_lines, word_diff
from satchel.server.web import COOKIE, RAW_CSP
from satchel.sync.store import store_lookup

from harness.http import TestClient
from harness.repo import write_tree

LESSON = "# Volcanoes\n\nLava is hot.\n\nMagma rises ![a cone](cone.png) slowly.\n\nThe end.\n"
FIXED = "# Volcanoes\n\nLava is very hot.\n\nMagma rises ![a cone](cone.png) slowly.\n\nThe end.\n"
PNG_A = b"\x89PNG\r\n\x1a\n" + b"a" * 300
PNG_B = b"\x89PNG\r\n\x1a\n" + b"b" * 300


def publish(srv: Repository, tmp_path: Path, files: dict[str, bytes], name: str) -> int:
    src = write_tree(tmp_path / name, files)
    return srv.publishing.publish_folder(src, bundle="course", locale="en", title="Course")


def two_versions(srv: Repository, tmp_path: Path) -> None:
    first = {"lesson.md": LESSON.encode(), "cone.png": PNG_A, "map.png": PNG_A}
    publish(srv, tmp_path, first, "v1")
    second = {"lesson.md": FIXED.encode(), "cone.png": PNG_B, "new.png": PNG_B}
    publish(srv, tmp_path, second, "v2")


def signed_in(client: TestClient, srv: Repository) -> TestClient:
    client.cookies.set(COOKIE, srv.tokens.create("teacher"), path="/web")
    return client


def test_a_changed_line_marks_only_the_words_that_changed() -> None:
    old, new = word_diff("Lava is hot.", "Lava is very hot.")
    assert [s.text for s in old if s.changed] == []
    assert [s.text for s in new if s.changed] == ["very "]
    assert "".join(s.text for s in old) == "Lava is hot."
    assert "".join(s.text for s in new) == "Lava is very hot."
    lines = list(diff_lines(LESSON.splitlines(), FIXED.splitlines()))
    kinds = [line.kind for line in lines]
    assert kinds.count("removed") == 1 and kinds.count("added") == 1
    assert ("same", 1, 1) in [(x.kind, x.old, x.new) for x in lines]  # context around it


def test_compare_shows_text_changes_and_pictures(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    two_versions(srv, tmp_path)
    page = signed_in(client, srv).get("/web/b/course/en/diff?from=1&to=2")
    assert page.status_code == 200
    html = page.text
    assert "Text changes" in html and "<ins>very </ins>" in html
    assert "Lava is" in html and "<del>" not in html.split("Text changes")[1].split("Pictures")[0]
    pictures = html.split('id="picture-changes"')[1]
    assert "cone.png: changed (1 → 2)" in pictures
    assert "map.png: removed" in pictures and "new.png: new" in pictures
    assert 'src="/web/raw/course/en/1/cone.png"' in pictures
    assert 'src="/web/raw/course/en/2/cone.png"' in pictures
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_lesson_text_in_a_diff_is_escaped(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    publish(srv, tmp_path, {"a.md": b"<b>bold</b> and <script>alert(1)</script>\n"}, "v1")
    publish(srv, tmp_path, {"a.md": b"<b>bold</b> and <script>alert(2)</script>\n"}, "v2")
    html = signed_in(client, srv).get("/web/b/course/en/diff").text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(" in html


def test_large_or_binary_text_files_are_named_not_compared(srv: Repository, tmp_path: Path) -> None:
    publish(srv, tmp_path, {"big.txt": b"a\n" * 200_000, "odd.txt": b"\xff\xfe1"}, "v1")
    publish(srv, tmp_path, {"big.txt": b"b\n" * 200_000, "odd.txt": b"\xff\xfe2"}, "v2")
    line = srv.reads.catalog()[0]
    old, new = (srv.source.manifest(v.manifest) for v in line.versions)
    changes = content_changes(old, new, lambda m, e: b"".join(_read(srv, m, e)))
    notes = {t.path: t.note for t in changes.texts}
    assert "not compared" in notes["big.txt"] and "UTF-8" in notes["odd.txt"]
    assert all(not t.lines for t in changes.texts)


def _read(srv: Repository, manifest: Manifest, entry: FileEntry) -> list[bytes]:
    lookup = store_lookup(srv.store, dict(manifest.dictionaries))
    return [verify_object(srv.store.get(cid), cid, n, lookup) for cid, n in entry.chunks]


def test_markdown_is_previewed_as_the_viewer_renders_it(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    two_versions(srv, tmp_path)
    signed_in(client, srv)
    page = client.get("/web/b/course/en/v/2/preview/lesson.md").text
    assert 'src="/web/rendered/course/en/2/lesson.md"' in page
    shown = client.get("/web/rendered/course/en/2/lesson.md")
    assert shown.status_code == 200
    assert shown.headers["content-security-policy"] == RAW_CSP  # sandboxed like a raw file
    assert "<h1>Volcanoes</h1>" in shown.text and "# Volcanoes" not in shown.text
    assert re.search(r'<img src="/web/raw/course/en/2/cone.png" alt="a cone"', shown.text)
    # Not a lesson: no rendering, the raw file is framed as before.
    assert client.get("/web/rendered/course/en/2/cone.png").status_code == 404
    assert (
        'src="/web/raw/course/en/2/cone.png"'
        in client.get("/web/b/course/en/v/2/preview/cone.png").text
    )


def test_markdown_preview_keeps_raw_html_as_text_and_drops_script_links(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    hostile = b"# T\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) [y](https://e.org)\n"
    publish(srv, tmp_path, {"a.md": hostile}, "v1")
    shown = client.get("/web/rendered/course/en/1/a.md").text
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert 'href="javascript:' not in shown  # shown as text, never a link
    assert 'href="https://e.org"' in shown and "external" in shown


def test_the_servers_address_leads_to_the_web_page(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/web/"
