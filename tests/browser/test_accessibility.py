"""Accessible by test: axe-core over every page type of the viewer, the hub at phone size and
the teachers' web page, in Debian's Chromium driven by Playwright; and a GIFT question
answered with the keyboard alone.

axe-core is the npm package pinned in ``tests/browser/axe/package.json`` (with its lock file),
installed by ``.ci/run`` with ``npm ci``; it is evaluated in each page through the DevTools
protocol, which a page's Content-Security-Policy does not govern, so the pages are tested
with the policy they really have. The pass mark: no violation of impact ``serious`` or
``critical``. Set SATCHEL_SCREENSHOTS=docs/screenshots (``scripts/screenshots`` does) to
refresh the viewer's screenshots in docs/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from satchel.sync.local import LocalStore
from satchel.sync.outbox import Outbox
from satchel.sync.publish import Publisher
from satchel.sync.search import update_search_index
from satchel.sync.updater import Updater

from harness import e2e
from harness.lessons import build_course, png
from harness.paths import REPO
from harness.repo import RepoFetcher, admin_target, make_repository, publish, write_tree

CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO / "tests" / "browser" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1024, "height": 600}
SAMPLE = REPO / "server" / "sample"

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)", allow_module_level=True
    )
if not AXE.exists():
    pytest.skip(
        "axe-core is not installed: run 'npm ci' in tests/browser/axe (.ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# -- a store with every kind of page ------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, str]:
    tmp = tmp_path_factory.mktemp("a11y")
    repo = make_repository(tmp / "srv")
    local = LocalStore(tmp / "store", durable=False)
    build_course(repo, local, tmp)  # CNXML with an exercise, Markdown, a video with subtitles
    publish(repo, SAMPLE, bundle="sample", title="Numbers around us (sample)")
    video = {
        "clip.mp4": b"\x00" * 2048,
        "clip.sgn.mp4": b"\x00" * 2048,
        "clip.vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n",
        "cover.png": png(40, 30),
    }
    publish(repo, write_tree(tmp / "video", video), bundle="video", title="A video lesson")
    Publisher(admin_target(repo)).publish(
        write_tree(tmp / "sample-uk", {"lessons/04-check.md": "# Перевір себе\n".encode()}),
        bundle="sample",
        locale="uk",
        title="Числа навколо нас",
        from_locale="en",
    )
    for bundle, locale in (("sample", "en"), ("sample", "uk"), ("video", "en")):
        Updater(local, RepoFetcher(repo)).sync(bundle, locale)
    update_search_index(local)
    with Outbox(local.root) as box:
        learner = box.join("Ana", "7KQ2-M9X7", "sample", "en", now=datetime.now(UTC)).learner
    return local, learner


@pytest.fixture(scope="module")
def viewer(
    store: tuple[LocalStore, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("view") / "view.log"
    with e2e.satchel_process("view", "--store", store[0].root, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def hub(store: tuple[LocalStore, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("hub") / "hub.log"
    args = ("share", "--store", store[0].root, "--viewer", "--host", "127.0.0.1", "--no-announce")
    with e2e.satchel_process(*args, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("SATCHEL_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text("utf-8"))
    found: list[str] = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => `${v.id} (${v.impact}): ${v.help} at ` +
                     v.nodes.slice(0, 4).map(n => n.target.join(' ')).join(', '));
        }"""
    )
    return found


def visit(page: Any, url: str, status: int = 200) -> None:
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == status, (url, response and response.status)
    page.wait_for_load_state("networkidle")


def test_axe_finds_what_it_should(browser: Any) -> None:
    """The pass mark means something: a page with known faults fails it."""
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        page.set_content(
            '<html><body><img src="data:,"><a href="/x"></a>'
            '<input type="text"><p style="color:#bbb;background:#fff">faint</p></body></html>'
        )
        found = " ".join(serious(page))
        for rule in ("image-alt", "link-name", "label", "color-contrast", "html-has-lang"):
            assert rule in found, (rule, found)
    finally:
        context.close()


VIEWER_PAGES = {
    "catalog": "/",
    "contents": "/b/sample/en/",
    "markdown lesson with GIFT questions": "/b/sample/en/current/page/lessons/04-check.md",
    "CNXML lesson with an exercise": "/b/course/en/current/page/modules/m1/index.cnxml",
    "HTML lesson in its frame": "/b/sample/en/current/page/lessons/01-counting.html",
    "translation whose original changed": "/b/sample/uk/current/page/lessons/04-check.md",
    "media page with subtitles and sign language": "/b/video/en/current/page/clip.mp4",
    "search results": "/search?q=beans",
    "search with nothing found": "/search?q=zebra",
    "who is learning": "/learners",
}


def test_every_viewer_page_type_has_no_serious_violations(
    viewer: str, browser: Any, store: tuple[LocalStore, str], shots: Path
) -> None:
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        problems = {}
        for name, path in VIEWER_PAGES.items():
            visit(page, viewer + path)
            problems[name] = serious(page)
        visit(page, viewer + "/b/nope/en/", status=404)
        problems["error page"] = serious(page)
        # With a learner chosen: progress, "continue", the done button.
        visit(page, viewer + "/learners")
        page.get_by_role("button", name="Ana").click()
        page.wait_for_url(viewer + "/")
        page.wait_for_load_state("networkidle")
        visit(page, viewer + "/b/sample/en/current/page/lessons/01-counting.html")
        page.screenshot(path=shots / "viewer-lesson.png", full_page=True)
        problems["lesson with a learner"] = serious(page)
        visit(page, viewer + "/")
        problems["catalog with a learner"] = serious(page)
        visit(page, viewer + "/search?q=groups")
        page.screenshot(path=shots / "viewer-search.png", full_page=True)
        assert {k: v for k, v in problems.items() if v} == {}
        # Media: the subtitle track and the sign-language video beside the video.
        visit(page, viewer + VIEWER_PAGES["media page with subtitles and sign language"])
        assert page.locator("#main-video track[kind=subtitles]").count() == 1
        assert page.locator("video#sign-video[data-follows=main-video]").count() == 1
    finally:
        context.close()


