"""The web page under /web/, in process: every page, sign-in, CSRF, hostile input, uploads.

Pages go through FastAPI's TestClient (``create_app(repo)``) with a real folder store, so the
upload path writes real files and the publisher stores real chunks. Browser behaviour
(JavaScript hashing, progress, cookies in a real browser) is in tests/browser/test_browser.py.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import random
import stat
import struct
import time
import zipfile
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from satchel.content.errors import FormatError, IntegrityError, UnsafePathError, UsageError
from satchel.content.manifest import Manifest
from satchel.content.objects import decode_object
from satchel.server.app import create_app
from satchel.server.db import Token
from satchel.server.repository import Repository
from satchel.server.web import COOKIE, csrf_token, safe_next
from satchel.server.webdata import (
    FileHashes,
    MiB,
    UploadStream,
    WebLimits,
    diff_manifests,
    extract_zip,
    parse_upload_header,
)
from sqlmodel import Session, select

from harness.http import TestClient

ORIGIN = "http://testserver"


# -- fixtures and helpers ------------------------------------------------------------------
def course(seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "index.html": b"<!doctype html><html lang='en'><title>Course</title>"
        b"<h1>Course</h1><img src='media/pic.bin' alt=''></html>",
        "lessons/01.html": b"<p>" + b"lesson one " * 500 + b"</p>",
        "lessons/02.md": b"# Two\n" + b"words " * 300,
        "media/pic.bin": rng.randbytes(150_000),  # several chunks
        "media/empty.txt": b"",
    }


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def published(srv: Repository, tmp_path: Path, files: dict[str, bytes], **kw: Any) -> int:
    src = write_tree(tmp_path / f"src-{random.random()}", files)
    return srv.publishing.publish_folder(
        src,
        bundle=kw.get("bundle", "course"),
        locale=kw.get("locale", "en"),
        title=kw.get("title", "Course"),
        notes=kw.get("notes", ""),
    )


def sign_in(client: TestClient, token: str) -> str:
    client.cookies.set(COOKIE, token, path="/web")
    return csrf_token(token)


def body(header: dict[str, Any], *parts: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw + b"".join(parts)


def folder_header(
    files: dict[str, bytes], keep: AbstractSet[str] = frozenset(), **kw: Any
) -> dict[str, Any]:
    return {
        "kind": "folder",
        "title": kw.get("title", ""),
        "notes": kw.get("notes", ""),
        "from_locale": kw.get("from_locale"),
        "files": [
            {
                "path": p,
                "size": len(d),
                "sha256": hashlib.sha256(d).hexdigest(),
                "send": p not in keep,
            }
            for p, d in files.items()
        ],
    }


def folder_body(files: dict[str, bytes], keep: AbstractSet[str] = frozenset(), **kw: Any) -> bytes:
    header = folder_header(files, keep, **kw)
    return body(header, *(d for p, d in files.items() if p not in keep))


def post_upload(
    client: TestClient, csrf: str, data: bytes, bundle: str = "course", locale: str = "en"
) -> Any:
    return client.post(
        f"/web/api/publish/{bundle}/{locale}",
        content=data,
        headers={
            "X-CSRF-Token": csrf,
            "Origin": ORIGIN,
            "Content-Type": "application/octet-stream",
        },
    )


def latest(srv: Repository, bundle: str = "course", locale: str = "en") -> Manifest:
    line = next(x for x in srv.reads.catalog() if (x.bundle, x.locale) == (bundle, locale))
    return srv.source.manifest(line.versions[-1].manifest)


def version_files(srv: Repository, manifest: Manifest) -> dict[str, bytes]:
    hashes = FileHashes(srv.store)
    out = {}
    for f in manifest.files:
        data = b"".join(decode_object(srv.store.get(cid), length) for cid, length in f.chunks)
        assert hashlib.sha256(data).hexdigest() == hashes.sha256(manifest, f)
        out[f.path] = data
    return out


class Page(HTMLParser):
    """Collects what accessibility checks need: lang, labels, inputs, headings, links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.lang: str | None = None
        self.labels: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.h1 = 0
        self.links: list[str] = []
        self.iframes: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)
        elif tag == "h1":
            self.h1 += 1
        elif tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        elif tag == "iframe":
            self.iframes.append(a)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_accessible(html: str) -> Page:
    page = Page(html)
    assert page.lang == "en"
    assert page.h1 == 1, "one h1 per page"
    unlabeled = [c for c in page.controls if c.get("id") not in page.labels]
    assert unlabeled == [], f"inputs without a <label for>: {unlabeled}"
    assert "#content" in page.links, "a skip link"
    return page


