"""A newcomer's first hour, as real ``satchel`` processes: the rough edges a new teacher,
student or operator hit, each with the behaviour that replaced it.

Every exit code of the table (content/errors.py EXIT_CODES) is produced here by a real
command: 0, 2, 3, 4, 5, 6, 7, 8 and 130 (1 is "anything else").
"""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.content.errors import EXIT_CODES

from harness.e2e import (
    SATCHEL,
    SatchelServer,
    _env,
    assert_same_tree,
    checkout_ok,
    publish,
    run_cli,
    sync_json,
)
from harness.repo import write_tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SatchelServer, str, Path]]:
    """A server with two bundles; (server, teacher token, folder of course-a's tree)."""
    root = tmp_path_factory.mktemp("first-hour")
    with SatchelServer(root / "data") as srv:
        token = srv.token("teacher", "--label", "Ana, grade 5")
        rng = random.Random(15)
        a = write_tree(root / "a", {"one.md": b"# One\n", "big.bin": rng.randbytes(600_000)})
        b = write_tree(root / "b", {"two.md": b"# Two\n"})
        for tree, bundle in ((a, "course-a"), (b, "course-b")):
            res = publish(srv.url, token, tree, bundle)
            assert res.code == 0, res.describe()
        yield srv, token, a


def one_error(res: object) -> str:
    lines = res.error_lines()  # type: ignore[attr-defined]
    assert len(lines) == 1, res.describe()  # type: ignore[attr-defined]
    return str(lines[0])


# -- 1. a server's data folder --------------------------------------------------------------
def test_token_commands_refuse_a_folder_that_is_not_a_servers(
    site: tuple[SatchelServer, str, Path], tmp_path: Path
) -> None:
    srv, _token, _a = site
    typo = tmp_path / "satchel-dat"
    for args in (
        ("token", "create", "--data", typo, "--role", "teacher"),
        ("token", "list", "--data", typo),
        ("token", "revoke", "1", "--data", typo),
        ("fsck", "--data", typo),
        ("token", "create", "--data", tmp_path / "no" / "such" / "x", "--role", "teacher"),
    ):
        res = run_cli(*args)
        assert res.code == 2, res.describe()
        assert "not a server data folder" in one_error(res) and "satchel.db" in res.stderr
    assert not typo.exists() and not (tmp_path / "no").exists()  # nothing was created
    # An existing folder that is not a server's is refused the same way, and left alone.
    typo.mkdir()
    assert run_cli("token", "create", "--data", typo, "--role", "teacher").code == 2
    assert list(typo.iterdir()) == []
    # The real one works.
    assert run_cli("token", "list", "--data", srv.data).code == 0


def test_a_database_url_is_checked_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    res = run_cli(
        "token",
        "create",
        "--data",
        tmp_path / "d",
        "--database-url",
        f"sqlite:///{missing}",
        "--role",
        "admin",
    )
    assert res.code == 2 and "does not exist" in one_error(res), res.describe()
    assert not missing.exists() and not (tmp_path / "d").exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    res = run_cli(
        "token",
        "create",
        "--data",
        tmp_path / "d",
        "--database-url",
        f"sqlite:///{other}",
        "--role",
        "admin",
    )
    assert res.code == 2 and "not Satchel's" in one_error(res), res.describe()
    # An empty database made for Satchel (replicas' tokens come before their first start).
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    res = run_cli(
        "token",
        "create",
        "--data",
        tmp_path / "d",
        "--database-url",
        f"sqlite:///{empty}",
        "--role",
        "admin",
    )
    assert res.code == 0 and res.stdout.startswith("sat_"), res.describe()
    assert not (tmp_path / "d").exists()  # the database is elsewhere: no folder is made


