"""The web page in a real browser: Playwright driving Debian's Chromium against ``satchel serve``.

Everything a person does goes through the page: signing in with a token, choosing a folder or
a zip, watching the upload, reading the history, the diff, the preview and the translation
status. The server is the real ``satchel serve`` under uvicorn (harness/e2e.py), and
the browser reaches it through a counting loopback proxy, so "only changed files are sent" is
measured on the wire (bench/web_upload.py does it for a real translation). Chromium is
Debian's package (``.ci/run`` installs it); Playwright's own browser downloads are never used.
Without /usr/bin/chromium these tests skip with a reason.

Set SATCHEL_SCREENSHOTS=docs/screenshots (``scripts/screenshots`` does) to refresh the
screenshots in docs/; otherwise they go to a temp folder, so the code that takes them runs.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from satchel.content.batch import SEALED_MEDIA_TYPE, seal_batch
from satchel.content.index import parse_index
from satchel.content.records import Learner, Record, new_learner_id
from satchel.content.signing import SigningKey

from harness.e2e import SatchelServer, publish
from harness.proxy import LoopbackProxy

CHROMIUM = Path("/usr/bin/chromium")

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium);"
        " .ci/run does",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright comes with the dev extra"
)
Page = playwright_api.Page
expect = playwright_api.expect

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SMALL_LAPTOP = {"width": 1024, "height": 600}
pytestmark = pytest.mark.timeout(300)


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SatchelServer]:
    with SatchelServer(tmp_path_factory.mktemp("browser") / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(server: SatchelServer) -> Iterator[LoopbackProxy]:
    with LoopbackProxy("127.0.0.1", server.port) as p:
        yield p


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # launch() gives every run a fresh temporary profile (user-data-dir), removed on close.
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser: Any, proxy: LoopbackProxy) -> Iterator[Any]:
    """Pages in separate contexts (separate cookie jars: one per person)."""
    contexts = []

    def make() -> Page:
        ctx = browser.new_context(viewport=SMALL_LAPTOP, base_url=proxy.url, locale="en-GB")
        ctx.set_default_timeout(60_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("SATCHEL_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- helpers -----------------------------------------------------------------------------------
def lesson_tree(root: Path, title: str, seed: int = 0, *, extra: str = "") -> Path:
    rng = random.Random(seed)
    files = {
        "satchel.toml": (
            f'[bundle]\ntitle = "{title}"\nsubject = "Mathematics"\ngrade = "5"\n\n'
            '[[lessons]]\ntitle = "Counting in groups"\nentry = "lessons/01-counting.html"\n\n'
            '[[lessons]]\ntitle = "Fractions"\nentry = "lessons/02-fractions.html"\n'
        ).encode(),
        "lessons/01-counting.html": (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Counting</title></head><body><main><h1>Counting in groups</h1>"
            "<p>Ten groups of ten make one hundred." + extra + "</p>"
            "<img id='beans' src='../media/beans.svg' alt='Beans in rows of ten'>"
            "<script>document.title = 'pwned'; parent.document.body.innerHTML = 'pwned';</script>"
            "</main></body></html>"
        ).encode(),
        "lessons/02-fractions.html": (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Fractions</title>"
            "</head><body><h1>Fractions</h1><p>"
            + "Half of ten is five. " * 200
            + "</p></body></html>"
        ).encode(),
        "media/beans.svg": (
            b"<svg xmlns='http://www.w3.org/2000/svg' width='120' height='40'>"
            b"<rect width='120' height='40' fill='#8b5a2b'/></svg>"
        ),
        "media/photo.bin": rng.randbytes(300_000),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sign_in(page: Page, token: str, *, start: str = "/web/") -> None:
    page.goto(start)
    expect(page).to_have_url(re.compile(r"/web/signin"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def upload(
    page: Page,
    *,
    bundle: str,
    locale: str,
    folder: Path | None = None,
    zip_file: Path | None = None,
    notes: str = "",
    variant_of: str | None = None,
) -> None:
    page.goto(f"/web/upload?bundle={bundle}&locale={locale}")
    page.get_by_label("Bundle").fill(bundle)
    page.get_by_label("Locale").fill(locale)
    if variant_of is not None:
        page.get_by_label("Variant of").select_option(variant_of)
    page.get_by_label("Publish notes").fill(notes)
    if folder is not None:
        page.get_by_label("A folder").set_input_files(folder)
    if zip_file is not None:
        page.get_by_label("or a zip file").set_input_files(zip_file)
    page.get_by_role("button", name="Upload and publish").click()


def published_message(page: Page) -> str:
    status = page.locator("#upload-status")
    expect(status).to_contain_text("Published version", timeout=120_000)
    return str(status.inner_text())


def refused_message(page: Page) -> str:
    alert = page.locator("#upload-error")
    expect(alert).to_be_visible(timeout=60_000)
    return str(alert.inner_text())


def catalog(server: SatchelServer) -> dict[tuple[str, str], dict[str, Any]]:
    lines = httpx.get(f"{server.url}/v1/catalog", timeout=30).json()["bundles"]
    return {(x["bundle"], x["locale"]): x for x in lines}


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= SMALL_LAPTOP["width"], f"{page.url} is {width}px wide at 1024x600"


# -- a teacher uploads and publishes -------------------------------------------------------------
def test_a_teacher_uploads_a_folder_then_only_the_changed_file(
    server: SatchelServer, proxy: LoopbackProxy, new_page: Any, tmp_path: Path, shots: Path
) -> None:
    token = server.token("teacher", "--bundle", "numbers", "--label", "Ana")
    page = new_page()
    sign_in(page, token, start="/web/upload?bundle=numbers&locale=en")
    expect(page).to_have_url(re.compile(r"/web/upload\?bundle=numbers"))  # came back after sign-in

    v1 = lesson_tree(tmp_path / "v1", "Numbers around us")
    upload(page, bundle="numbers", locale="en", folder=v1, notes="First lessons")
    message = published_message(page)
    assert "Published version 1" in message
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    page.screenshot(path=shots / "upload.png", full_page=True)

    # Version 2: one word changed in one lesson. The browser hashes everything, the server
    # names the unchanged files, and only the changed file travels.
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    lesson = v2 / "lessons/01-counting.html"
    lesson.write_bytes(lesson.read_bytes().replace(b"one hundred", b"a hundred"))
    proxy.reset()
    upload(page, bundle="numbers", locale="en", folder=v2, notes="Fix: a hundred")
    message = published_message(page)
    assert "Published version 2" in message
    sent = proxy.stats().bytes_up
    tree_bytes = sum(p.stat().st_size for p in v2.rglob("*") if p.is_file())
    changed = lesson.stat().st_size
    # The page, its script, the file list and the changed file; never the 300 KB photo.
    assert sent < changed + 20_000, f"sent {sent:,} bytes for a {changed:,}-byte change"
    assert sent < tree_bytes / 10
    line = catalog(server)[("numbers", "en")]
    assert line["latest_version"] == 2
    assert [v["notes"] for v in line["versions"]] == ["First lessons", "Fix: a hundred"]

    # The history shows who and why; the diff shows the one changed file.
    page.get_by_role("link", name="Published version 2").click()
    expect(page.get_by_role("heading", name="Version history")).to_be_visible()
    history = page.locator("table").first
    expect(history).to_contain_text("Ana (teacher)")
    expect(history).to_contain_text("Fix: a hundred")
    no_sideways_scroll(page)
    page.screenshot(path=shots / "history.png")
    page.get_by_role("link", name="changes from 1").click()
    summary = page.locator("#diff-summary")
    expect(summary.get_by_role("row", name="Changed 1 file", exact=True)).to_be_visible()
    expect(summary.get_by_role("row", name="Unchanged 4 files", exact=True)).to_be_visible()
    expect(summary.get_by_role("row", name="Added 0 files 0 B", exact=True)).to_be_visible()
    expect(page.locator("table.changed")).to_contain_text("lessons/01-counting.html")
    no_sideways_scroll(page)
    page.screenshot(path=shots / "diff.png")


def test_a_teacher_uploads_a_zip(server: SatchelServer, new_page: Any, tmp_path: Path) -> None:
    token = server.token("teacher", "--bundle", "zipped")
    src = lesson_tree(tmp_path / "src", "Zipped course", seed=3)
    archive = tmp_path / "course.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, f"course/{path.relative_to(src).as_posix()}")
    page = new_page()
    sign_in(page, token)
    upload(page, bundle="zipped", locale="en", zip_file=archive, notes="from a zip")
    assert "Published version 1" in published_message(page)
    versions = catalog(server)[("zipped", "en")]["versions"]
    assert versions[0]["files"] == 5 and versions[0]["notes"] == "from a zip"

    # A zip that climbs out of its folder is refused with the reason, and nothing changes.
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../outside.txt", b"x")
    upload(page, bundle="zipped", locale="en", zip_file=evil)
    assert "'..'" in refused_message(page)
    assert catalog(server)[("zipped", "en")]["latest_version"] == 1


def test_the_lesson_preview_is_sandboxed_and_shows_its_images(
    server: SatchelServer, new_page: Any, tmp_path: Path, shots: Path
) -> None:
    token = server.token("teacher", "--bundle", "preview")
    publish(server.url, token, lesson_tree(tmp_path / "p", "Preview course"), "preview")
    page = new_page()
    sign_in(page, token)
    page.goto("/web/b/preview/en/v/1")
    toc = page.get_by_role("navigation", name="Lessons")
    expect(toc.get_by_role("link")).to_have_text(["Counting in groups", "Fractions"])
    toc.get_by_role("link", name="Counting in groups").click()
    frame = page.frame_locator("iframe.preview")
    expect(frame.get_by_role("heading", name="Counting in groups")).to_be_visible()
    # The picture comes from the same version; the lesson's script never ran.
    width = frame.locator("#beans").evaluate("img => img.naturalWidth")
    assert width == 120
    assert page.title() != "pwned"
    expect(page.locator("body")).not_to_have_text("pwned")
    no_sideways_scroll(page)
    page.screenshot(path=shots / "preview.png")
    # Opened on its own, the file still cannot run scripts (CSP sandbox header).
    page.goto("/web/raw/preview/en/1/lessons/01-counting.html")
    assert page.title() == "Counting"


# -- curators and variants ------------------------------------------------------------------------
def test_a_curator_creates_a_variant_and_sees_stale_files_after_the_base_changes(
    server: SatchelServer, proxy: LoopbackProxy, new_page: Any, tmp_path: Path, shots: Path
) -> None:
    teacher = server.token("teacher", "--bundle", "fractions", "--label", "Ana")
    en = lesson_tree(tmp_path / "en", "Fractions")
    assert publish(server.url, teacher, en, "fractions", "--notes", "English").code == 0

    curator = server.token("curator", "--bundle", "fractions", "--locale", "es", "--label", "Lucía")
    es = tmp_path / "es"
    shutil.copytree(en, es)
    for name in ("01-counting.html", "02-fractions.html"):
        f = es / "lessons" / name
        f.write_bytes(f.read_bytes().replace(b"lang='en'", b"lang='es'").replace(b"Ten", b"Diez"))
    page = new_page()
    sign_in(page, curator)
    page.goto("/web/upload")
    # The curator's grant fills in the bundle and locale, and a new line is a variant of en.
    expect(page.get_by_label("Bundle")).to_have_value("fractions")
    expect(page.get_by_label("Locale")).to_have_value("es")
    expect(page.get_by_label("Variant of")).to_have_value("en")
    proxy.reset()
    upload(page, bundle="fractions", locale="es", folder=es, notes="Traducción", variant_of="en")
    assert "Published version 1" in published_message(page)
    # The photo and the picture are the base's: shared, not sent.
    assert proxy.stats().bytes_up < 100_000

    # The teacher changes the second lesson and the photo in English.
    en2 = tmp_path / "en2"
    shutil.copytree(en, en2)
    f = en2 / "lessons/02-fractions.html"
    f.write_bytes(f.read_bytes().replace(b"Half of ten", b"One half of ten"))
    (en2 / "media/photo.bin").write_bytes(random.Random(9).randbytes(300_000))
    assert publish(server.url, teacher, en2, "fractions", "--notes", "Clearer").code == 0

    page.goto("/web/b/fractions/es")
    page.get_by_role("link", name="Translation status against English (en)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Translation status of Español (es)"
    )
    stale = page.locator("#translation-files tr.stale")
    expect(stale).to_have_count(2)
    expect(stale.locator("th")).to_have_text(["lessons/02-fractions.html", "media/photo.bin"])
    expect(page.locator("#todo")).to_contain_text("2 files need work")
    # Highlighted, not only by colour: the state is written in the row.
    expect(stale.first.locator("td.state")).to_have_text("stale")
    colours = page.evaluate(
        """() => [...document.querySelectorAll('#translation-files tbody tr')].map(
            r => [r.className, getComputedStyle(r).backgroundColor])"""
    )
    stale_bg = {bg for cls, bg in colours if cls == "stale"}
    other_bg = {bg for cls, bg in colours if cls == "up-to-date"}
    assert stale_bg and other_bg and stale_bg.isdisjoint(other_bg)
    no_sideways_scroll(page)
    page.screenshot(path=shots / "translations.png", full_page=True)


def test_a_curator_cannot_publish_the_base_locale(
    server: SatchelServer, new_page: Any, tmp_path: Path
) -> None:
    teacher = server.token("teacher", "--bundle", "guarded")
    assert (
        publish(server.url, teacher, lesson_tree(tmp_path / "en", "Guarded"), "guarded").code == 0
    )
    curator = server.token("curator", "--bundle", "guarded", "--locale", "uk")
    page = new_page()
    sign_in(page, curator)
    upload(page, bundle="guarded", locale="en", folder=lesson_tree(tmp_path / "x", "Mine"))
    assert "may publish only locale 'uk'" in refused_message(page)
    # Even its own locale only as a variant, never as a base line of its own.
    upload(page, bundle="guarded", locale="uk", folder=tmp_path / "x", variant_of="")
    assert "variant" in refused_message(page)
    assert catalog(server)[("guarded", "en")]["latest_version"] == 1
    assert ("guarded", "uk") not in catalog(server)


def test_a_teacher_cannot_publish_a_bundle_not_granted(
    server: SatchelServer, new_page: Any, tmp_path: Path
) -> None:
    token = server.token("teacher", "--bundle", "mine")
    page = new_page()
    sign_in(page, token)
    upload(page, bundle="theirs", locale="en", folder=lesson_tree(tmp_path / "t", "Theirs"))
    assert "only to bundle 'mine'" in refused_message(page)
    assert ("theirs", "en") not in catalog(server)


def test_no_token_cannot_publish(server: SatchelServer, new_page: Any, tmp_path: Path) -> None:
    page = new_page()
    page.goto("/web/upload?bundle=anon&locale=en")
    expect(page).to_have_url(re.compile(r"/web/signin\?next="))
    # A script on the page (or anyone else) posting without the cookie is refused.
    status = page.evaluate(
        """async () => (await fetch('/web/api/publish/anon/en', {method: 'POST',
            headers: {'X-CSRF-Token': 'x'},
            body: new Uint8Array([0, 0, 0, 2, 123, 125])})).status"""
    )
    assert status == 401
    r = httpx.post(f"{server.url}/v1/publish/anon/en", content=b"{}", timeout=30)
    assert r.status_code == 401
    # A wrong token is refused at the door with a reason a person can act on.
    page.get_by_label("Token").fill("sat_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    assert ("anon", "en") not in catalog(server)


# -- keyboard, small screens, cookies, the hash fallback -----------------------------------------
def test_keyboard_only_sign_in_and_visible_focus(
    server: SatchelServer, new_page: Any, shots: Path
) -> None:
    token = server.token("admin", "--label", "keyboard")
    page = new_page()
    page.goto("/web/signin")
    page.screenshot(path=shots / "signin.png")
    # The token field has focus on arrival: type, Enter, signed in.
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Bundles")).to_be_visible()
    page.keyboard.press("Tab")  # first stop on every page: the skip link, visibly focused
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    box = page.evaluate("document.activeElement.getBoundingClientRect().left")
    assert box >= 0  # shown on screen while focused
    stops = []
    for _ in range(4):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert stops == ["Satchel", "Bundles", "Upload", "Sign out"]
    page.get_by_role("link", name="Skip to content").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"
    cookies = page.context.cookies()
    (cookie,) = [c for c in cookies if c["name"] == "satchel_web"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/web"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
    no_sideways_scroll(page)
    page.screenshot(path=shots / "bundles.png")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/web/signin$"))
    assert not [c for c in page.context.cookies() if c["name"] == "satchel_web"]


def test_the_javascript_sha256_fallback_matches_sha256sum(
    server: SatchelServer, new_page: Any
) -> None:
    page = new_page()
    page.goto("/web/signin")
    page.add_script_tag(url="/web/static/upload.js")
    rng = random.Random(5)
    for size in (0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70_000):
        data = rng.randbytes(size)
        got = page.evaluate(
            "bytes => new SatchelUpload.Sha256().update(new Uint8Array(bytes)).hex()", list(data)
        )
        assert got == hashlib.sha256(data).hexdigest(), size
    # In pieces, across block boundaries, as the streaming path reads a big file.
    data = rng.randbytes(10_000)
    got = page.evaluate(
        """bytes => { const h = new SatchelUpload.Sha256(); const a = new Uint8Array(bytes);
            for (let i = 0; i < a.length; i += 777) h.update(a.subarray(i, i + 777));
            return h.hex(); }""",
        list(data),
    )
    assert got == hashlib.sha256(data).hexdigest()


# -- the Class page ------------------------------------------------------------------------------
def week_of_two(code: str, key: Any) -> bytes:
    """Two learners' records of the classroom bundle, sealed as one laptop sends them."""
    when = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    people = [
        Learner(new_learner_id(), name, code, "classroom", "en", when)
        for name in ("Ana Petrenko", "Bohdan Ko")
    ]
    records = []
    for seq in range(1, 13):
        kind = ("opened", "answered", "answered", "completed")[seq % 4]
        right = seq % 3 == 0
        answered = kind == "answered"
        records.append(
            Record(
                seq=seq,
                learner=people[seq % 2].learner,
                class_code=code,
                bundle="classroom",
                locale="en",
                lesson=f"lessons/0{seq % 3 + 1}.md",
                kind=kind,  # type: ignore[arg-type]
                question=f"q{seq % 3 + 1}" if answered else None,
                answer=str(seq) if answered else None,
                correct=right if answered else None,
                score_milli=(1000 if right else 0) if answered else None,
                time=when,
            )
        )
    return seal_batch(people, records, SigningKey.generate(), key)


