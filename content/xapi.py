"""Learning records as xAPI 1.0.3 statements, for a school's Learning Record Store.

One statement per record:

- **actor**: an Agent identified by an account, ``{homePage: SERVER URL, name: learner id}``,
  with the learner's name;
- **verb**: from ADL's vocabulary: ``experienced`` (opened), ``completed``, ``answered``;
- **object**: an Activity whose id is built from the server URL, bundle, locale and lesson
  path (``SERVER/activities/BUNDLE/LOCALE/LESSON``), with ``#QUESTION`` for an answer;
- **result**: ``completion`` for a completed lesson; ``success``, ``score.scaled`` and
  ``response`` for an answer (each only when known: xAPI refuses nulls);
- **timestamp**: when the learner did it (the laptop's clock, UTC);
- **context**: the course as ``grouping`` (and the lesson as ``parent`` of a question), the
  locale as ``language``, and the class code, device id and seq as extensions (xAPI's
  ``registration`` must be a UUID, which a class code is not).

The statement id is a UUID derived from (server, device, seq), so exporting the same records
twice gives the same statements and an LRS keeps one of each.
"""

from __future__ import annotations

import uuid
from typing import Literal, NotRequired, TypedDict
from urllib.parse import quote, urlsplit

from .batch import VerifiedBatch
from .errors import UsageError
from .manifest import format_time
from .records import Learner, Record

XAPI_VERSION = "1.0.3"
VERBS = {
    "opened": ("http://adlnet.gov/expapi/verbs/experienced", "experienced"),
    "completed": ("http://adlnet.gov/expapi/verbs/completed", "completed"),
    "answered": ("http://adlnet.gov/expapi/verbs/answered", "answered"),
}
LESSON_TYPE = "http://adlnet.gov/expapi/activities/lesson"
QUESTION_TYPE = "http://adlnet.gov/expapi/activities/question"
COURSE_TYPE = "http://adlnet.gov/expapi/activities/course"


class Account(TypedDict):
    homePage: str
    name: str


class Agent(TypedDict):
    objectType: Literal["Agent"]
    account: Account
    name: NotRequired[str]


class Verb(TypedDict):
    id: str
    display: dict[str, str]


class Definition(TypedDict):
    type: str
    name: dict[str, str]


class Activity(TypedDict):
    objectType: Literal["Activity"]
    id: str
    definition: Definition


class Score(TypedDict):
    scaled: float


class Result(TypedDict, total=False):
    completion: bool
    success: bool
    score: Score
    response: str


class ContextActivities(TypedDict, total=False):
    parent: list[Activity]
    grouping: list[Activity]


class Context(TypedDict):
    contextActivities: ContextActivities
    language: str
    platform: str
    extensions: dict[str, str | int]


class Statement(TypedDict):
    id: str
    version: str
    actor: Agent
    verb: Verb
    object: Activity
    timestamp: str
    context: Context
    result: NotRequired[Result]


def server_base(server_url: str) -> str:
    """The server URL without a trailing slash; it must be an absolute http(s) URL."""
    parts = urlsplit(server_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"server URL {server_url!r} must be an absolute http(s) URL")
    return server_url.rstrip("/")


def activity_id(
    server_url: str, bundle: str, locale: str, lesson: str | None, question: str | None = None
) -> str:
    """The activity IRI of a course (no lesson), a lesson, or a question in a lesson."""
    iri = f"{server_base(server_url)}/activities/{quote(bundle)}/{quote(locale)}"
    if lesson is not None:
        iri += "/" + quote(lesson, safe="/")
    if question is not None:
        iri += "#" + quote(question, safe="")
    return iri


def _activity(iri: str, kind: str, name: str) -> Activity:
    return {
        "objectType": "Activity",
        "id": iri,
        "definition": {"type": kind, "name": {"und": name}},
    }


def record_statement(
    record: Record, learner: Learner | None, device: str, server_url: str
) -> Statement:
    """The xAPI statement of one verified record (``learner`` gives the actor's name)."""
    base = server_base(server_url)
    actor: Agent = {"objectType": "Agent", "account": {"homePage": base, "name": record.learner}}
    if learner is not None:
        actor["name"] = learner.name
    verb_id, verb_word = VERBS[record.kind]
    course = _activity(
        activity_id(base, record.bundle, record.locale, None), COURSE_TYPE, record.bundle
    )
    lesson = _activity(
        activity_id(base, record.bundle, record.locale, record.lesson), LESSON_TYPE, record.lesson
    )
    ext = f"{base}/xapi/extensions"
    context: Context = {
        "contextActivities": {"grouping": [course]},
        "language": record.locale,
        "platform": "Satchel",
        "extensions": {
            f"{ext}/class-code": record.class_code,
            f"{ext}/device": device,
            f"{ext}/seq": record.seq,
        },
    }
    obj = lesson
    result: Result = {}
    if record.kind == "completed":
        result["completion"] = True
    elif record.kind == "answered":
        assert record.question is not None and record.answer is not None  # Record checks it
        obj = _activity(
            activity_id(base, record.bundle, record.locale, record.lesson, record.question),
            QUESTION_TYPE,
            record.question,
        )
        context["contextActivities"]["parent"] = [lesson]
        if record.correct is not None:
            result["success"] = record.correct
        if record.scaled_score is not None:
            result["score"] = {"scaled": record.scaled_score}
        result["response"] = record.answer
    statement: Statement = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/records/{device}/{record.seq}")),
        "version": XAPI_VERSION,
        "actor": actor,
        "verb": {"id": verb_id, "display": {"en-US": verb_word}},
        "object": obj,
        "timestamp": format_time(record.time),
        "context": context,
    }
    if result:
        statement["result"] = result
    return statement


def batch_statements(batch: VerifiedBatch, server_url: str) -> list[Statement]:
    """Statements for every record of a verified batch, in seq order."""
    learners = {lr.learner: lr for lr in batch.learners}
    return [
        record_statement(r, learners.get(r.learner), batch.device, server_url)
        for r in batch.records
    ]
