"""Who is learning, and what they do: the learner picker and ``POST /api/events``.

Learners join a store with ``satchel join`` (a laptop's children, or a hub's); the viewer
lists them at ``/learners`` and remembers the choice of each browser in a cookie
(``SameSite=Strict``, ``HttpOnly``), so on a hub every phone picks its own name. With nobody
chosen (or no learner at all) reading works as ever and nothing is recorded.

``POST /api/events`` records what the learner does into the store's outbox
(:class:`satchel.sync.outbox.Outbox`), the same records that sync, sticks and relays carry
back to the teacher: ``opened``, ``completed``, and ``answered`` with the answer scored here
at once (:mod:`satchel.content.scoring`) against the lesson's own questions, read from the
store. A request without a learner is scored and answered but not recorded.

A web site open in the student's browser must not be able to plant records (or choose the
learner). A state-changing request must therefore be one that only the viewer's own page can
make: ``Content-Type: application/json`` (a cross-site form cannot send it, and a cross-site
``fetch`` with it needs a CORS preflight that the viewer never grants), a ``Sec-Fetch-Site``
of ``same-origin`` when the browser sends one, else an ``Origin``, when sent, that is the
viewer's own (scheme and ``Host``). A script or a test that is not a browser
sends neither header and is served; the Host guard has already refused any name that is not
the viewer's (DNS rebinding).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote

from cachetools import LRUCache
from satchel.content.errors import (
    ContentError,
    ForbiddenError,
    FormatError,
    NotFoundError,
    SatchelError,
    UsageError,
)
from satchel.content.exercises import questions_in_markdown
from satchel.content.gift import Question
from satchel.content.records import KINDS, Learner
from satchel.content.render_cnxml import Target, exercises_in_cnxml
from satchel.content.scoring import Result, score, score_self_assessment
from satchel.edge.http import json_body, read_body
from satchel.sync.learning import Journey, Journeys
from satchel.sync.outbox import PROGRESS_FILE, Outbox
from satchel.sync.reader import file_etag
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .view_html import Chrome, h, page
from .view_model import PAGE_LIMIT, Line, Viewer

COOKIE = "satchel-learner"
MAX_EVENT_BYTES = 64 * 1024
MAX_FORM_BYTES = 4 * 1024
CACHED_LESSONS = 256


@dataclass(frozen=True, slots=True)
class Answered:
    result: Result
    attempts: int  # this learner's attempts at the question, this one included (0: none kept)


class Learning:
    """The store's learners and outbox, opened once there is one (viewing never makes it)."""

    def __init__(self, root: Path, viewer: Viewer) -> None:
        self.root = root
        self.viewer = viewer
        self._lock = threading.Lock()
        self._outbox: Outbox | None = None
        self._journeys: Journeys | None = None
        self._questions: LRUCache[str, dict[str, Question]] = LRUCache(CACHED_LESSONS)

    def outbox(self) -> Outbox | None:
        with self._lock:
            if self._outbox is None and (self.root / PROGRESS_FILE).is_file():
                self._outbox = Outbox(self.root)
                self._journeys = Journeys(self._outbox)
            return self._outbox

    def close(self) -> None:
        with self._lock:
            if self._outbox is not None:
                self._outbox.close()
                self._outbox = None

    def learners(self) -> list[Learner]:
        box = self.outbox()
        return box.learners() if box is not None else []

    def learner(self, learner_id: str | None) -> Learner | None:
        box = self.outbox()
        if box is None or not learner_id:
            return None
        try:
            return box.learner(learner_id)
        except (NotFoundError, FormatError):
            return None

    def journey(self, learner: Learner | None) -> Journey | None:
        if learner is None or self.outbox() is None or self._journeys is None:
            return None
        return self._journeys.of(learner.learner)

    def chosen(self, request: Request) -> Learner | None:
        return self.learner(request.cookies.get(COOKIE))

    def chrome(self, request: Request, query: str = "") -> Chrome:
        who = self.chosen(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Chrome(
            learner_id=who.learner if who else None,
            learner_name=who.name if who else None,
            learning=bool(self.learners()) if who is None else True,
            query=query,
            here=here,
        )

    # -- scoring ---------------------------------------------------------------------------
    def questions(self, line: Line, lesson: str) -> dict[str, Question]:
        sf = self.viewer.file(line, lesson)
        key = file_etag(sf.entry)
        with self._lock:
            cached = self._questions.get(key)
        if cached is not None:
            return cached
        text = sf.read(PAGE_LIMIT).decode("utf-8", "replace")
        found = {q.id: q for q in questions_in_markdown(text, lesson)}
        with self._lock:
            self._questions[key] = found
        return found

    def score(self, line: Line, lesson: str, question: str, answer: object) -> Result:
        lower = lesson.lower()
        if lower.endswith((".md", ".markdown")):
            q = self.questions(line, lesson).get(question)
            if q is None:
                raise UsageError(f"{lesson} has no question {question[:80]!r}")
            if q.kind == "description":
                raise UsageError(f"{question[:80]!r} in {lesson} is not a question to answer")
            return score(q, answer)
        if lower.endswith(".cnxml"):
            data = self.viewer.file(line, lesson).read(PAGE_LIMIT)
            ids = {e.id for e in exercises_in_cnxml(data, lambda _ref, _kind: Target(None))}
            if question not in ids:
                raise UsageError(f"{lesson} has no exercise {question[:80]!r}")
            return score_self_assessment(question, answer)
        raise UsageError(f"{lesson} holds no exercises")


# -- the guard ---------------------------------------------------------------------------------
def check_same_origin(request: Request) -> None:
    """Refuse (403) a browser request that another site made (module docstring).

    ``Sec-Fetch-Site`` is set by the browser itself, never by a page, so when it is there it
    decides (a form of the viewer's own page may carry ``Origin: null`` under a strict
    referrer policy). A browser too old to send it is judged by ``Origin``.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site.strip().lower() != "same-origin":
            raise ForbiddenError(f"a request from another site ({site[:20]}) cannot record here")
        return
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        if origin.strip().lower() != own:
            raise ForbiddenError("a request from another origin cannot record here")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _refused(exc: SatchelError) -> JSONResponse:
    status = exc.status
    if isinstance(exc, ContentError | UsageError | NotFoundError):
        status = 400  # a field the rules refuse: a bad request, nothing recorded
    return JSONResponse({"error": str(exc)}, status_code=status)


def _text(raw: dict[str, object], name: str, *, required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name} must be a non-empty string")
    return value


# -- routes ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LearningRoutes:
    events: Callable[[Request], Awaitable[Response]]  # POST /api/events
    learners: Callable[[Request], Response]  # GET /learners
    choose: Callable[[Request], Awaitable[Response]]  # POST /learners


def learning_routes(viewer: Viewer, learning: Learning) -> LearningRoutes:
    """The handlers for :func:`satchel.clients.view.create_app` to mount."""

    async def events(request: Request) -> Response:
        try:
            check_same_origin(request)
            if _media_type(request) != "application/json":
                return JSONResponse(
                    {"error": "send the event as Content-Type: application/json"},
                    status_code=415,
                )
            raw = await json_body(request, MAX_EVENT_BYTES)
            if not isinstance(raw, dict):
                raise UsageError("the event must be a JSON object")
            unknown = sorted(set(raw) - {"learner", *EVENT_FIELDS})
            if unknown:
                raise UsageError(f"unknown field {unknown[0][:40]!r}")
            return record(raw)
        except SatchelError as exc:
            return _refused(exc)

    def record(raw: dict[str, object]) -> Response:
        kind = _text(raw, "kind")
        if kind not in KINDS:
            raise UsageError(f"kind must be one of {', '.join(KINDS)}")
        bundle, locale, lesson = (_text(raw, n) for n in ("bundle", "locale", "lesson"))
        assert bundle is not None and locale is not None and lesson is not None
        line = viewer.line(bundle, locale)
        viewer.file(line, lesson)  # a lesson of this line, or 404 -> 400
        question = _text(raw, "question", required=kind == "answered")
        answer = raw.get("answer")
        if kind != "answered" and (question is not None or answer is not None):
            raise UsageError("only an answered event has a question and an answer")
        result = None
        if kind == "answered":
            assert question is not None
            if not isinstance(answer, str):
                raise UsageError("answer must be a string")
            result = learning.score(line, lesson, question, answer)
        learner_id = raw.get("learner")
        if learner_id is None:
            return JSONResponse(_result_json(result, 0) | {"seq": None, "recorded": False})
        if not isinstance(learner_id, str) or learning.learner(learner_id) is None:
            raise UsageError("learner must be the id of a learner who joined on this store")
        box = learning.outbox()
        assert box is not None
        seq = box.record(
            learner_id,
            bundle,
            locale,
            lesson,
            kind,
            question=question,
            answer=answer if isinstance(answer, str) else None,
            correct=result.correct if result else None,
            score=result.score if result and result.correct is not None else None,
            now=datetime.now(UTC),
        )
        attempts = 0
        if result is not None:
            journey = learning.journey(learning.learner(learner_id))
            line_journey = journey.line(bundle, locale) if journey else None
            got = line_journey.attempts.get((lesson, question or "")) if line_journey else None
            attempts = got.count if got else 1
        body = _result_json(result, attempts) | {"seq": seq, "recorded": True}
        return JSONResponse(body, status_code=201)

    def learners_page(request: Request) -> Response:
        chrome = learning.chrome(request)
        after = _local_path(request.query_params.get("next", "/"))
        people = learning.learners()
        if not people:
            body = (
                "<h1>Who is learning?</h1><p>Nobody has joined on this store yet, so lessons"
                " are read without keeping anyone's place or answers. A teacher adds a learner"
                " with <code>satchel join --store DIR --code CODE --learner NAME</code>.</p>"
                f'<p><a href="{h(after)}">Back</a></p>'
            )
            return page("Who is learning?", body, chrome=chrome)
        items = []
        for who in people:
            current = ' aria-current="true"' if who.learner == chrome.learner_id else ""
            items.append(
                f'<li><button type="submit" name="learner" value="{h(who.learner)}"{current}>'
                f"{h(who.name)}</button></li>"
            )
        body = (
            "<h1>Who is learning?</h1><p>Choose your name: what you read and answer is kept"
            " for you (and for your teacher).</p>"
            f'<form method="post" action="/learners"><input type="hidden" name="next"'
            f' value="{h(after)}"><ul class="learners">{"".join(items)}'
            '<li><button type="submit" class="quiet" name="learner" value="">'
            "Nobody: just reading</button></li></ul></form>"
        )
        return page("Who is learning?", body, chrome=chrome)

    async def choose(request: Request) -> Response:
        check_same_origin(request)
        if _media_type(request) != "application/x-www-form-urlencoded":
            raise UsageError("choose a learner with the form on /learners")
        form = parse_qs((await read_body(request, MAX_FORM_BYTES)).decode("utf-8", "replace"))
        chosen = (form.get("learner") or [""])[0]
        after = _local_path((form.get("next") or ["/"])[0])
        response = RedirectResponse(after, status_code=303)
        if chosen and learning.learner(chosen) is None:
            raise UsageError("that learner has not joined on this store")
        if chosen:
            response.set_cookie(
                COOKIE, chosen, max_age=400 * 24 * 3600, path="/", httponly=True, samesite="strict"
            )
        else:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return LearningRoutes(events, learners_page, choose)


EVENT_FIELDS = ("bundle", "locale", "lesson", "kind", "question", "answer")


def _result_json(result: Result | None, attempts: int) -> dict[str, object]:
    if result is None:
        return {}
    return {
        "correct": result.correct,
        "score": result.score,
        "feedback": result.feedback,
        "general_feedback": result.general_feedback,
        "response": result.response_text,
        "attempts": attempts,
    }


def _local_path(value: str) -> str:
    """A path on this viewer to go back to (never another host: ``//x`` or ``/\\x``)."""
    if not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return "/"
    return quote(value, safe="/?=&%:+,;@-._~")