def test_the_hub_at_phone_size(hub: str, browser: Any, shots: Path) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        problems = {}
        for name, path in (("catalog", "/"), ("lesson", VIEWER_PAGES["HTML lesson in its frame"]),
                           ("gift", VIEWER_PAGES["markdown lesson with GIFT questions"]),
                           ("search", "/search?q=beans"), ("learners", "/learners")):  # fmt: skip
            visit(page, hub + path)
            problems[name] = serious(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width}px wide on a 360px phone"
            if name == "catalog":
                page.screenshot(path=shots / "hub-phone.png", full_page=True)
        assert {k: v for k, v in problems.items() if v} == {}
    finally:
        context.close()


def test_a_gift_question_answered_with_the_keyboard_alone(
    viewer: str, browser: Any, store: tuple[LocalStore, str]
) -> None:
    """Issue 13: choose who learns, then answer a question, with keys only; the feedback is
    announced and the answer is in the outbox."""
    local, learner = store
    context = browser.new_context(viewport=LAPTOP)
    try:
        page = context.new_page()
        visit(page, viewer + "/learners?next=/b/sample/en/current/page/lessons/04-check.md")

        def tab_to(selector: str, limit: int = 80) -> None:
            for _ in range(limit):
                page.keyboard.press("Tab")
                if page.evaluate(f"document.activeElement.matches({selector!r})"):
                    return
            raise AssertionError(f"Tab never reached {selector}")

        tab_to(f'button[value="{learner}"]')
        page.keyboard.press("Enter")
        page.wait_for_url(viewer + "/b/sample/en/current/page/lessons/04-check.md")
        page.wait_for_load_state("networkidle")
        tab_to("#gift-half--true")
        page.keyboard.press("Space")
        tab_to("#gift-half button[type=submit]")
        page.keyboard.press("Enter")
        feedback = page.locator("#gift-half--feedback")
        sync_api.expect(feedback).to_have_text(re.compile(r"^Right! Yes: 2/4 = 1/2\."))
        assert feedback.get_attribute("aria-live") == "polite"
        # A typed answer: Enter in the field submits it.
        tab_to("#gift-groups-of-ten--answer")
        page.keyboard.type("35")
        page.keyboard.press("Enter")
        sync_api.expect(page.locator("#gift-groups-of-ten--feedback")).to_contain_text("Not quite.")
        page.keyboard.press("Shift+Tab")  # nothing lost focus: the form is still where it was
    finally:
        context.close()
    with Outbox(local.root) as box:
        answers = [
            (r.learner, r.lesson, r.question, r.answer, r.correct)
            for r in box.records()
            if r.kind == "answered"
        ]
        opened = [r.lesson for r in box.records() if r.kind == "opened"]
    assert (learner, "lessons/04-check.md", "half", "true", True) in answers
    assert (learner, "lessons/04-check.md", "groups-of-ten", "35", False) in answers
    assert "lessons/04-check.md" in opened  # the page recorded that it was opened


# -- the teachers' web page -------------------------------------------------------------------
def test_the_web_pages_have_no_serious_violations(browser: Any, tmp_path: Path) -> None:
    with e2e.SatchelServer(tmp_path / "data", sample=True) as server:
        token = server.token("admin")
        es = write_tree(tmp_path / "es", {"lessons/04-check.md": b"# Comprueba\n"})
        res = e2e.publish(server.url, token, es, "sample", "--locale", "es", "--from-locale", "en")
        assert res.code == 0, res.describe()
        v2 = tmp_path / "v2"
        import shutil

        shutil.copytree(SAMPLE, v2)
        (v2 / "lessons" / "04-check.md").write_text("# Check\n\nChanged.\n")
        assert e2e.publish(server.url, token, v2, "sample").code == 0
        context = browser.new_context(viewport=LAPTOP, base_url=server.url)
        try:
            page = context.new_page()
            problems = {}
            visit(page, server.url + "/web/signin")
            problems["sign in"] = serious(page)
            page.get_by_label("Token").fill("not-a-token")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state("networkidle")
            problems["sign in refused"] = serious(page)
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/web/$"))
            for name, path in (
                ("bundles", "/web/"),
                ("line", "/web/b/sample/en"),
                ("version", "/web/b/sample/en/v/2"),
                ("preview", "/web/b/sample/en/v/2/preview/lessons/01-counting.html"),
                ("diff", "/web/b/sample/en/diff?from=1&to=2"),
                ("translations", "/web/b/sample/es/translations"),
                ("upload", "/web/upload"),
            ):
                visit(page, server.url + path)
                problems[name] = serious(page)
            visit(page, server.url + "/web/b/nope/en", status=404)
            problems["error"] = serious(page)
            assert {k: v for k, v in problems.items() if v} == {}
        finally:
            context.close()
