"""End to end: a real ``satchel serve`` (uvicorn) and the real CLI, over real sockets.

No TestClient and no in-process shortcuts: every step is the ``satchel`` console script run
as a subprocess, judged only by what a user sees (stdout, stderr, exit code, the files that
``checkout`` writes) and, where the promise is about the wire, by a loopback proxy counting
the bytes and requests that really crossed it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harness.e2e import (
    CliResult,
    SatchelServer,
    assert_same_tree,
    checkout,
    checkout_ok,
    free_port,
    publish,
    run_cli,
    sync,
    sync_json,
)
from harness.paths import CORPUS, REPO
from harness.proxy import LoopbackProxy
from harness.repo import text_bytes

REPO_ROOT = REPO
BUNDLE = "course"
ZERO_FINGERPRINT = "0" * 64
# Largest stored object a pack frame can carry (chunker max 128 KiB, stored raw when random)
# plus frame header and the three responses' HTTP heads: what a cut can waste at most.
CUT_SLACK = 128 * 1024 + 8 * 1024


# -- trees -----------------------------------------------------------------------------------------
def _text(rng: random.Random, size: int) -> bytes:
    """Compressible word-like text, some of it non-ASCII, of exactly ``size`` bytes."""
    return text_bytes(rng, size, alphabet="abcdefghijklmnopqrstuvwxyzé")


def make_tree(
    root: Path, *, seed: int = 20240501, binary: tuple[int, int] = (150_000, 90_000)
) -> Path:
    """A small course (~0.5 MB): text and random binary, nested folders, awkward names."""
    rng = random.Random(seed)
    photo = rng.randbytes(binary[0])
    rows = "\n".join(f"{i},{rng.random():.6f},{rng.choice(['a', 'b', 'c'])}" for i in range(1500))
    files: dict[str, bytes] = {
        "README.md": _text(rng, 12_000),
        "lessons/01-intro/index.md": _text(rng, 40_000),
        "lessons/02 data/notes on the mean.md": _text(rng, 25_000),  # spaces
        "lessons/añadido/café-ñandú.txt": _text(rng, 8_000),  # non-ASCII path
        "data/table.csv": rows.encode() + b"\n",
        "media/photo.bin": photo,
        "media/copy of photo.bin": photo,  # same content twice
        "media/deep/nested/figure.dat": rng.randbytes(binary[1]),
        "empty.txt": b"",
        "scripts/run.sh": b"#!/bin/sh\necho hello from satchel\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    (root / "scripts/run.sh").chmod(0o755)
    return root


def edited_copy(src: Path, dst: Path) -> Path:
    """``src`` with one paragraph in the middle of one text file rewritten."""
    shutil.copytree(src, dst)
    target = dst / "lessons/01-intro/index.md"
    data = target.read_bytes()
    mid = len(data) // 2
    target.write_bytes(
        data[:mid] + b"\n\nErratum: the mean is not the median.\n\n" + data[mid + 40 :]
    )
    return dst


# -- helpers ---------------------------------------------------------------------------------------
# The one notice a failing sync may print besides its error: the key it pinned on first use
# (said at once, so a person sees it even when the rest of the sync then fails).
TRUST_NOTICE = re.compile(r"trusting publisher key [0-9a-f:]{64,} \(first use\)")


def assert_one_error_line(res: CliResult) -> str:
    """A failure: non-zero exit, one 'error: ' line last on stderr, nothing else but notices."""
    lines = res.error_lines()
    assert res.code != 0, res.describe()
    assert lines and lines[-1].startswith("error: "), res.describe()
    assert all(TRUST_NOTICE.fullmatch(line) for line in lines[:-1]), res.describe()
    return lines[-1]


def published_version(res: CliResult) -> int:
    assert res.code == 0, res.describe()
    assert res.stdout.strip().isdigit() and res.stdout == f"{res.stdout.strip()}\n", res.describe()
    return int(res.stdout)


def current_version(store: Path, bundle: str = BUNDLE) -> int | None:
    ref = store / "refs" / bundle / "en.json"
    return json.loads(ref.read_text())["version"] if ref.exists() else None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SatchelServer]:
    with SatchelServer(tmp_path / "srv") as srv:
        yield srv


# -- a. the basic lifecycle ------------------------------------------------------------------------
def test_publish_sync_edit_resync_noop_and_old_version(
    tmp_path: Path, server: SatchelServer
) -> None:
    token = server.token("teacher")
    v1 = make_tree(tmp_path / "v1")
    v2 = edited_copy(v1, tmp_path / "v2")
    store = tmp_path / "store"

    assert published_version(publish(server.url, token, v1, BUNDLE)) == 1
    first = sync_json(server.url, BUNDLE, store)
    assert (first["version"], first["previous_version"], first["changed"]) == (1, None, True)
    assert_same_tree(v1, checkout_ok(store, BUNDLE, tmp_path / "out1"))
    assert (tmp_path / "out1/scripts/run.sh").stat().st_mode & 0o111

    res = publish(server.url, token, v2, BUNDLE)
    assert res.stdout == "2\n", res.describe()  # exactly the version number, nothing else
    second = sync_json(server.url, BUNDLE, store)
    assert (second["version"], second["previous_version"], second["changed"]) == (2, 1, True)
    assert second["bytes_downloaded"] < first["bytes_downloaded"] / 2, (first, second)
    assert second["requests"] <= 3
    assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / "out2"))

    third = sync_json(server.url, BUNDLE, store)
    assert (third["version"], third["changed"]) == (2, False)
    assert third["requests"] == 1 and third["bytes_downloaded"] < 2000, third

    assert_same_tree(v1, checkout_ok(store, BUNDLE, tmp_path / "old", "--version", 1))
    # Checking out over an existing folder replaces it whole.
    assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / "old"))


def test_a_poll_with_nothing_new_is_one_small_exchange(
    tmp_path: Path, server: SatchelServer
) -> None:
    """A laptop on a metered link checks for updates often: one request, heads kept short."""
    published_version(
        publish(server.url, server.token("teacher"), make_tree(tmp_path / "t"), BUNDLE)
    )
    store = tmp_path / "store"
    assert sync_json(server.url, BUNDLE, store)["version"] == 1
    with LoopbackProxy("127.0.0.1", server.port) as proxy:
        assert sync_json(proxy.url, BUNDLE, store)["changed"] is False
        poll = proxy.stats()
    assert poll.requests == 1, poll.request_lines
    # 295 bytes as built (a 162-byte request, a 133-byte 304), ~410 before the heads lost
    # "Accept: */*", "Connection: keep-alive" and "server: uvicorn", and ETags went to 128 bits.
    assert poll.bytes_up + poll.bytes_down <= 320, poll
    answer = httpx.get(f"{server.url}/v1/index/{BUNDLE}/en")
    assert "server" not in answer.headers and len(answer.headers["etag"]) == 34


# -- b. a sync cut mid-pack resumes ----------------------------------------------------------------
@pytest.mark.parametrize("case", ["first-sync", "update"])
def test_sync_cut_mid_pack_resumes(tmp_path: Path, server: SatchelServer, case: str) -> None:
    token = server.token("teacher")
    old = make_tree(tmp_path / "old", seed=7, binary=(300_000, 200_000))
    measure, store = tmp_path / "measure", tmp_path / "store"
    if case == "first-sync":
        new = old
        assert published_version(publish(server.url, token, old, BUNDLE)) == 1
    else:
        new = edited_copy(old, tmp_path / "new")
        (new / "media/video.bin").write_bytes(random.Random(8).randbytes(500_000))
        assert published_version(publish(server.url, token, old, BUNDLE)) == 1
        sync_json(server.url, BUNDLE, measure)
        sync_json(server.url, BUNDLE, store)
        assert published_version(publish(server.url, token, new, BUNDLE)) == 2
    want_version = current_version(store)

    with LoopbackProxy("127.0.0.1", server.port) as proxy:
        full = sync_json(proxy.url, BUNDLE, measure)  # same starting point, not cut
        full_wire = proxy.stats().bytes_down
        assert full["requests"] == 3

        proxy.reset()
        proxy.cut_down_after(full_wire // 2)
        cut = sync(proxy.url, BUNDLE, store, "--retries", 0)
        received = proxy.stats().bytes_down
        assert proxy.stats().cuts == 1
        assert cut.code == 4, cut.describe()
        line = assert_one_error_line(cut)
        assert "pack" in line and "again" in line, line  # cut inside the pack; says to rerun
        assert current_version(store) == want_version
        if case == "first-sync":
            res = checkout(store, BUNDLE, tmp_path / "out-cut")
            assert res.code == 6 and "not in" in assert_one_error_line(res), res.describe()
            assert not (tmp_path / "out-cut").exists()
        else:
            assert_same_tree(old, checkout_ok(store, BUNDLE, tmp_path / "out-cut"))

        proxy.reset()
        again = sync_json(proxy.url, BUNDLE, store)
        assert again["changed"] and again["version"] == full["version"]
        assert 0 < again["chunks_downloaded"] < full["chunks_downloaded"], (full, again)
        # Every complete frame that arrived before the cut was kept: the resume fetches at most
        # what was not received yet, plus one partly received object.
        assert again["bytes_downloaded"] <= full["bytes_downloaded"] - received + CUT_SLACK, (
            full,
            again,
            received,
        )
        assert again["bytes_downloaded"] < full["bytes_downloaded"]
    assert_same_tree(new, checkout_ok(store, BUNDLE, tmp_path / "out"))


# -- c. hostile and negative cases -----------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SatchelServer, Path]]:
    """Server A with the course published once; yields (server, source tree)."""
    base = tmp_path_factory.mktemp("site")
    tree = make_tree(base / "tree")
    with SatchelServer(base / "srv-a") as srv:
        assert published_version(publish(srv.url, srv.token("teacher"), tree, BUNDLE)) == 1
        yield srv, tree


@pytest.fixture
def synced(site: tuple[SatchelServer, Path], tmp_path: Path) -> Path:
    srv, _tree = site
    store = tmp_path / "store"
    assert sync_json(srv.url, BUNDLE, store)["version"] == 1
    return store


def assert_store_intact(store: Path, tree: Path, where: Path) -> None:
    assert current_version(store) == 1
    assert_same_tree(tree, checkout_ok(store, BUNDLE, where))


def test_publish_with_bad_token_is_refused(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    srv, tree = site
    edited = edited_copy(tree, tmp_path / "edited")
    res = publish(srv.url, "sat_not-a-real-token", edited, BUNDLE)
    line = assert_one_error_line(res)
    assert "401" in line and "token" in line, line
    assert res.stdout == ""
    catalog = httpx.get(f"{srv.url}/v1/catalog", timeout=10).json()
    [entry] = [b for b in catalog["bundles"] if b["bundle"] == BUNDLE]
    assert entry["latest_version"] == 1
    assert sync_json(srv.url, BUNDLE, synced)["changed"] is False
    assert_store_intact(synced, tree, tmp_path / "out")


def test_sync_of_unknown_bundle(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    srv, tree = site
    res = sync(srv.url, "no-such-bundle", synced)
    line = assert_one_error_line(res)
    assert "no-such-bundle" in line and "not published" in line, line
    assert res.stdout == ""
    assert_store_intact(synced, tree, tmp_path / "out")


def test_sync_with_wrong_trusted_fingerprint(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    srv, tree = site
    res = sync(srv.url, BUNDLE, synced, "--trust", ZERO_FINGERPRINT)
    assert res.code == 3, res.describe()
    assert "trusted key" in assert_one_error_line(res)
    assert_store_intact(synced, tree, tmp_path / "out")

    fresh = tmp_path / "fresh"
    res = sync(srv.url, BUNDLE, fresh, "--trust", ZERO_FINGERPRINT)
    assert res.code == 3, res.describe()
    assert_one_error_line(res)
    assert not (fresh / "trust.json").exists(), "a refused key must not be pinned"
    assert current_version(fresh) is None
    # The right fingerprint, in the form the server prints it, is accepted.
    ok = sync_json(srv.url, BUNDLE, fresh, "--trust", srv.fingerprint())
    assert ok["version"] == 1


def test_other_server_key_is_refused(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    _srv, tree = site
    other = edited_copy(tree, tmp_path / "other")
    with SatchelServer(tmp_path / "srv-b") as b:
        token = b.token("teacher")
        assert published_version(publish(b.url, token, other, BUNDLE)) == 1
        # A higher version than the store holds: only the key can be the reason to refuse.
        assert published_version(publish(b.url, token, other / "lessons", BUNDLE)) == 2
        res = sync(b.url, BUNDLE, synced)
        assert res.code == 3, res.describe()
        assert "key" in assert_one_error_line(res)
    assert_store_intact(synced, tree, tmp_path / "out")


def test_same_key_rollback_is_refused(tmp_path: Path) -> None:
    """A mirror signed with the publisher's own key but holding an older version."""
    key = tmp_path / "shared-key.pem"
    assert run_cli("keygen", "--out", key).code == 0
    v1 = make_tree(tmp_path / "v1")
    v2 = edited_copy(v1, tmp_path / "v2")
    store = tmp_path / "store"
    with SatchelServer(tmp_path / "srv-a", extra=("--signing-key", str(key))) as a:
        token = a.token("admin")
        assert published_version(publish(a.url, token, v1, BUNDLE)) == 1
        assert published_version(publish(a.url, token, v2, BUNDLE)) == 2
        assert sync_json(a.url, BUNDLE, store)["version"] == 2
    with SatchelServer(tmp_path / "srv-b", extra=("--signing-key", str(key))) as b:
        assert published_version(publish(b.url, b.token("admin"), v1, BUNDLE)) == 1
        res = sync(b.url, BUNDLE, store)
        assert res.code == 3, res.describe()
        assert "rollback" in assert_one_error_line(res)
    assert current_version(store) == 2
    assert_same_tree(v2, checkout_ok(store, BUNDLE, tmp_path / "out"))


