"""The web page's Class page: create a class and see its code, see progress and the most
missed questions, revoke with a reason (CSRF-protected), download CSV and xAPI; names are
escaped and curators see nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.content.batch import seal_batch
from satchel.content.signing import SigningKey
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.server.web import COOKIE, PAGE_CSP, csrf_token
from satchel.sync.store import MemoryChunkStore

from harness.http import TestClient
from harness.records import learner, record

ORIGIN = {"Origin": "http://testserver"}
PAGE = "/web/b/intro-stats/en/class"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(tmp_path / "srv", store=MemoryChunkStore())


@pytest.fixture
def client(repo: Repository) -> Iterator[TestClient]:
    with TestClient(create_app(repo), raise_server_exceptions=False) as c:
        yield c


def sign_in(client: TestClient, token: str) -> str:
    client.cookies.set(COOKIE, token, path="/web")
    return csrf_token(token)


def test_a_teacher_creates_a_class_sees_progress_and_revokes_a_laptop(
    client: TestClient, repo: Repository
) -> None:
    csrf = sign_in(client, repo.tokens.create("teacher", bundle="intro-stats", label="Olena"))
    r = client.post(PAGE, data={"name": "5B", "csrf": csrf}, headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303
    code = re.search(r"created=([0-9A-Z]{4}-[0-9A-Z]{4})", r.headers["location"])
    assert code is not None
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and page.headers["content-security-policy"] == PAGE_CSP
    assert code.group(1) in page.text and "satchel join" in page.text

    who = learner("<script>alert(1)</script>", code=code.group(1))
    device = SigningKey.generate()
    wrong = {"question": "q7", "correct": False, "score_milli": 0}
    recs = [record(1, who, "opened", lesson="ch1.md"), record(2, who, lesson="ch1.md", **wrong)]
    repo.records.deliver([seal_batch([who], recs, device, repo.records.records_key.public)])
    page = client.get(PAGE)
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert (
        "ch1.md" in page.text and "q7" in page.text and "Questions most often missed" in page.text
    )

    form = {"kind": "device", "id": device.public.keyid, "reason": "lost", "csrf": "forged"}
    forged = client.post(f"{PAGE}/revoke", data=form, headers=ORIGIN, follow_redirects=False)
    assert forged.status_code == 403
    form["csrf"] = csrf
    done = client.post(f"{PAGE}/revoke", data=form, headers=ORIGIN, follow_redirects=False)
    assert done.status_code == 303
    assert "revoked</span>: lost" in client.get(done.headers["location"]).text

    csv = client.get(f"{PAGE}/report.csv")
    assert csv.headers["content-disposition"].endswith('.csv"')
    assert "q7" in csv.text and csv.text.startswith("learner,")
    xapi = client.get(f"{PAGE}/xapi.json")
    assert xapi.status_code == 200 and len(xapi.json()) == 2


def test_curators_and_other_teachers_are_refused_and_nothing_is_made(
    client: TestClient, repo: Repository
) -> None:
    for token in (
        repo.tokens.create("curator", bundle="intro-stats", locale="en"),
        repo.tokens.create("teacher", bundle="other"),
    ):
        csrf = sign_in(client, token)
        assert client.get(PAGE).status_code == 403
        r = client.post(PAGE, data={"name": "x", "csrf": csrf}, headers=ORIGIN)
        assert r.status_code == 403
    assert (
        repo.reports.report(
            repo.tokens.authenticate(repo.tokens.create("admin")), "intro-stats", "en"
        ).classes
        == ()
    )
