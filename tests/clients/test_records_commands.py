"""The records commands against hostile and mistaken input: each fails with one line and the
exit code of its error, and writes nothing it should not (class, device, learner, join,
progress, report, export and import of records)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from satchel.cli import app
from satchel.content.joincode import generate_join_code, is_join_code
from satchel.server.repository import Repository
from satchel.sync.outbox import PROGRESS_FILE
from satchel.sync.store import MemoryChunkStore
from typer.testing import CliRunner

runner = CliRunner()


def cli(*args: object) -> tuple[int, str, str]:
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    Repository(tmp_path / "srv", store=MemoryChunkStore())  # what 'serve' makes on its first start
    return tmp_path / "srv"


def test_class_create_prints_only_a_code_and_refuses_bad_names(data: Path) -> None:
    code, out, _ = cli("class", "create", "--data", data, "--bundle", "intro-stats", "--name", "5B")
    assert code == 0 and is_join_code(out.strip()) and out.count("\n") == 1
    listed = json.loads(
        cli("class", "list", "--data", data, "--bundle", "intro-stats", "--json")[1]
    )
    assert [c["code"] for c in listed] == [out.strip()]
    for bad in (["--bundle", "../etc", "--name", "x"], ["--bundle", "ok", "--name", "   "],
                ["--bundle", "ok", "--locale", "not a locale", "--name", "x"]):  # fmt: skip
        code, out, err = cli("class", "create", "--data", data, *bad)
        assert code == 2 and out == "" and err.startswith("error: ")


def test_revoking_what_never_reported_is_refused_with_a_reason(data: Path) -> None:
    cli("class", "create", "--data", data, "--bundle", "b", "--name", "x")
    assert cli("device", "revoke", "../../etc", "--data", data, "--reason", "x")[0] == 3
    code, _, err = cli("device", "revoke", "a" * 64, "--data", data, "--reason", "lost")
    assert code == 6 and "no device" in err  # not found
    code, _, err = cli("learner", "revoke", "0" * 26, "--data", data, "--reason", "left")
    assert code == 6 and "no learner" in err
    assert cli("learner", "revoke", "x" * 26, "--data", data, "--reason", "left")[0] == 3
    assert json.loads(cli("device", "list", "--data", data, "--bundle", "b", "--json")[1]) == []


def test_join_is_offline_catches_typos_and_writes_nothing_on_refusal(tmp_path: Path) -> None:
    store, good = tmp_path / "laptop", generate_join_code()
    typo = good[:-1] + ("0" if good[-1] != "0" else "1")
    code, _, err = cli(
        "join", "--store", store, "--code", typo, "--learner", "Ana", "--bundle", "b"
    )
    assert code == 2 and "typo" in err
    assert cli("join", "--store", store, "--code", good, "--learner", " ", "--bundle", "b")[0] == 2
    code, _, err = cli("join", "--store", store, "--code", good, "--learner", "Ana")
    assert code == 2 and "--bundle" in err  # an empty store names no bundle
    assert not (store / PROGRESS_FILE).exists() and not (store / "device-key.pem").exists()
    first = cli("join", "--store", store, "--code", good, "--learner", "Ana", "--bundle", "b")
    again = cli("join", "--store", store, "--code", good.lower(), "--learner", "Ana",
                "--bundle", "b")  # fmt: skip
    assert first[0] == 0 and first[1] == again[1] and len(first[1].strip()) == 26
    assert (store / "device-key.pem").stat().st_mode & 0o077 == 0
    shown = json.loads(cli("progress", "--store", store, "--json")[1])
    assert [x["name"] for x in shown["learners"]] == ["Ana"] and shown["pending"] == 0


def test_progress_of_a_store_that_records_nothing_creates_nothing(tmp_path: Path) -> None:
    code, out, _ = cli("progress", "--store", tmp_path / "empty")
    assert code == 0 and "nothing recorded" in out
    assert json.loads(cli("progress", "--store", tmp_path / "empty", "--json")[1])["device"] is None
    assert not (tmp_path / "empty" / "device-key.pem").exists()


def test_report_refuses_mixed_formats_and_says_when_the_server_is_away(tmp_path: Path) -> None:
    base = ["report", "--server", "http://127.0.0.1:9", "--token", "t", "--bundle", "b"]
    assert cli(*base, "--json", "--csv")[0] == 2
    assert cli(*base[:-1], "../x")[0] == 2
    code, _, err = cli(*base)
    assert code == 4 and err.startswith("error: ")


def test_export_and_import_of_records_refuse_hostile_sticks(tmp_path: Path) -> None:
    store = tmp_path / "laptop"
    code, _, err = cli("export", "--store", store, "--to", tmp_path / "stick")
    assert code == 2 and "not a Satchel store" in err
    stick = tmp_path / "hostile"
    stick.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, stick / "records")  # a link where the records folder should be
    code, _, err = cli("import", stick, "--store", store)
    assert code == 3 and "link" in err
    (stick / "records").unlink()
    (stick / "records").mkdir()
    (stick / "records" / ("0" * 64 + ".sealed")).write_bytes(b"SATSEAL\x01" + bytes(100))
    code, _, err = cli("import", stick, "--store", store)
    assert code == 0 and "refused" in err  # named, skipped; nothing else lost
    assert not (store / "inbox" / "records").exists() or not any(
        (store / "inbox" / "records").iterdir()
    )


def test_the_report_summary_counts_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    from satchel.clients.commands.records import _print_report

    _print_report({"bundle": "b", "locale": "en", "classes": [{}], "learners": []})
    _print_report({"bundle": "b", "locale": "en", "classes": [{}, {}], "learners": [{}]})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "b/en: 1 class, 0 learners"
    assert lines[1] == "b/en: 2 classes, 1 learner"


def test_sync_json_says_none_pending_when_nothing_was_to_send() -> None:
    from satchel.clients.commands.records import RecordsOutcome

    assert RecordsOutcome(None, "").fields()["progress_pending"] == 0
    failed = RecordsOutcome(None, "link failed").fields()
    assert failed["progress_pending"] is None and failed["progress_error"] == "link failed"