def test_server_down_is_a_link_error(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    _srv, tree = site
    url = f"http://127.0.0.1:{free_port()}"
    res = sync(url, BUNDLE, synced)  # nothing listens there
    assert res.code == 4, res.describe()
    # Nothing answered: not a cut to resume, but perhaps a wrong URL or a server not started.
    line = assert_one_error_line(res)
    assert f"is a Satchel server running at {url}?" in line and "resume" not in line
    assert_store_intact(synced, tree, tmp_path / "out")


def test_token_for_another_bundle_is_forbidden(
    site: tuple[SatchelServer, Path], tmp_path: Path
) -> None:
    srv, tree = site
    token = srv.token("teacher", "--bundle", "another-course")
    line = assert_one_error_line(publish(srv.url, token, tree, BUNDLE))
    assert "403" in line, line


def test_non_satchel_server_is_refused(
    synced: Path, site: tuple[SatchelServer, Path], tmp_path: Path
) -> None:
    """Something else answers on the address (a captive portal, a wrong port): HTML, 200."""

    class Portal(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Please log in to the school Wi-Fi</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    portal = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    thread = threading.Thread(target=portal.serve_forever, daemon=True)
    thread.start()
    try:
        res = sync(f"http://127.0.0.1:{portal.server_address[1]}", BUNDLE, synced)
    finally:
        portal.shutdown()
        portal.server_close()
    assert res.code == 3, res.describe()
    assert_one_error_line(res)
    assert_store_intact(synced, site[1], tmp_path / "out")


# -- bugs found by this file (all fixed since): kept as regression tests ---------------------------
@pytest.mark.parametrize("command", ["sync", "publish"])
def test_server_url_without_scheme_is_a_usage_error(
    site: tuple[SatchelServer, Path], tmp_path: Path, command: str
) -> None:
    """Found here as a bug (a Python traceback and exit 1: HttpClient raised outside
    cli.run()); fixed since."""
    srv, tree = site
    address = srv.url.removeprefix("http://")
    if command == "sync":
        res = sync(address, BUNDLE, tmp_path / "store")
    else:
        res = publish(address, srv.token("teacher"), tree, BUNDLE)
    assert "Traceback" not in res.stderr, res.describe()
    assert res.code == 2, res.describe()
    assert "http://" in assert_one_error_line(res)


def rotated_server(base: Path, trees: list[Path]) -> SatchelServer:
    """A started server with another key, holding ``trees`` as versions 1, 2, ..."""
    b = SatchelServer(base).start()
    try:
        token = b.token("teacher")
        for number, tree in enumerate(trees, start=1):
            assert published_version(publish(b.url, token, tree, BUNDLE)) == number
    except BaseException:
        b.stop()
        raise
    return b


def test_key_rotation_needs_and_accepts_trust(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    """The publisher moved to a new key (and a newer version): the advice can be followed."""
    _srv, tree = site
    newer = edited_copy(tree, tmp_path / "newer")
    with rotated_server(tmp_path / "srv-b", [tree, newer]) as b:
        refused = sync(b.url, BUNDLE, synced)
        assert refused.code == 3, refused.describe()
        assert "--trust" in assert_one_error_line(refused)
        assert current_version(synced) == 1
        new_key = b.fingerprint()
        res = sync(b.url, BUNDLE, synced, "--trust", new_key, "--json")
    assert res.code == 0, res.describe()
    assert f"trusting publisher key {new_key} (key changed, as --trust asked)" in res.stderr
    accepted = json.loads(res.stdout)
    assert (accepted["version"], accepted["previous_version"]) == (2, 1)
    assert_same_tree(newer, checkout_ok(synced, BUNDLE, tmp_path / "out"))


def test_refused_key_rotation_leaves_the_store_intact(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    """Found here as a bug (the refused sync had already replaced the pinned key, so checkout of
    the version on the laptop and plain syncs from the original server failed); fixed since."""
    srv, tree = site
    other = edited_copy(tree, tmp_path / "other")
    # Server B's version 1 is other content than the store's version 1: refused (equivocation).
    with rotated_server(tmp_path / "srv-b", [other]) as b:
        refused = sync(b.url, BUNDLE, synced, "--trust", b.fingerprint())
    assert refused.code == 3, refused.describe()
    assert "nothing stored was changed" in refused.stderr
    assert current_version(synced) == 1
    res = checkout(synced, BUNDLE, tmp_path / "out")
    assert res.code == 0, res.describe()
    assert_same_tree(tree, tmp_path / "out")
    assert sync(srv.url, BUNDLE, synced).code == 0


def test_old_versions_stay_readable_after_key_rotation(
    site: tuple[SatchelServer, Path], synced: Path, tmp_path: Path
) -> None:
    """Found here as a bug (versions the old key signed could no longer be checked out after a
    rotation accepted with --trust, though the ref still listed them); fixed since."""
    _srv, tree = site
    newer = edited_copy(tree, tmp_path / "newer")
    with rotated_server(tmp_path / "srv-b", [tree, newer]) as b:
        sync_json(b.url, BUNDLE, synced, "--trust", b.fingerprint())
    res = checkout(synced, BUNDLE, tmp_path / "old", "--version", 1)
    assert res.code == 0, res.describe()
    assert_same_tree(tree, tmp_path / "old")


def test_first_use_pin_is_announced_even_after_a_cut(server: SatchelServer, tmp_path: Path) -> None:
    """Found here as a bug (a first sync cut after the index pinned the key silently: neither
    that run nor the rerun printed the notice); fixed since by announcing the pin at once."""
    tree = make_tree(tmp_path / "tree")
    assert published_version(publish(server.url, server.token("teacher"), tree, BUNDLE)) == 1
    store = tmp_path / "store"
    with LoopbackProxy("127.0.0.1", server.port) as proxy:
        proxy.cut_down_after(3000)  # inside the manifest or the pack, after the index
        cut = sync(proxy.url, BUNDLE, store, "--retries", 0)
        assert cut.code == 4, cut.describe()
        assert_one_error_line(cut)
        again = sync(proxy.url, BUNDLE, store)
    assert again.code == 0, again.describe()
    notices = TRUST_NOTICE.findall(cut.stderr + again.stderr)
    assert len(notices) == 1, (cut.describe(), again.describe())


# -- d. the real corpus ----------------------------------------------------------------------------
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "intro-stats" / "v3").is_dir(),
    reason=f"shared corpus not found at {CORPUS} (needs intro-stats/v2 and v3)",
)


@pytest.mark.corpus
@needs_corpus
def test_corpus_intro_stats_v2_to_v3_on_the_wire(
    tmp_path: Path, server: SatchelServer, record_property: pytest.RecordProperty
) -> None:
    from harness.bench import tar_zstd_size

    v2, v3 = CORPUS / "intro-stats" / "v2", CORPUS / "intro-stats" / "v3"
    store = tmp_path / "store"
    with ThreadPoolExecutor(1) as pool:
        baseline = pool.submit(tar_zstd_size, v2, 19)  # ~10 s; overlaps the rest
        token = server.token("teacher")
        assert published_version(publish(server.url, token, v2, "intro-stats")) == 1
        with LoopbackProxy("127.0.0.1", server.port) as proxy:
            first = sync_json(proxy.url, "intro-stats", store)
            first_wire = proxy.stats()
            assert first["version"] == 1
            assert_same_tree(v2, checkout_ok(store, "intro-stats", tmp_path / "out-v2"))

            proxy.reset()
            res = publish(proxy.url, token, v3, "intro-stats")
            assert published_version(res) == 2
            publish_wire = proxy.stats()
            record_property("publish_v3_bytes_up", publish_wire.bytes_up)
            # Less than a file-level sync would ship (the 11 changed modules: 810,581 bytes),
            # let alone the 22 MB book.
            assert publish_wire.bytes_up < 810_581, publish_wire

            proxy.reset()
            second = sync_json(proxy.url, "intro-stats", store)
            update_wire = proxy.stats()
            assert (second["version"], second["previous_version"]) == (2, 1)
            assert update_wire.requests <= 3, update_wire.request_lines
            assert update_wire.bytes_down <= 250_000, update_wire  # issue 2's budget
            # Issue 3's: within 3x the `zstd -19 --long --patch-from` floor of the whole tree,
            # 3,477 bytes as measured on this project's machines (bench/compare.py measures it
            # again in each run); the wire count includes HTTP heads both ways.
            record_property("update_v2_v3_wire", update_wire.bytes_down + update_wire.bytes_up)
            assert update_wire.bytes_down + update_wire.bytes_up <= 3 * 3_477, update_wire
            assert_same_tree(v3, checkout_ok(store, "intro-stats", tmp_path / "out-v3"))

            proxy.reset()
            third = sync_json(proxy.url, "intro-stats", store)
            noop_wire = proxy.stats()
            assert third["changed"] is False
            assert noop_wire.requests == 1, noop_wire.request_lines
            assert noop_wire.bytes_down + noop_wire.bytes_up < 2000, noop_wire
        base = baseline.result()
    record_property("first_sync_bytes_down", first_wire.bytes_down)
    record_property("tar_zstd19_v2", base)
    assert first_wire.bytes_down <= 1.03 * base, (first_wire.bytes_down, base)


def test_serve_refuses_more_static_deltas_than_an_index_lists(tmp_path: Path) -> None:
    res = run_cli("serve", "--data", tmp_path / "srv", "--static-deltas", 17, timeout=60)
    assert res.code == 2, res.describe()
    assert "0..16" in assert_one_error_line(res)
