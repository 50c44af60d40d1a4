"""``satchel view`` in a real browser: headless Chromium (Debian's, through Playwright) opens
the catalog, the contents and lessons with images, and every request it makes is recorded.

The promise under test: the viewer makes no request outside the laptop. A lesson that names an
outside address is given one that a trap server (on another port, standing in for the
internet) would see; it must see nothing, and every request the page makes must go to the
viewer's own 127.0.0.1:PORT. Images must actually decode (naturalWidth > 0).
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.sync.local import LocalStore

from harness import e2e
from harness.lessons import build_course
from harness.repo import make_repository

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
    port = e2e.free_port()
    log_path = tmp_path / "view.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(e2e.SATCHEL), "view", "--store", str(store.root), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert e2e.wait_healthy(proc, url, 30), log_path.read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


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

            # An HTML page served as it is names an outside image: CSP keeps it from loading.
            visit("/b/course/en/current/file/pages/plain.html")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
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