# -- signing in ------------------------------------------------------------------------------
def test_pages_need_sign_in_and_come_back_after_it(client: TestClient, srv: Repository) -> None:
    r = client.get("/web/b/course/en?x=1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/web/signin?next=%2Fweb%2Fb%2Fcourse%2Fen%3Fx%3D1"
    form = client.get("/web/signin?next=/web/b/course/en")
    assert form.status_code == 200
    check_accessible(form.text)
    assert 'type="password"' in form.text

    token = srv.tokens.create("teacher", bundle="course")
    r = client.post(
        "/web/signin",
        data={"token": token, "next": "/web/b/course/en"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/web/b/course/en"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={token};")
    attrs = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attrs
    assert "samesite=strict" in cookie.lower()
    assert "path=/web" in cookie.lower()
    assert "secure" not in attrs  # plain http here; set over https (below)


def test_the_cookie_is_secure_over_https(srv: Repository) -> None:
    token = srv.tokens.create("teacher")
    with TestClient(create_app(srv), base_url="https://school.example") as c:
        r = c.post(
            "/web/signin",
            data={"token": token},
            headers={"Origin": "https://school.example"},
            follow_redirects=False,
        )
    assert r.status_code == 303
    assert "; secure" in r.headers["set-cookie"].lower()


@pytest.mark.parametrize("token", ["", "nonsense", "sat_" + "A" * 43, "x" * 5000])
def test_a_bad_token_is_refused_with_a_message(client: TestClient, token: str) -> None:
    r = client.post("/web/signin", data={"token": token}, follow_redirects=False)
    assert r.status_code in (400, 401)
    assert "set-cookie" not in r.headers
    assert 'role="alert"' in r.text


def test_a_revoked_token_stops_working_at_once(client: TestClient, srv: Repository) -> None:
    token = srv.tokens.create("admin")
    csrf = sign_in(client, token)
    assert client.get("/web/", follow_redirects=False).status_code == 200
    with Session(srv.engine) as s:
        row = s.exec(select(Token).where(Token.role == "admin")).one()
        row.revoked = True
        s.add(row)
        s.commit()
    assert client.get("/web/", follow_redirects=False).status_code == 303
    r = post_upload(client, csrf, folder_body({"a.txt": b"a"}))
    assert r.status_code == 401
    assert "sign in" in r.json()["error"]


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/web/",
        "https://evil.example/web/",
        "/web/\\evil",
        "javascript:alert(1)",
        "/elsewhere",
        "/web/\r\nSet-Cookie: x=1",
        "",
        None,
    ],
)
def test_sign_in_never_redirects_off_the_site(
    client: TestClient, srv: Repository, target: str | None
) -> None:
    assert safe_next(target) == "/web/"
    token = srv.tokens.create("teacher")
    data = {"token": token} if target is None else {"token": token, "next": target}
    r = client.post("/web/signin", data=data, follow_redirects=False)
    assert r.headers["location"] == "/web/"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_posts_are_refused(
    client: TestClient, srv: Repository, headers: dict[str, str]
) -> None:
    token = srv.tokens.create("admin")
    r = client.post("/web/signin", data={"token": token}, headers=headers, follow_redirects=False)
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    csrf = sign_in(client, token)
    r = client.post(
        "/web/api/publish/course/en",
        content=folder_body({"a.txt": b"a"}),
        headers={**headers, "X-CSRF-Token": csrf},
    )
    assert r.status_code == 403
    assert srv.reads.catalog() == []


def test_posts_need_the_session_csrf_token(client: TestClient, srv: Repository) -> None:
    token = srv.tokens.create("admin")
    other = srv.tokens.create("admin")
    sign_in(client, token)
    for supplied in (None, "", "0" * 64, csrf_token(other)):
        headers = {"Origin": ORIGIN} | ({"X-CSRF-Token": supplied} if supplied is not None else {})
        r = client.post(
            "/web/api/publish/course/en", content=folder_body({"a": b"a"}), headers=headers
        )
        assert r.status_code == 403, supplied
        r = client.post("/web/api/unchanged/course/en", json={"files": []}, headers=headers)
        assert r.status_code == 403, supplied
    assert srv.reads.catalog() == []


