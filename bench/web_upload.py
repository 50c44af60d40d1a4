"""Bytes a curator's browser sends to publish a real translation, against the CLI's publish.

Starts a real ``satchel serve``, publishes intro-stats v1 as ``en`` with the CLI, then
publishes ``intro-stats-es`` as the ``es`` variant twice, on two fresh servers: once from the
web page in Debian's Chromium (Playwright; the page hashes whole files, sends only those
the server lacks, gzip-compressed where that saves 10%) and once with ``satchel publish
--from-locale en`` (chunks the server lacks, zstd -19 with the line's dictionary). A
loopback proxy counts the bytes each one sends up, HTTP heads included. Baselines from the
same run: the es tree, the files whose content v1 lacks, and those files gzip -6 / zstd -19
each.

Run from the repository root:  python bench/web_upload.py   (needs /usr/bin/chromium)
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import zstandard  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from harness.bench import corpus, table  # noqa: E402
from harness.e2e import SatchelServer, publish  # noqa: E402
from harness.proxy import LoopbackProxy  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The names upload.js compresses (keep in step with TEXTLIKE there).
TEXTLIKE = re.compile(
    r"\.(html?|xhtml|md|markdown|cnxml|xml|svg|css|js|mjs|json|txt|csv|tsv|vtt|srt|ya?ml|toml"
    r"|tex|py|r|sh)$",
    re.I,
)


def baselines(v1: Path, es: Path) -> dict[str, int]:
    held = {hashlib.sha256(p.read_bytes()).digest() for p in v1.rglob("*") if p.is_file()}
    out = {"tree": 0, "lacking": 0, "page_model": 0, "gzip6": 0, "zstd19": 0}
    cctx = zstandard.ZstdCompressor(level=19)
    for p in sorted(es.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        out["tree"] += len(data)
        if hashlib.sha256(data).digest() in held:
            continue
        out["lacking"] += len(data)
        gz = len(zlib.compress(data, 6)) + 12  # gzip framing is 12 bytes more than zlib's
        out["gzip6"] += min(gz, len(data))
        out["zstd19"] += min(len(cctx.compress(data)), len(data))
        # The page's rule: text-like names, or files whose first 64 KiB shrink by 10%.
        probe = data[:65536]
        tried = (
            TEXTLIKE.search(p.name)
            or len(data) <= 65536
            or (len(zlib.compress(probe, 6)) + 12 <= 0.9 * len(probe))
        )
        packed = tried and len(data) >= 512 and gz < 0.9 * len(data)
        out["page_model"] += gz if packed else len(data)
    return out


def browser_publish(work: Path, v1: Path, es: Path) -> tuple[int, float]:
    with SatchelServer(work / "web-data") as server:
        teacher = server.token("teacher", "--bundle", "intro-stats")
        if publish(server.url, teacher, v1, "intro-stats").code != 0:
            sys.exit("publishing v1 failed")
        curator = server.token("curator", "--bundle", "intro-stats", "--locale", "es")
        with (
            LoopbackProxy("127.0.0.1", server.port) as proxy,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_context(base_url=proxy.url).new_page()
            page.set_default_timeout(600_000)
            page.goto("/web/upload?bundle=intro-stats&locale=es")
            page.get_by_label("Token").fill(curator)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_label("Variant of").select_option("en")
            proxy.reset()
            started = time.monotonic()
            page.get_by_label("A folder").set_input_files(es)
            page.get_by_role("button", name="Upload and publish").click()
            expect(page.locator("#upload-status")).to_contain_text(
                "Published version 1", timeout=600_000
            )
            seconds = time.monotonic() - started
            sent = proxy.stats().bytes_up
            browser.close()
    return sent, seconds


def cli_publish(work: Path, v1: Path, es: Path) -> tuple[int, float]:
    with SatchelServer(work / "cli-data") as server:
        teacher = server.token("teacher", "--bundle", "intro-stats")
        if publish(server.url, teacher, v1, "intro-stats").code != 0:
            sys.exit("publishing v1 failed")
        curator = server.token("curator", "--bundle", "intro-stats", "--locale", "es")
        with LoopbackProxy("127.0.0.1", server.port) as proxy:
            started = time.monotonic()
            res = publish(
                proxy.url, curator, es, "intro-stats", "--locale", "es", "--from-locale", "en"
            )
            seconds = time.monotonic() - started
            if res.code != 0:
                sys.exit(f"CLI variant publish failed: {res.describe()}")
            return proxy.stats().bytes_up, seconds


def main() -> None:
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    v1, es = corpus("intro-stats/v1"), corpus("intro-stats-es")
    base = baselines(v1, es)
    with tempfile.TemporaryDirectory() as tmp:
        web_up, web_s = browser_publish(Path(tmp), v1, es)
        cli_up, cli_s = cli_publish(Path(tmp), v1, es)
    print("intro-stats-es published as the es variant of intro-stats v1 (en)\n")
    web_ratio = f"{web_up / base['page_model']:.3f}"
    cli_ratio = f"{cli_up / base['zstd19']:.3f}"
    rows: list[list[object]] = [
        ["es tree (all files)", base["tree"], "", ""],
        ["files whose content v1 lacks", base["lacking"], "", ""],
        ["  those files, gzip -6 each", base["gzip6"], "", ""],
        ["  those files, zstd -19 each", base["zstd19"], "", ""],
        ["  what the page should send (model)", base["page_model"], "", ""],
        ["web page upload (on the wire)", web_up, web_ratio, f"{web_s:.1f}"],
        ["satchel publish --from-locale (on the wire)", cli_up, cli_ratio, f"{cli_s:.1f}"],
    ]
    print(table(["what", "bytes", "ratio to model / zstd", "seconds"], rows))
    print(
        "\nThe page compares whole files (browser SHA-256) and gzips what shrinks; the CLI compares"
        " FastCDC chunks and uses zstd -19 with the line's dictionary, so it also skips the"
        " unchanged chunks inside changed files."
    )


if __name__ == "__main__":
    main()
