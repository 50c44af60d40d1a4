"""Learning in the viewer: choosing who learns, POST /api/events (scored, recorded, never
planted by another site), exercises as forms, continue and done across restarts and version
switches, and a translation that says its original has changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from satchel.clients.view import create_app
from satchel.clients.view_learning import COOKIE
from satchel.sync.care import collect_garbage
from satchel.sync.local import LocalStore
from satchel.sync.outbox import PROGRESS_FILE, Outbox
from satchel.sync.publish import Publisher
from satchel.sync.updater import Updater

from harness.http import TestClient
from harness.repo import RepoFetcher, admin_target, make_repository, publish, write_tree

QUIZ = """# Capitals

Read this first.

```gift
::Capital:: What is the capital of Ukraine? {=Kyiv#Yes! ~Lviv#No, that is in the west. ~Odesa}

The mean of 2, 4 and 9 is {#5:0.01}.

Київ is the capital of {=Україна =Ukraine}.
```
"""
CNXML = """<document xmlns="http://cnx.rice.edu/cnxml"><title>Samples</title><content>
<exercise id="ex-1"><problem><para>What is a sample?</para></problem>
<solution><para>A part of the population.</para></solution></exercise></content></document>
"""
FILES = {
    "satchel.toml": (
        b'[bundle]\ntitle = "Quiz course"\n\n[[lessons]]\ntitle = "Capitals"\n'
        b'entry = "quiz.md"\n\n[[lessons]]\ntitle = "Samples"\nentry = "samples.cnxml"\n\n'
        b'[[lessons]]\ntitle = "Third"\nentry = "third.md"\n'
    ),
    "quiz.md": QUIZ.encode(),
    "samples.cnxml": CNXML.encode(),
    "third.md": b"# Third\n\nThe end.\n",
    "Cover.PNG": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
}
BASE = "http://testserver"
SAME = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def course(tmp_path: Path) -> tuple[LocalStore, object]:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", FILES), bundle="quiz", title="Quiz course")
    store = LocalStore(tmp_path / "store", durable=False)
    Updater(store, RepoFetcher(repo)).sync("quiz", "en")
    return store, repo


def join(store: LocalStore, name: str) -> str:
    with Outbox(store.root) as box:
        return box.join(name, "7KQ2-M9X7", "quiz", "en", now=NOW).learner


def event(client: TestClient, headers: dict[str, str] | None = None, **fields: object) -> object:
    body = {"bundle": "quiz", "locale": "en", "lesson": "quiz.md", **fields}
    return client.post(
        "/api/events",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **SAME, **(headers or {})},
    )


def records(store: LocalStore) -> list[tuple[str, str, str | None, str | None, bool | None]]:
    if not (store.root / PROGRESS_FILE).exists():
        return []
    with Outbox(store.root) as box:
        return [(r.kind, r.lesson, r.question, r.answer, r.correct) for r in box.records()]


def test_without_learners_lessons_read_and_nothing_is_recorded(course: tuple) -> None:
    store, _ = course
    client = TestClient(create_app(store))
    page = client.get("/b/quiz/en/current/page/quiz.md")
    assert page.status_code == 200 and "data-learner" not in page.text
    assert 'data-question="capital"' in page.text and "<fieldset><legend>" in page.text
    assert "Who is learning" not in page.text and 'class="done"' not in page.text
    assert "Nobody has joined" in client.get("/learners").text
    # The cover picture (a conventional name at the top, any case) heads the course's card.
    assert '<img class="cover" src="/b/quiz/en/1/file/Cover.PNG" alt="">' in client.get("/").text
    # Scored all the same (a learner-less reader still sees feedback), recorded nowhere.
    r = event(client, kind="answered", question="capital", answer="0")
    assert r.status_code == 200
    assert r.json()["correct"] is True and r.json()["feedback"] == "Yes!"
    assert r.json()["recorded"] is False and r.json()["seq"] is None
    assert not (store.root / PROGRESS_FILE).exists()  # the viewer made no outbox


def test_answers_are_scored_recorded_and_counted(course: tuple) -> None:
    store, _ = course
    ana = join(store, "Ana")
    client = TestClient(create_app(store))
    wrong = event(client, learner=ana, kind="answered", question="capital", answer="1")
    assert wrong.status_code == 201, wrong.text
    assert wrong.json() | {"seq": 0} == {
        "correct": False,
        "score": 0.0,
        "feedback": "No, that is in the west.",
        "general_feedback": "",
        "response": "Lviv",
        "attempts": 1,
        "seq": 0,
        "recorded": True,
    }
    right = event(client, learner=ana, kind="answered", question="capital", answer="0")
    assert right.json()["correct"] is True and right.json()["attempts"] == 2
    numeric = event(client, learner=ana, kind="answered", question="q2", answer="5,005")
    assert numeric.json()["correct"] is True
    short = event(client, learner=ana, kind="answered", question="q3", answer="УКРАЇНА")
    assert short.json()["correct"] is True
    self_check = event(
        client,
        learner=ana,
        kind="answered",
        lesson="samples.cnxml",
        question="ex-1",
        answer="got-it",
    )
    assert self_check.status_code == 201 and self_check.json()["correct"] is True
    assert event(client, learner=ana, kind="completed").status_code == 201
    assert records(store) == [
        ("answered", "quiz.md", "capital", "1", False),
        ("answered", "quiz.md", "capital", "0", True),
        ("answered", "quiz.md", "q2", "5,005", True),
        ("answered", "quiz.md", "q3", "УКРАЇНА", True),
        ("answered", "samples.cnxml", "ex-1", "got-it", True),
        ("completed", "quiz.md", None, None, None),
    ]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"kind": "answered", "question": "nope", "answer": "1"}, "no question"),
        ({"kind": "answered", "question": "capital", "answer": "9"}, "choice number"),
        ({"kind": "answered", "question": "capital", "answer": 3}, "answer must be a string"),
        ({"kind": "answered", "question": "capital"}, "answer must be a string"),
        ({"kind": "watched"}, "kind must be one of"),
        ({"kind": "opened", "question": "capital"}, "only an answered event"),
        ({"kind": "opened", "lesson": "../etc/passwd"}, "is not in"),
        ({"kind": "opened", "bundle": "other"}, "not on this laptop"),
        ({"kind": "opened", "extra": 1}, "unknown field"),
        ({"kind": "opened", "learner": "nobody"}, "learner must be the id"),
        ({"kind": "opened", "learner": 7}, "learner must be the id"),
        (
            {"kind": "answered", "lesson": "third.md", "question": "q1", "answer": "x"},
            "no question",
        ),
    ],
)
def test_refused_events_say_why_and_record_nothing(course: tuple, fields: dict, why: str) -> None:
    store, _ = course
    ana = join(store, "Ana")
    client = TestClient(create_app(store))
    r = event(client, **({"learner": ana} | fields))
    assert r.status_code == 400, r.text
    assert why in r.json()["error"]
    assert records(store) == []


def test_another_site_cannot_plant_records_or_choose_the_learner(course: tuple) -> None:
    """CSRF: only the viewer's own page can record. A cross-site form cannot send JSON; a
    cross-site fetch carries its Origin and Sec-Fetch-Site; both are refused."""
    store, _ = course
    ana = join(store, "Ana")
    client = TestClient(create_app(store))
    body = json.dumps({"learner": ana, "bundle": "quiz", "locale": "en", "lesson": "quiz.md",
                       "kind": "completed"})  # fmt: skip
    attempts = [
        ({"Content-Type": "text/plain"}, 415),  # what a cross-site form or no-cors fetch sends
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),  # a sandboxed lesson
        ({"Content-Type": "application/json", "Origin": "http://testserver:8080"}, 403),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, 403),
        ({"Content-Type": "application/json", "Origin": BASE, "Sec-Fetch-Site": "none"}, 403),
    ]
    for headers, status in attempts:
        r = client.post("/api/events", content=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
    assert records(store) == []
    # Choosing the learner is a form on the viewer's page, refused from elsewhere too.
    form = {"learner": ana, "next": "/"}
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = client.post("/learners", data=form, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")
    # The viewer's own page (and a script that is not a browser) is served.
    ok = client.post("/api/events", content=body, headers={"Content-Type": "application/json"})
    assert ok.status_code == 201
    assert event(client, learner=ana, kind="opened").status_code == 201
    assert [r[0] for r in records(store)] == ["completed", "opened"]
    # Oversized or not JSON.
    big = client.post(
        "/api/events", content=b"[" * 70_000, headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 413
    bad = client.post("/api/events", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]


def test_learners_pick_their_name_and_their_place_is_kept(course: tuple, tmp_path: Path) -> None:
    store, repo = course
    ana, ben = join(store, "Ana"), join(store, "Ben <b>")
    client = TestClient(create_app(store))
    picker = client.get("/learners?next=/b/quiz/en/").text
    assert f'value="{ana}">Ana</button>' in picker and "Ben &lt;b&gt;" in picker
    lesson = client.get("/b/quiz/en/current/page/quiz.md").text
    assert "Choose who is learning" in lesson and "data-learner" not in lesson
    r = client.post(
        "/learners",
        data={"learner": ana, "next": "/b/quiz/en/"},
        headers=SAME,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/b/quiz/en/"
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}={ana}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    # Elsewhere than this viewer is never where it sends you.
    for where in ("//evil.example/", "http://evil.example/", "/\\evil.example"):
        away = client.post(
            "/learners", data={"learner": ana, "next": where}, headers=SAME, follow_redirects=False
        )
        assert away.headers["location"] == "/"
    page = client.get("/b/quiz/en/current/page/quiz.md").text
    assert f'data-learner="{ana}"' in page and "Learning: <strong>Ana</strong>" in page
    assert 'data-bundle="quiz" data-locale="en" data-lesson="quiz.md"' in page
    assert '<form class="done"' in page
    event(client, learner=ana, kind="opened")
    event(client, learner=ana, kind="completed")
    event(client, learner=ana, kind="opened", lesson="samples.cnxml")
    event(client, learner=ben, kind="completed", lesson="third.md")

    def check(c: TestClient) -> None:
        contents = c.get("/b/quiz/en/").text
        assert "1 of 3 lessons done" in contents
        assert 'href="/b/quiz/en/current/page/quiz.md">Capitals</a> <span class="done-mark">' in (
            contents
        )
        assert "Third</a> <span" not in contents  # Ben's, not Ana's
        assert 'class="continue" href="/b/quiz/en/current/page/samples.cnxml"' in contents
        library = c.get("/").text
        assert "Continue where you were" in library and "1 of 3 lessons done" in library
        assert "Done ✓" in c.get("/b/quiz/en/current/page/quiz.md").text

    check(client)
    # A restart (a new viewer over the same store) and a version switch keep it all.
    files = {**FILES, "third.md": b"# Third\n\nThe end, revised.\n"}
    publish(repo, write_tree(tmp_path / "v2", files), bundle="quiz", title="Quiz course")
    Updater(store, RepoFetcher(repo)).sync("quiz", "en")
    assert store.ref("quiz", "en").version == 2  # type: ignore[union-attr]
    again = TestClient(create_app(store))
    again.post("/learners", data={"learner": ana, "next": "/"}, headers=SAME)
    check(again)
    # Nobody: reading again, nothing of Ana's shown.
    r = again.post("/learners", data={"learner": "", "next": "/"}, headers=SAME)
    assert r.status_code == 200 and "Continue where you were" not in r.text


def test_a_translation_whose_original_changed_says_so(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "srv")
    en = {"a.md": b"# One\n\nFirst text.\n", "b.md": b"# Two\n\nSecond text.\n"}
    es = {"a.md": b"# Uno\n\nPrimer texto.\n", "b.md": b"# Dos\n\nSegundo texto.\n"}
    publisher = Publisher(admin_target(repo))
    publisher.publish(write_tree(tmp_path / "en1", en), bundle="c", locale="en", title="C")
    publisher.publish(
        write_tree(tmp_path / "es1", es), bundle="c", locale="es", title="C", from_locale="en"
    )
    store = LocalStore(tmp_path / "store", durable=False)
    for locale in ("en", "es"):
        Updater(store, RepoFetcher(repo)).sync("c", locale)
    client = TestClient(create_app(store))
    assert 'class="notice"' not in client.get("/b/c/es/current/page/a.md").text
    # The original's first lesson changes; the laptop still keeps the version it was made from.
    en2 = {**en, "a.md": b"# One\n\nFirst text, corrected.\n"}
    publisher.publish(write_tree(tmp_path / "en2", en2), bundle="c", locale="en", title="C")
    Updater(store, RepoFetcher(repo)).sync("c", "en")
    changed = client.get("/b/c/es/current/page/a.md").text
    assert "The original of this lesson has changed since it was translated" in changed
    assert 'href="/b/c/en/current/page/a.md" hreflang="en"' in changed
    assert "English</span> version 1" in changed and "version 2 on this laptop" in changed
    assert 'class="notice"' not in client.get("/b/c/es/current/page/b.md").text
    # Once the version it was made from is gone from the laptop, the line has changed and the
    # lesson may have.
    en3 = {**en2, "b.md": b"# Two\n\nSecond text, new.\n"}
    publisher.publish(write_tree(tmp_path / "en3", en3), bundle="c", locale="en", title="C")
    Updater(store, RepoFetcher(repo)).sync("c", "en")
    collect_garbage(store, 1)
    maybe = client.get("/b/c/es/current/page/b.md").text
    assert "this one may have too" in maybe