def test_sign_out_forgets_the_cookie(client: TestClient, srv: Repository) -> None:
    token = srv.tokens.create("teacher")
    r = client.post("/web/signin", data={"token": token}, headers={"Origin": ORIGIN})
    assert r.status_code == 200  # followed to the bundles page
    csrf = csrf_token(token)
    r = client.post(
        "/web/signout", data={"csrf": "wrong"}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert r.status_code == 403
    r = client.post(
        "/web/signout", data={"csrf": csrf}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/web/signin"
    assert "max-age=0" in r.headers["set-cookie"].lower()
    assert client.get("/web/", follow_redirects=False).status_code == 303


# -- pages -----------------------------------------------------------------------------------
def test_every_page_renders_accessibly_with_strict_headers(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    v1 = course()
    v2 = {**v1, "lessons/01.html": b"<p>changed</p>", "lessons/03.html": b"<p>three</p>"}
    del v2["lessons/02.md"]
    published(srv, tmp_path, v1, notes="first")
    published(srv, tmp_path, v2, notes="second <script>alert(1)</script>")
    sign_in(client, srv.tokens.create("teacher", bundle="course"))
    pages = [
        "/web/",
        "/web/b/course/en",
        "/web/b/course/en/v/1",
        "/web/b/course/en/v/2/preview/lessons/01.html",
        "/web/b/course/en/diff?from=1&to=2",
        "/web/upload?bundle=course&locale=en",
        "/web/upload",
    ]
    for url in pages:
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 200, (url, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp.split("style-src")[0]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        check_accessible(r.text)
        assert "<script>alert" not in r.text  # notes are escaped, never markup

    line = client.get("/web/b/course/en").text
    assert "second &lt;script&gt;alert(1)&lt;/script&gt;" in line
    assert "first" in line
    assert "Upload a new version" in line


def test_history_lists_versions_newest_first_with_notes(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    for n in range(3):
        published(srv, tmp_path, {"a.txt": str(n).encode()}, notes=f"note {n}")
    sign_in(client, srv.tokens.create("curator", bundle="course", locale="uk"))
    html = client.get("/web/b/course/en").text
    assert html.index("note 2") < html.index("note 1") < html.index("note 0")
    assert "Upload a new version" not in html  # this curator may not publish en


def test_diff_page_counts_added_removed_changed_and_bytes(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    v1 = course()
    v2 = dict(v1)
    v2["lessons/01.html"] = v1["lessons/01.html"] + b"<p>more</p>"
    v2["new.txt"] = b"x" * 1234
    del v2["lessons/02.md"]
    published(srv, tmp_path, v1)
    published(srv, tmp_path, v2)
    d = diff_manifests(latest_v(srv, 1), latest_v(srv, 2))
    assert [c.path for c in d.added] == ["new.txt"]
    assert [c.path for c in d.removed] == ["lessons/02.md"]
    assert [(c.path, c.old_size, c.new_size) for c in d.changed] == [
        ("lessons/01.html", len(v1["lessons/01.html"]), len(v2["lessons/01.html"]))
    ]
    assert d.unchanged == 3
    assert d.added_bytes == 1234
    assert d.removed_bytes == len(v1["lessons/02.md"])
    assert 1234 <= d.new_chunk_bytes < len(v2["lessons/01.html"]) + 1234 + 1

    sign_in(client, srv.tokens.create("teacher"))
    html = client.get("/web/b/course/en/diff?from=1&to=2").text
    text = " ".join(" ".join(Page(html).text).split())
    assert "Added 1 file 1.2 KB" in text
    assert "Removed 1 file" in text
    assert "Changed 1 file" in text
    assert "Unchanged 3 files" in text
    assert "+11" in text  # lessons/01.html grew by len("<p>more</p>")
    # The other way round, what was added is removed.
    back = " ".join(
        " ".join(Page(client.get("/web/b/course/en/diff?from=2&to=1").text).text).split()
    )
    assert "Removed 1 file 1.2 KB" in back


def latest_v(srv: Repository, version: int) -> Manifest:
    line = srv.reads.catalog()[0]
    return srv.source.manifest(line.versions[version - 1].manifest)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/web/b/nope/en", 404),
        ("/web/b/course/xx", 404),
        ("/web/b/Bad..Name/en", 400),
        ("/web/b/course/EN_us", 400),
        ("/web/b/course/en/v/9", 404),
        ("/web/b/course/en/v/0", 400),
        ("/web/b/course/en/v/-1", 400),
        ("/web/b/course/en/v/abc", 400),
        ("/web/b/course/en/v/99999999999999999999", 400),
        ("/web/b/course/en/v/1/preview/nope.html", 404),
        ("/web/b/course/en/v/1/preview/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/web/b/course/en/diff?from=1&to=5", 404),
        ("/web/b/course/en/diff?from=x", 400),
        ("/web/upload?bundle=../x", 400),
        ("/web/upload?locale=%3Cscript%3E", 400),
    ],
)
def test_hostile_or_unknown_page_addresses_get_an_error_page(
    client: TestClient, srv: Repository, tmp_path: Path, url: str, status: int
) -> None:
    published(srv, tmp_path, course())
    sign_in(client, srv.tokens.create("teacher"))
    r = client.get(url, follow_redirects=False)
    assert r.status_code == status, r.text[:300]
    assert 'role="alert"' in r.text
    assert "<script>" not in r.text


def test_raw_files_are_sandboxed_and_byte_exact(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    files = course()
    published(srv, tmp_path, files)
    # Public like the chunks they are made of: no cookie needed (a sandboxed frame sends none).
    for path, data in files.items():
        r = client.get(f"/web/raw/course/en/1/{path}")
        assert r.status_code == 200, path
        assert r.content == data
        csp = r.headers["content-security-policy"]
        assert csp.startswith("sandbox;") and "default-src 'none'" in csp
        assert "script-src" not in csp  # so scripts fall back to 'none'
        assert r.headers["x-content-type-options"] == "nosniff"
    assert (
        client.get("/web/raw/course/en/1/lessons/02.md")
        .headers["content-type"]
        .startswith("text/plain")
    )
    assert (
        client.get("/web/raw/course/en/1/index.html")
        .headers["content-type"]
        .startswith("text/html")
    )
    for bad in ("../../../etc/passwd", "%2e%2e/x", "nope", "a//b"):
        assert client.get(f"/web/raw/course/en/1/{bad}").status_code in (400, 404)
    assert client.get("/web/raw/course/en/7/index.html").status_code == 404
    assert client.get("/web/raw/..%2f/en/1/index.html").status_code in (400, 404)


def test_preview_frames_the_file_in_a_sandbox(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    published(srv, tmp_path, course())
    sign_in(client, srv.tokens.create("teacher"))
    page = Page(client.get("/web/b/course/en/v/1/preview/index.html").text)
    (frame,) = page.iframes
    assert frame["sandbox"] == ""  # no scripts, no same-origin, no forms
    assert frame["src"] == "/web/raw/course/en/1/index.html"
    assert frame["title"]


def test_static_files_are_only_the_known_ones(client: TestClient) -> None:
    assert client.get("/web/static/app.css").status_code == 200
    js = client.get("/web/static/upload.js")
    assert js.headers["content-type"].startswith("text/javascript")
    for bad in ("../web.py", "..%2fweb.py", "nope.js", "%2e%2e%2fservice.py"):
        assert client.get(f"/web/static/{bad}").status_code == 404


# -- the upload API ------------------------------------------------------------------------------
def test_unchanged_names_files_whose_content_the_server_has(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    files = course()
    published(srv, tmp_path, files)
    csrf = sign_in(client, srv.tokens.create("teacher", bundle="course"))
    ask = [
        {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
        for p, d in files.items()
    ]
    ask.append({"path": "renamed.bin", "sha256": ask[3]["sha256"], "size": ask[3]["size"]})
    ask.append({"path": "new.txt", "sha256": hashlib.sha256(b"new").hexdigest(), "size": 3})
    ask.append({"path": "liar.txt", "sha256": ask[0]["sha256"], "size": 999})
    r = client.post(
        "/web/api/unchanged/course/en",
        json={"files": ask},
        headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
    )
    assert r.status_code == 200, r.text
    assert r.json()["latest_version"] == 1
    assert sorted(r.json()["unchanged"]) == sorted([*files, "renamed.bin"])


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"files": 3}',
        b'{"files": [1]}',
        b'{"files": [{"path": 1}]}',
        b'{"files": [{"path": "a", "sha256": "x", "size": -1}]}',
        b"[" * 100_000,
    ],
)
def test_unchanged_refuses_malformed_requests(
    client: TestClient, srv: Repository, payload: bytes
) -> None:
    csrf = sign_in(client, srv.tokens.create("admin"))
    r = client.post(
        "/web/api/unchanged/course/en",
        content=payload,
        headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_folder_upload_sends_only_changed_files_and_stores_only_new_chunks(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    files = course()
    published(srv, tmp_path, files)
    csrf = sign_in(client, srv.tokens.create("teacher", bundle="course"))
    stored_before = set(srv.store)
    v2 = dict(files)
    v2["lessons/01.html"] = files["lessons/01.html"].replace(b"one", b"ONE", 1)
    v2["new/notes.txt"] = b"fresh"
    keep = {"index.html", "lessons/02.md", "media/pic.bin", "media/empty.txt"}
    data = folder_body(v2, keep, notes="fix a typo", title="")
    r = post_upload(client, csrf, data)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["version"] == 2
    assert result["files"] == len(v2)
    assert result["sent_bytes"] == len(v2["lessons/01.html"]) + len(b"fresh")
    new_objects = set(srv.store) - stored_before
    # A changed chunk or two for 01.html, one for notes.txt, the manifest and a static delta.
    assert 0 < result["objects_stored"] <= 3
    assert len(new_objects) <= result["objects_stored"] + 2
    manifest = latest(srv)
    assert manifest.title == "Course"  # kept from the line when left empty
    assert version_files(srv, manifest) == v2
    assert srv.reads.catalog()[0].versions[-1].notes == "fix a typo"


def test_zip_upload_publishes_the_tree_inside(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    files = course()
    csrf = sign_in(client, srv.tokens.create("teacher", bundle="course"))
    archive = make_zip(
        {f"my-course/{p}": d for p, d in files.items()}, executable={"my-course/index.html"}
    )
    header = {"kind": "zip", "zip_size": len(archive), "title": "Zipped", "notes": "from a zip"}
    r = post_upload(client, csrf, body(header, archive))
    assert r.status_code == 200, r.text
    manifest = latest(srv)
    assert version_files(srv, manifest) == files  # the wrapping folder is dropped
    assert manifest.title == "Zipped"
    modes = {f.path: f.mode for f in manifest.files}
    assert modes["index.html"] == 0o755 and modes["lessons/01.html"] == 0o644


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (
            lambda: body({"kind": "folder", "files": [{"path": "../x", "size": 1}]}, b"x"),
            422,
            "'..'",
        ),
        (
            lambda: body({"kind": "folder", "files": [{"path": "/etc/x", "size": 1}]}, b"x"),
            422,
            "absolute",
        ),
        (
            lambda: body({"kind": "folder", "files": [{"path": "a\\b", "size": 1}]}, b"x"),
            422,
            "backslash",
        ),
        (
            lambda: body(
                {"kind": "folder", "files": [{"path": "A", "size": 1}, {"path": "a", "size": 1}]},
                b"xy",
            ),
            422,
            "case",
        ),
        (lambda: body({"kind": "folder", "files": []}), 400, "no files"),
        (lambda: body({"kind": "tarball"}), 422, "kind"),
        (lambda: body({"kind": "folder", "files": [{"path": "a", "size": -5}]}), 422, "size"),
        (
            lambda: body({"kind": "folder", "files": [{"path": "a", "size": 2}]}, b"x"),
            422,
            "ended early",
        ),
        (
            lambda: body({"kind": "folder", "files": [{"path": "a", "size": 1}]}, b"xyz"),
            422,
            "more bytes",
        ),
        (
            lambda: body(
                {"kind": "folder", "files": [{"path": "a", "size": 1, "sha256": "0" * 64}]}, b"x"
            ),
            422,
            "SHA-256",
        ),
        (
            lambda: body({"kind": "folder", "files": [{"path": "a", "size": 1, "send": False}]}),
            422,
            "sha256",
        ),
        (
            lambda: body(
                {
                    "kind": "folder",
                    "files": [{"path": "a", "size": 1, "send": False, "sha256": "1" * 64}],
                }
            ),
            400,
            "does not have",
        ),
        (
            lambda: body(
                {"kind": "folder", "notes": "n" * 3000, "files": [{"path": "a", "size": 1}]}, b"x"
            ),
            400,
            "notes",
        ),
        (lambda: body({"kind": "zip", "zip_size": 5}, b"hello"), 422, "not a zip"),
        (lambda: body({"kind": "zip", "zip_size": 0}), 400, "empty"),
        (lambda: body({"kind": "zip", "zip_size": 10 * 1024**4}), 400, "limit"),
        (lambda: struct.pack(">I", 2**31) + b"{}", 400, "header"),
        (lambda: b"\x00\x00\x00\x09not json!", 422, "JSON"),
        (lambda: b"\x00\x00", 422, "header"),
        (lambda: b"", 422, "header"),
    ],
)
def test_hostile_uploads_are_refused_with_a_reason_and_publish_nothing(
    client: TestClient, srv: Repository, make: Any, status: int, words: str
) -> None:
    csrf = sign_in(client, srv.tokens.create("admin"))
    r = post_upload(client, csrf, make())
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["error"].lower()
    assert srv.reads.catalog() == []
    assert list((srv.data / "web-uploads").iterdir()) == []  # temp files are gone


def test_a_teacher_cannot_publish_a_bundle_not_granted(client: TestClient, srv: Repository) -> None:
    csrf = sign_in(client, srv.tokens.create("teacher", bundle="math"))
    r = post_upload(client, csrf, folder_body({"a.txt": b"a"}), bundle="course")
    assert r.status_code == 403
    assert "math" in r.json()["error"]
    r = client.post(
        "/web/api/unchanged/course/en",
        json={"files": []},
        headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
    )
    assert r.status_code == 403
    assert post_upload(client, csrf, folder_body({"a.txt": b"a"}), bundle="math").status_code == 200


def test_no_token_cannot_publish(client: TestClient, srv: Repository) -> None:
    r = post_upload(client, "0" * 64, folder_body({"a.txt": b"a"}))
    assert r.status_code == 401
    client.cookies.set(COOKIE, "sat_forged", path="/web")
    r = post_upload(client, csrf_token("sat_forged"), folder_body({"a.txt": b"a"}))
    assert r.status_code == 401
    assert srv.reads.catalog() == []


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("from_locale=%3Cx%3E", "locale"),
        ("from_locale=../en", "locale"),
        ("from_locale=en&base_version=abc", "version"),
        ("from_locale=en&base_version=0", "version"),
        ("from_locale=en&base_version=-1", "version"),
        ("from_locale=en&base_version=99999999999", "version"),
        ("base_version=1", "base locale"),
        ("from_locale=es", "other than its own"),
    ],
)
def test_hostile_variant_parameters_are_refused(
    client: TestClient, srv: Repository, tmp_path: Path, query: str, words: str
) -> None:
    published(srv, tmp_path, {"a.txt": b"a"}, locale="en")
    csrf = sign_in(client, srv.tokens.create("admin"))
    for url in (f"/web/api/publish/course/es?{query}", f"/web/api/unchanged/course/es?{query}"):
        r = client.post(
            url,
            content=folder_body({"a.txt": b"a"}),
            headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
        )
        assert r.status_code == 400, r.text
        assert words in r.json()["error"]
    assert [x.locale for x in srv.reads.catalog()] == ["en"]


def gz_entry(path: str, data: bytes, wire: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    wire = gzip.compress(data) if wire is None else wire
    entry = {
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "encoding": "gzip",
        "wire_size": len(wire),
    }
    return entry, wire


def test_text_files_may_travel_gzip_compressed(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    files = course()
    csrf = sign_in(client, srv.tokens.create("teacher", bundle="course"))
    entries, parts = [], []
    for path, data in files.items():
        if path.endswith((".html", ".md")):
            entry, wire = gz_entry(path, data)
        else:
            entry, wire = folder_header({path: data})["files"][0], data
        entries.append(entry)
        parts.append(wire)
    r = post_upload(client, csrf, body({"kind": "folder", "files": entries}, *parts))
    assert r.status_code == 200, r.text
    assert r.json()["sent_bytes"] == sum(len(p) for p in parts) < sum(map(len, files.values()))
    assert version_files(srv, latest(srv)) == files


BOMB = gzip.compress(b"\0" * 5_000_000)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (gz_entry("a.txt", b"hello", b"not gzip at all"), "not valid gzip"),
        (gz_entry("a.txt", b"hello", gzip.compress(b"hello world")), "beyond its declared size"),
        (gz_entry("a.txt", b"hello", gzip.compress(b"hell")), "is 4 bytes, not 5"),
        (gz_entry("a.txt", b"hello", gzip.compress(b"hello")[:-4]), "cut short"),
        (gz_entry("a.txt", b"hello", gzip.compress(b"hello") + b"junk"), "beyond its declared"),
        (gz_entry("a.txt", b"hello", gzip.compress(b"jello")), "SHA-256"),
        (gz_entry("bomb.txt", b"\0" * 10, BOMB), "beyond its declared size"),
    ],
)
def test_hostile_gzip_files_are_refused(
    tmp_path: Path, entry: tuple[dict[str, Any], bytes], words: str
) -> None:
    header, wire = entry
    stream = UploadStream(tmp_path, SMALL)
    with pytest.raises((FormatError, IntegrityError), match=words):
        stream.feed(body({"kind": "folder", "files": [header]}, wire))
        stream.close()
    stream.abort()
    written = tmp_path / "tree" / header["path"]
    assert not written.exists() or written.stat().st_size <= header["size"]


@pytest.mark.parametrize(
    "change",
    [{"encoding": "br"}, {"sha256": None}, {"wire_size": -1}, {"wire_size": "9"}],
)
def test_malformed_gzip_entries_are_refused(change: dict[str, Any]) -> None:
    entry, _wire = gz_entry("a.txt", b"hello")
    entry.update(change)
    with pytest.raises(FormatError):
        parse_upload_header(json.dumps({"kind": "folder", "files": [entry]}).encode(), SMALL)


# -- the data layer with small limits ---------------------------------------------------------
SMALL = WebLimits(
    max_upload_bytes=10_000,
    max_files=5,
    max_header_bytes=2_000,
    max_zip_uncompressed=50_000,
    max_zip_ratio=20,
    zip_ratio_floor=1_000,
)


def test_upload_stream_accepts_any_split_of_the_body(tmp_path: Path) -> None:
    files = {"a.txt": b"alpha", "b/c.bin": bytes(range(256)) * 3, "e": b"", "z.md": b"zz" * 900}
    header = folder_header(files)
    header["files"][3], zipped = gz_entry("z.md", files["z.md"])
    data = body(header, *(files[p] for p in ("a.txt", "b/c.bin", "e")), zipped)
    for step in (1, 2, 3, 7, 64, len(data)):
        root = tmp_path / f"s{step}"
        root.mkdir()
        stream = UploadStream(root, SMALL)
        for at in range(0, len(data), step):
            stream.feed(data[at : at + step])
        header = stream.close()
        assert [f.path for f in header.files] == list(files)
        for path, content in files.items():
            assert (root / "tree" / path).read_bytes() == content


def test_upload_limits(tmp_path: Path) -> None:
    too_many = {f"f{i}": b"x" for i in range(6)}
    with pytest.raises(UsageError, match="limit of 5"):
        parse_upload_header(json.dumps(folder_header(too_many)).encode(), SMALL)
    with pytest.raises(UsageError, match="upload limit"):
        parse_upload_header(json.dumps(folder_header({"big": b"x" * 10_001})).encode(), SMALL)
    stream = UploadStream(tmp_path, SMALL)
    with pytest.raises(UsageError, match="header"):
        stream.feed(struct.pack(">I", 2_001))
    for bad in ("aux/../x", "a/./b", "", "x\x00y", "caf\u0065\u0301"):  # last: not NFC
        with pytest.raises(FormatError):
            parse_upload_header(json.dumps(folder_header({bad: b"1"})).encode(), SMALL)


def test_a_file_that_is_also_a_folder_is_refused() -> None:
    with pytest.raises(UnsafePathError):
        parse_upload_header(json.dumps(folder_header({"a": b"1", "a/b": b"2"})).encode(), SMALL)


def make_zip(
    files: dict[str, bytes],
    *,
    executable: AbstractSet[str] = frozenset(),
    links: dict[str, str] | None = None,
    method: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | (0o755 if name in executable else 0o644)) << 16
            info.compress_type = method
            zf.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def unzip(tmp_path: Path, archive: bytes, limits: WebLimits = SMALL) -> Path:
    src = tmp_path / "in.zip"
    src.write_bytes(archive)
    dest = tmp_path / "out"
    dest.mkdir()
    extract_zip(src, dest, limits)
    return dest


def test_zip_extraction_keeps_the_tree(tmp_path: Path) -> None:
    files = {"a.txt": b"a", "dir/b.html": b"<p>b</p>", "__MACOSX/._a.txt": b"junk"}
    out = unzip(tmp_path, make_zip(files))
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {"a.txt": b"a", "dir/b.html": b"<p>b</p>"}


def test_zip_entries_without_a_file_type_are_plain_files(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("plain.txt", b"p")  # Python writes mode 0o600 with no type bits
    assert (unzip(tmp_path, buf.getvalue()) / "plain.txt").read_bytes() == b"p"


def test_zip_names_are_normalized_to_nfc(tmp_path: Path) -> None:
    out = unzip(tmp_path, make_zip({"cafe\u0301.txt": b"x"}))
    assert (out / "caf\u00e9.txt").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("archive", "error", "words"),
    [
        (lambda: make_zip({"../evil.txt": b"x"}), UnsafePathError, "'..'"),
        (lambda: make_zip({"a/../../evil.txt": b"x"}), UnsafePathError, "'..'"),
        (lambda: make_zip({"/etc/evil": b"x"}), UnsafePathError, "absolute"),
        (lambda: make_zip({"C:/evil": b"x"}), UnsafePathError, "absolute"),
        (lambda: make_zip({"a\\..\\evil": b"x"}), UnsafePathError, "backslash"),
        (
            lambda: make_zip({"ok.txt": b"x"}, links={"link": "/etc/passwd"}),
            UnsafePathError,
            "link",
        ),
        (lambda: make_zip({"A.txt": b"x", "a.txt": b"y"}), UnsafePathError, "case"),
        (lambda: make_zip({f"f{i}": b"x" for i in range(6)}), UsageError, "files"),
        (lambda: make_zip({"big": b"\x00" * 60_000}), UsageError, "limit"),
        (lambda: make_zip({"bomb": b"\x00" * 40_000}), UsageError, "zip bomb"),
        (lambda: make_zip({}), UsageError, "no files"),
        (lambda: b"PK\x03\x04 not really", FormatError, "not a zip"),
        (lambda: b"", FormatError, "not a zip"),
    ],
)
def test_hostile_zips_are_refused(
    tmp_path: Path, archive: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        unzip(tmp_path, archive())
    assert not any((tmp_path / "out").rglob("evil*"))
    assert not (tmp_path / "evil.txt").exists()


def zip_of_many_small_bombs(entries: int = 1000, size: int = 1024 * 1024 - 1) -> bytes:
    """The attack of issue 12 (finding 8): many zero-filled entries, each just under the
    per-entry ratio floor, together a thousandfold bomb (about 1.1 MB expanding to 1 GB)."""
    buf = io.BytesIO()
    zeros = bytes(size)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(entries):
            zf.writestr(f"course/lesson-{i:04d}.bin", zeros)
    return buf.getvalue()


def test_a_zip_of_many_entries_under_the_ratio_floor_is_refused_as_a_bomb(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    archive = zip_of_many_small_bombs()
    limits = WebLimits()  # the server's own limits: each entry is under the per-entry floor
    assert len(archive) < 2 * MiB and all(
        i.file_size < limits.zip_ratio_floor
        for i in zipfile.ZipFile(io.BytesIO(archive)).infolist()
    )
    # The data layer refuses it before writing a byte.
    with pytest.raises(UsageError, match=r"times its size .*whole archive.*zip bomb"):
        unzip(tmp_path, archive, limits)
    assert list((tmp_path / "out").iterdir()) == []
    # Through the web page, as the attacker sent it: refused, nothing published, nothing kept.
    csrf = sign_in(client, srv.tokens.create("teacher", bundle="course"))
    header = {"kind": "zip", "zip_size": len(archive), "title": "Bomb", "notes": ""}
    r = post_upload(client, csrf, body(header, archive))
    assert r.status_code == 400, r.text
    assert "zip bomb" in r.json()["error"]
    assert srv.reads.catalog() == []
    assert list((srv.data / "web-uploads").iterdir()) == []
    # A real course zipped the same way is still taken.
    files = course()
    ok = make_zip({f"c/{p}": d for p, d in files.items()})
    r = post_upload(client, csrf, body({"kind": "zip", "zip_size": len(ok)}, ok))
    assert r.status_code == 200, r.text


def test_a_zip_entry_larger_than_it_declares_is_cut_off(tmp_path: Path) -> None:
    archive = bytearray(make_zip({"a.txt": b"y" * 500}, method=zipfile.ZIP_STORED))
    # Lie in both headers: claim 10 bytes. zipfile trusts the central directory's size.
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = archive.index(sig)
        size_at = at + (22 if sig == b"PK\x03\x04" else 24)
        archive[size_at : size_at + 4] = struct.pack("<I", 10)
    with pytest.raises((FormatError, UsageError)):
        unzip(tmp_path, bytes(archive))


def test_an_encrypted_zip_is_refused(tmp_path: Path) -> None:
    archive = bytearray(make_zip({"a.txt": b"secret"}))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = archive.index(sig) + flag_at
        archive[at] |= 0x01
    with pytest.raises(UsageError, match="encrypted"):
        unzip(tmp_path, bytes(archive))


def test_whole_file_hashes_match_sha256(srv: Repository, tmp_path: Path) -> None:
    files = course()
    published(srv, tmp_path, files)
    manifest = latest(srv)
    hashes = FileHashes(srv.store, capacity=1)
    for f in manifest.files:
        assert hashes.sha256(manifest, f) == hashlib.sha256(files[f.path]).hexdigest()
    pic = next(f for f in manifest.files if f.path == "media/pic.bin")
    assert len(pic.chunks) > 1
    assert hashes.sha256(manifest, pic) == hashlib.sha256(files["media/pic.bin"]).hexdigest()


def test_a_corrupt_stored_chunk_is_caught_when_hashing(srv: Repository, tmp_path: Path) -> None:
    files = course()
    published(srv, tmp_path, files)
    pic = next(f for f in latest(srv).files if f.path == "media/pic.bin")
    cid = pic.chunks[0][0]
    path = next((srv.data / "objects").rglob(cid))
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        FileHashes(srv.store).sha256(latest(srv), pic)


# -- roles, variants, history and lessons -----------------------------------------------------
def test_a_curator_makes_a_variant_and_sees_stale_files_after_the_base_changes(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    en = course()
    published(srv, tmp_path, en, locale="en")
    curator = srv.tokens.issue("curator", bundle="course", locale="es", label="Lucía")
    csrf = sign_in(client, curator.token)

    # The curator may not publish the base locale, nor a variant of another locale.
    r = post_upload(client, csrf, folder_body({"a": b"a"}), locale="en")
    assert r.status_code == 403
    r = post_upload(client, csrf, folder_body({"a": b"a"}), locale="es")
    assert r.status_code == 403 and "variant" in r.json()["error"]

    es = dict(en)
    es["index.html"] = en["index.html"].replace(b"Course", b"Curso")
    es["lessons/01.html"] = b"<p>" + b"lecci\xc3\xb3n uno " * 500 + b"</p>"
    # Ask first, like the page does: everything but the translated files is on the server.
    ask = [
        {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for p, d in es.items()
    ]
    r = client.post(
        "/web/api/unchanged/course/es?from_locale=en",
        json={"files": ask},
        headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
    )
    keep = set(r.json()["unchanged"])
    assert keep == {"lessons/02.md", "media/pic.bin", "media/empty.txt"}
    r = client.post(
        "/web/api/publish/course/es?from_locale=en",
        content=folder_body(es, keep, notes="traducción"),
        headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
    )
    assert r.status_code == 200, r.text
    assert r.json()["sent_bytes"] == len(es["index.html"]) + len(es["lessons/01.html"])
    assert version_files(srv, latest(srv, locale="es")) == es

    # The teacher changes two files of the base.
    en2 = dict(en)
    en2["lessons/02.md"] += b"\nA new paragraph."
    en2["media/pic.bin"] = en["media/pic.bin"][::-1]
    published(srv, tmp_path, en2, locale="en")

    page = client.get("/web/b/course/es/translations")
    assert page.status_code == 200
    check_accessible(page.text)
    stale_rows = [
        line
        for line in page.text.splitlines()
        if '<tr class="stale">' in line or "stale</td>" in line
    ]
    assert len([x for x in stale_rows if "stale</td>" in x]) == 2
    report = srv.reads.translation_report("course", "es")
    stale = sorted(f.path for f in report.files if f.state == "stale")
    for path in stale:
        assert path in page.text
    text = " ".join(" ".join(Page(page.text).text).split())
    assert "2 files need work" in text
    assert "/web/b/course/en/diff?from=1&amp;to=2" in page.text

    history = client.get("/web/b/course/es").text
    assert "Signed in as <strong>Lucía, curator of course/es</strong>" in history
    assert "Lucía (curator)" in history
    assert "traducción" in history
    assert "en v1" in history  # made from


def test_translation_status_of_a_base_line_is_a_clear_404(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    published(srv, tmp_path, {"a.txt": b"a"})
    sign_in(client, srv.tokens.create("teacher"))
    r = client.get("/web/b/course/en/translations")
    assert r.status_code == 404
    assert "not a locale variant" in r.text


def test_the_version_page_shows_the_lessons_in_order(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    files = {
        "satchel.toml": b'[bundle]\ntitle = "Numbers"\nsubject = "Maths"\ngrade = "3"\n\n'
        b'[[lessons]]\ntitle = "Counting"\nentry = "b/count.html"\n\n'
        b'[[lessons]]\ntitle = "Adding"\nentry = "a/add.html"\n',
        "a/add.html": b"<h1>Add</h1>",
        "b/count.html": b"<h1>Count</h1>",
    }
    published(srv, tmp_path, files)
    sign_in(client, srv.tokens.create("teacher"))
    html = client.get("/web/b/course/en/v/1").text
    assert html.index("Counting") < html.index("Adding")
    assert 'href="/web/b/course/en/v/1/preview/b/count.html">Counting' in html
    preview = client.get("/web/b/course/en/v/1/preview/b/count.html").text
    assert 'aria-current="page">Counting' in preview
    assert "Subject: Maths" in client.get("/web/b/course/en").text


def test_history_names_who_published(client: TestClient, srv: Repository, tmp_path: Path) -> None:
    teacher = srv.tokens.issue("teacher", bundle="course", label="Ana")
    csrf = sign_in(client, teacher.token)
    assert post_upload(client, csrf, folder_body({"a.txt": b"1"}, notes="one")).status_code == 200
    unlabelled = srv.tokens.issue("teacher")
    csrf = sign_in(client, unlabelled.token)
    assert post_upload(client, csrf, folder_body({"a.txt": b"2"}, notes="two")).status_code == 200
    html = client.get("/web/b/course/en").text
    assert "Ana (teacher)" in html
    assert f"teacher token #{unlabelled.info.id}" in html


def test_guessing_tokens_on_the_sign_in_page_is_slowed_down(srv: Repository) -> None:
    from satchel.server.ratelimit import FailureLimiter

    limiter = FailureLimiter(burst=3, period=3600)
    with TestClient(create_app(srv, auth_limiter=limiter)) as c:
        codes = [
            c.post("/web/signin", data={"token": f"guess{i}"}, follow_redirects=False).status_code
            for i in range(5)
        ]
        assert codes == [401, 401, 401, 429, 429]
        # The same address is refused on the API too: one budget for guesses.
        r = c.post("/v1/publish/course/en", headers={"Authorization": "Bearer x"}, content=b"{}")
        assert r.status_code == 429
        good = srv.tokens.create("teacher")
        r = c.post("/web/signin", data={"token": good}, follow_redirects=False)
        assert r.status_code == 429


def test_a_stale_cookie_is_dropped_on_the_way_to_sign_in(client: TestClient) -> None:
    client.cookies.set(COOKIE, "sat_revoked_or_unknown", path="/web")
    r = client.get("/web/", follow_redirects=False)
    assert r.status_code == 303
    assert (
        f"{COOKIE}=" in r.headers["set-cookie"] and "max-age=0" in r.headers["set-cookie"].lower()
    )


def test_a_body_without_content_length_is_bounded_too(srv: Repository) -> None:
    from fastapi import FastAPI
    from satchel.edge.http import install_error_handlers
    from satchel.server.web import web_router

    app = FastAPI()
    app.include_router(web_router(srv, limits=SMALL))
    install_error_handlers(app)

    token = srv.tokens.create("admin")
    with TestClient(app) as c:
        csrf = sign_in(c, token)
        head = folder_body({"a.txt": b"x" * 5_000})

        def endless() -> Iterator[bytes]:  # streamed: no Content-Length
            yield head
            for _ in range(100):
                yield b"y" * 1_000

        r = c.post(
            "/web/api/publish/course/en",
            content=endless(),
            headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
        )
        assert r.status_code == 413 and "limit" in r.json()["error"]
        # Refused early (a bad path), the rest is read and the reason still arrives.
        bad = body({"kind": "folder", "files": [{"path": "../x", "size": 3_000}]}, b"z" * 3_000)
        r = c.post(
            "/web/api/publish/course/en",
            content=iter([bad[:100], bad[100:]]),
            headers={"X-CSRF-Token": csrf, "Origin": ORIGIN},
        )
        assert r.status_code in (400, 422) and "'..'" in r.json()["error"]
    assert srv.reads.catalog() == []


# -- finding 9: a web upload in flight -----------------------------------------------------------
def _drive_upload(
    repo: Repository, token: str, pieces: list[bytes], between: Any, idle: float = 60.0
) -> int:
    """POST /web/api/publish/course/en straight into the app, one body piece per read;
    ``between(n)`` runs before piece n (n >= 1) is handed over. Returns the status sent."""
    from dataclasses import replace

    from fastapi import FastAPI
    from satchel.edge.http import install_error_handlers
    from satchel.server.web import web_router
    from satchel.server.webdata import WebLimits

    app = FastAPI()
    app.include_router(web_router(repo, limits=replace(WebLimits(), idle_seconds=idle)))
    install_error_handlers(app)
    queue = list(pieces)
    sent: list[dict[str, Any]] = []
    handed = 0

    async def receive() -> dict[str, Any]:
        nonlocal handed
        if not queue:
            return {"type": "http.request", "body": b"", "more_body": False}
        if handed:
            await between(handed)
        handed += 1
        return {"type": "http.request", "body": queue.pop(0), "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"host", b"testserver"),
        (b"origin", ORIGIN.encode()),
        (b"cookie", f"{COOKIE}={token}".encode()),
        (b"x-csrf-token", csrf_token(token).encode()),
        (b"content-type", b"application/octet-stream"),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/web/api/publish/course/en",
        "raw_path": b"/web/api/publish/course/en",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))  # type: ignore[arg-type]
    return int(next(m for m in sent if m["type"] == "http.response.start")["status"])


def test_a_token_revoked_during_a_web_upload_publishes_nothing(srv: Repository) -> None:
    made = srv.tokens.issue("teacher", bundle="course", label="Ana")
    data = folder_body({"a.txt": b"a" * 3_000, "b.txt": b"b" * 3_000})
    half = len(data) // 2

    async def revoke(n: int) -> None:
        if n == 1:  # signed in and checked; the upload is under way
            srv.tokens.revoke(made.info.id)

    status = _drive_upload(srv, made.token, [data[:half], data[half:]], revoke)
    assert status == 401
    assert srv.reads.catalog() == []


def test_an_idle_web_upload_is_dropped(srv: Repository) -> None:
    token = srv.tokens.create("teacher", bundle="course")
    data = folder_body({"a.txt": b"a" * 3_000})

    async def stall(n: int) -> None:
        await asyncio.sleep(20)

    began = time.monotonic()
    status = _drive_upload(srv, token, [data[:50], data[50:]], stall, idle=0.3)
    assert status == 408
    assert time.monotonic() - began < 15
    assert srv.reads.catalog() == []