# -- 3. one exit code for each kind of failure --------------------------------------------
def test_every_kind_of_failure_has_its_code(
    site: tuple[SatchelServer, str, Path], tmp_path: Path
) -> None:
    srv, _token, a = site
    store = tmp_path / "store"
    seen: dict[int, str] = {}

    def expect(code: int, *args: object) -> str:
        res = run_cli(*args)
        assert res.code == code, res.describe()
        seen[code] = " ".join(str(x) for x in args[:2])
        return one_error(res) if code not in (0, 5) else res.stderr

    expect(0, "sync", "--server", srv.url, "--bundle", "course-b", "--store", store)
    expect(2, "sync", "--server", srv.url, "--store", store, "--only", "x", "--all")
    fake = "ab" * 32
    line = expect(
        3,
        "sync",
        "--server",
        srv.url,
        "--bundle",
        "course-b",
        "--store",
        tmp_path / "s3",
        "--trust",
        fake,
    )
    assert "trusted key" in line
    line = expect(
        4,
        "sync",
        "--server",
        f"http://127.0.0.1:{unused_port()}",
        "--bundle",
        "course-b",
        "--store",
        store,
        "--retries",
        "0",
    )
    assert "is a Satchel server running at" in line and "resume" not in line
    expect(
        5,
        "sync",
        "--server",
        srv.url,
        "--bundle",
        "course-a",
        "--store",
        tmp_path / "s5",
        "--max-bytes",
        "1k",
    )
    line = expect(6, "sync", "--server", srv.url, "--bundle", "nope", "--store", store)
    assert "not published here" in line
    expect(
        6,
        "checkout",
        "--store",
        store,
        "--bundle",
        "course-b",
        "--version",
        "9",
        "--to",
        tmp_path / "out",
    )
    with listening() as port:
        line = expect(7, "view", "--store", store, "--port", port)
        assert "--port" in line
    line = expect(8, "publish", a, "--server", srv.url, "--token", "sat_wrong", "--bundle", "x")
    assert "unknown or revoked" in line
    assert set(seen) | {1, 130} == set(EXIT_CODES)  # 130: test_ctrl_c_...; 1: anything else


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class listening:
    """A port another program holds, for as long as the block runs."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.parametrize("command", ["serve", "share", "view"])
def test_a_busy_port_fails_before_announcing_with_a_hint(
    site: tuple[SatchelServer, str, Path], tmp_path: Path, command: str
) -> None:
    srv, _token, _a = site
    store = tmp_path / "store"
    sync_json(srv.url, "course-b", store)
    where = {
        "serve": ("--data", tmp_path / "new-data"),
        "share": ("--store", store, "--no-announce", "--host", "127.0.0.1"),
        "view": ("--store", store),
    }[command]
    with listening() as port:
        res = run_cli(command, *where, "--port", port, timeout=60)
    assert res.code == 7, res.describe()  # a machine matter, not "verification" (3)
    line = one_error(res)  # nothing announced: no "serving ... on", no "viewing"
    assert f"port {port}" in line and "in use" in line and "--port" in line
    assert "serving" not in res.stderr and "published" not in res.stderr


# -- 7. interrupted and failed syncs --------------------------------------------------------
def test_ctrl_c_says_how_to_resume_and_the_store_stays_sound(
    site: tuple[SatchelServer, str, Path], tmp_path: Path
) -> None:
    srv, _token, a = site
    store = tmp_path / "store"
    args = ["sync", "--server", srv.url, "--bundle", "course-a", "--store", str(store)]
    proc = subprocess.Popen(
        [str(SATCHEL), *args, "--rate-limit", "100k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=_env(),
        text=True,
        # Ctrl-C as a terminal delivers it: a process inherits an ignored SIGINT (this worker's,
        # once a library an earlier test drove ignored it; a shell's background job), and
        # Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    began = time.monotonic()
    deadline = began + 60
    while time.monotonic() < deadline and not list((store / "objects").glob("??/*")):
        time.sleep(0.05)  # until the pack's first objects are stored (objects/ab/abcd...)
    first = time.monotonic() - began
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic() - began
    out, errs = proc.communicate(timeout=60)
    when = f"first object seen at {first:.2f} s, signal at {signalled:.2f} s"
    assert proc.returncode == 130, (when, out, errs)
    assert errs.strip().splitlines()[-1] == "interrupted; run the same command to resume"
    fsck = run_cli("fsck", "--store", store)
    assert fsck.code == 0, fsck.describe()  # every object kept is whole and verified
    status = run_cli("status", "--store", store)
    assert status.code == 0 and "objects here" in status.stdout, status.describe()
    again = run_cli(*args, "--json")
    assert again.code == 0, again.describe()
    assert json.loads(again.stdout)["version"] == 1
    assert_same_tree(a, checkout_ok(store, "course-a", tmp_path / "out"))


def test_a_first_sync_that_reaches_nothing_leaves_no_folder(
    site: tuple[SatchelServer, str, Path], tmp_path: Path
) -> None:
    srv, _token, _a = site
    nowhere = f"http://127.0.0.1:{unused_port()}"
    fresh = tmp_path / "fresh"
    res = run_cli(
        "sync", "--server", nowhere, "--bundle", "course-b", "--store", fresh, "--retries", "0"
    )
    assert res.code == 4 and not fresh.exists(), res.describe()
    res = run_cli("sync", "--server", srv.url, "--bundle", "nope", "--store", fresh)
    assert res.code == 6 and not fresh.exists(), res.describe()
    # A store that was there before is never removed, whatever fails.
    kept = tmp_path / "kept"
    sync_json(srv.url, "course-b", kept)
    res = run_cli(
        "sync", "--server", nowhere, "--bundle", "course-b", "--store", kept, "--retries", "0"
    )
    assert res.code == 4 and (kept / "satchel.json").is_file()


# -- 11 and 12. every line at once; what a dry run says ----------------------------------------
def test_sync_without_bundle_updates_every_line_held(
    site: tuple[SatchelServer, str, Path], tmp_path: Path
) -> None:
    srv, _token, _a = site
    store = tmp_path / "store"
    for bundle in ("course-a", "course-b"):
        sync_json(srv.url, bundle, store)
    res = run_cli("sync", "--server", srv.url, "--store", store, "--json")
    assert res.code == 0, res.describe()
    doc = json.loads(res.stdout)
    assert [(x["bundle"], x["locale"], x["changed"]) for x in doc["lines"]] == [
        ("course-a", "en", False),
        ("course-b", "en", False),
    ]
    assert doc["complete"] is True and doc["requests"] == 2
    assert {"bytes_downloaded", "seconds"} <= set(doc)
    text = run_cli("sync", "--server", srv.url, "--store", store)
    assert text.code == 0 and "2 lines: 0 updated, 2 current" in text.stderr, text.describe()
    # --only selects files of one bundle.
    assert run_cli("sync", "--server", srv.url, "--store", store, "--only", "x").code == 2
    # A store that holds nothing yet says to name a bundle.
    empty = run_cli("sync", "--server", srv.url, "--store", tmp_path / "none")
    assert empty.code == 2 and "--bundle" in one_error(empty)
    assert not (tmp_path / "none").exists()


def test_a_dry_run_says_what_the_sync_costs_in_all(
    site: tuple[SatchelServer, str, Path], tmp_path: Path
) -> None:
    srv, _token, _a = site
    store = tmp_path / "store"
    args = ("sync", "--server", srv.url, "--bundle", "course-b", "--store", store, "--dry-run")
    res = run_cli(*args)
    assert res.code == 0, res.describe()
    pack = int(res.stdout)
    assert "not counted" not in res.stderr
    assert f"a sync downloads {pack:,} bytes" in res.stderr and "in all" in res.stderr
    doc = json.loads(run_cli(*args, "--json").stdout)
    assert doc["sync_bytes"] == doc["index_manifest_bytes"] + doc["bytes_to_download"]
    real = sync_json(srv.url, "course-b", store)
    # What the dry run fetched (index, manifest) is kept: the sync pays the pack and a 304.
    assert real["pack_bytes"] == pack
