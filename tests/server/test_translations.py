"""The translation report: each file of a locale variant against its base line.

Rule under test: a path in both the variant and the latest base is ``stale`` when the base's
file changed between the version the variant was made from and the latest (or did not exist
then), and ``up-to-date`` otherwise, whether or not the variant's bytes differ from the
base's (a translated file differs on purpose). ``missing``: only in the latest base;
``extra``: only in the variant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from satchel.clients.http import HttpClient
from satchel.content.errors import ContentError, NotFoundError, UsageError
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync.store import MemoryChunkStore

from harness.http import TestClient


def write(root: Path, files: dict[str, bytes]) -> Path:
    for old in sorted(root.rglob("*"), reverse=True) if root.exists() else []:
        if old.is_file():
            old.unlink()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(tmp_path / "srv", store=MemoryChunkStore())


@pytest.fixture
def client(repo: Repository) -> Iterator[TestClient]:
    with TestClient(create_app(repo), raise_server_exceptions=False) as c:
        yield c


BASE_V1 = {
    "same.html": b"unchanged in en",
    "translated.html": b"English text",
    "changed.html": b"English, first edition",
    "changed-translated.html": b"English, first edition too",
    "removed.html": b"English page later removed",
    "media/shared.png": b"PNG shared",
    "media/replaced.png": b"PNG old",
}
BASE_V2 = {
    **{k: v for k, v in BASE_V1.items() if k != "removed.html"},
    "changed.html": b"English, second edition",
    "changed-translated.html": b"English, second edition too",
    "media/replaced.png": b"PNG new",
    "added.html": b"a new English page",
    "late.html": b"the base gained this after the variant was made",
}
VARIANT = {
    "same.html": b"unchanged in en",  # a copy of the base file
    "translated.html": b"Texto en espa\xc3\xb1ol",  # translated, base did not change
    "changed.html": b"English, first edition",  # copy, base changed since
    "changed-translated.html": b"Espa\xc3\xb1ol, primera",  # translated, base changed since
    "removed.html": b"P\xc3\xa1gina",  # the base removed it
    "media/shared.png": b"PNG shared",
    "media/replaced.png": b"PNG old",
    "late.html": b"P\xc3\xa1gina temprana",  # the variant had it before the base did
    "only-es.html": b"notas locales",
}
EXPECTED = {
    "added.html": "missing",
    "changed-translated.html": "stale",
    "changed.html": "stale",
    "late.html": "stale",
    "media/replaced.png": "stale",
    "media/shared.png": "up-to-date",
    "only-es.html": "extra",
    "removed.html": "extra",
    "same.html": "up-to-date",
    "translated.html": "up-to-date",
}


def publish_all(repo: Repository, tmp_path: Path) -> None:
    en, es = tmp_path / "en", tmp_path / "es"
    repo.publishing.publish_folder(write(en, BASE_V1), bundle="course", locale="en", title="Course")
    repo.publishing.publish_folder(
        write(es, VARIANT), bundle="course", locale="es", title="Curso", from_locale="en"
    )
    repo.publishing.publish_folder(write(en, BASE_V2), bundle="course", locale="en", title="Course")


def test_each_state_by_the_rule(repo: Repository, tmp_path: Path) -> None:
    publish_all(repo, tmp_path)
    report = repo.reads.translation_report("course", "es")
    assert {f.path: f.state for f in report.files} == EXPECTED
    assert [f.path for f in report.files] == sorted(EXPECTED)
    assert report.counts == {"up-to-date": 3, "stale": 4, "missing": 1, "extra": 2}
    shown = asdict(report)
    assert {k: shown[k] for k in shown if k not in ("files", "counts")} == {
        "bundle": "course",
        "locale": "es",
        "version": 1,
        "base_locale": "en",
        "base_version": 1,
        "latest_base_version": 2,
    }


def test_before_the_base_moves_nothing_is_stale(repo: Repository, tmp_path: Path) -> None:
    en, es = tmp_path / "en", tmp_path / "es"
    repo.publishing.publish_folder(write(en, BASE_V1), bundle="course", locale="en", title="Course")
    repo.publishing.publish_folder(
        write(es, VARIANT), bundle="course", locale="es", title="Curso", from_locale="en"
    )
    states = {f.path: f.state for f in repo.reads.translation_report("course", "es").files}
    assert "stale" not in states.values() and "missing" not in states.values()
    assert states["late.html"] == "extra" and states["removed.html"] == "up-to-date"


def test_catching_up_clears_stale_files(repo: Repository, tmp_path: Path) -> None:
    publish_all(repo, tmp_path)
    es = tmp_path / "es"
    # Republishing without saying so keeps the old base version: stale files stay stale.
    repo.publishing.publish_folder(
        es, bundle="course", locale="es", title="Curso", from_locale="en"
    )
    assert repo.reads.translation_report("course", "es").counts["stale"] == 4
    caught_up = {**VARIANT, "added.html": b"nueva"}
    del caught_up["removed.html"]
    repo.publishing.publish_folder(
        write(es, caught_up),
        bundle="course",
        locale="es",
        title="Curso",
        from_locale="en",
        base_version=2,
    )
    report = repo.reads.translation_report("course", "es")
    assert report.counts == {"up-to-date": 8, "stale": 0, "missing": 0, "extra": 1}
    assert (report.version, report.base_version) == (3, 2)


def test_translations_over_http_and_through_the_client(
    repo: Repository, client: TestClient, tmp_path: Path
) -> None:
    publish_all(repo, tmp_path)
    r = client.get("/v1/translations/course/es")
    assert r.status_code == 200
    report = asdict(repo.reads.translation_report("course", "es"))
    assert r.json() == json.loads(json.dumps(report))
    with HttpClient("http://testserver", transport=client._transport) as hc:
        assert hc.translations("course", "es") == r.json()
        with pytest.raises(NotFoundError, match="not a locale variant"):
            hc.translations("course", "en")
    for path, status in [
        ("/v1/translations/course/en", 404),  # a base line
        ("/v1/translations/course/fr", 404),
        ("/v1/translations/nothing/es", 404),
        ("/v1/translations/Course!/es", 400),
        ("/v1/translations/course/" + "e" * 300, 400),
    ]:
        got = client.get(path)
        assert got.status_code == status, (path, got.text)
        assert got.json()["error"]
    # Encoded slashes never reach the report: the router finds no such route.
    assert client.get("/v1/translations/..%2f..%2fetc/es").status_code == 404


def test_report_errors_in_process(repo: Repository) -> None:
    with pytest.raises(NotFoundError):
        repo.reads.translation_report("course", "es")
    with pytest.raises(UsageError):
        repo.reads.translation_report("../x", "es")


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"files": "all"}',
        b'{"files": [{"path": 1, "state": "stale"}]}',
        b'{"files": [["a", "stale"]]}',
        b"not json",
    ],
)
def test_client_refuses_a_malformed_report(body: bytes) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, content=body))
    with (
        HttpClient("http://mock", transport=transport) as hc,
        pytest.raises(ContentError),
    ):
        hc.translations("course", "es")


def test_cli_translations_refuses_bad_arguments_before_any_request() -> None:
    from harness.e2e import run_cli

    for args, code in [
        (("--server", "http://127.0.0.1:9", "--bundle", "BAD!", "--locale", "es"), 2),
        (("--server", "http://127.0.0.1:9", "--bundle", "course", "--locale", "../x"), 2),
        (("--server", "ftp://127.0.0.1", "--bundle", "course", "--locale", "es"), 2),
        (("--server", "http://127.0.0.1:9", "--bundle", "course"), 2),  # --locale is required
    ]:
        res = run_cli("translations", *args)
        assert res.code == code, res.describe()
        assert res.stdout == ""