def test_a_teacher_makes_a_class_and_reads_its_progress_with_the_keyboard(
    server: SatchelServer, new_page: Any, shots: Path, tmp_path: Path
) -> None:
    token = server.token("teacher", "--bundle", "classroom", "--label", "Olena")
    tree = lesson_tree(tmp_path / "c", "Classroom course")
    assert publish(server.url, token, tree, "classroom").code == 0
    page = new_page()
    sign_in(page, token, start="/web/b/classroom/en/class")
    expect(page.get_by_role("heading", name="Classes and progress")).to_be_visible()
    page.get_by_label("New class name").focus()
    page.keyboard.type("Class 5B")
    page.keyboard.press("Enter")
    code = page.locator("#created .joincode").inner_text()
    expect(page.locator("#created")).to_contain_text("satchel join")
    # A laptop's records arrive, sealed to the key the server's signed index names.
    index = httpx.get(f"{server.url}/v1/index/classroom/en", timeout=30)
    key = parse_index(index.content)[1].records_key
    assert key is not None
    r = httpx.post(
        f"{server.url}/v1/records",
        content=week_of_two(code, key),
        headers={"Content-Type": SEALED_MEDIA_TYPE},
        timeout=30,
    )
    assert r.status_code == 200
    page.reload()
    expect(page.locator("#progress-table")).to_contain_text("Ana Petrenko")
    expect(page.locator("#missed-table")).to_be_visible()
    no_sideways_scroll(page)
    page.screenshot(path=shots / "class.png", full_page=True)
    # Revoke the laptop with the keyboard alone: its reason field is labelled, Enter submits.
    page.get_by_label("Reason").last.focus()
    page.keyboard.type("left in the bus")
    page.keyboard.press("Enter")
    expect(page.locator("#done")).to_contain_text("revoked: left in the bus")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").click()
    assert download.value.suggested_filename == "report-classroom-en.csv"
