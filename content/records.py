"""Learners and learning records: the values a laptop records and the server ingests.

A **learner** joined a class on one laptop (offline): a random 128-bit id, a name, the
class's join code, the bundle and locale of the class, and when. A **record** is one thing a
learner did, numbered by the laptop that recorded it (``seq`` = 1, 2, 3... per device, never
reused), so that any route delivers it exactly once::

    {"answer": "4", "bundle": "intro-stats", "class": "7KQ2-M9X7", "correct": true,
     "kind": "answered", "learner": "0v3ah5x1g8k3x0rbj3r3xq7k5c", "lesson": "ch1/mean.md",
     "locale": "en", "question": "q1", "score_milli": 1000, "seq": 17,
     "time": "2026-11-23T10:00:00Z"}

``kind`` is ``opened``, ``completed`` or ``answered``; only an answer has a question and an
answer (its other fields are null). ``score_milli`` is the score in thousandths (0..1000):
canonical JSON has no floats. Every field is checked strictly, and unknown fields are
refused: a record is data the server stores as it is, so a new field needs a new format.
"""

from __future__ import annotations

import functools
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from .errors import FormatError, UsageError
from .joincode import check_join_code
from .manifest import format_time, parse_time
from .names import check_bundle, check_locale
from .paths import check_path

Kind = Literal["opened", "completed", "answered"]
KINDS: tuple[Kind, ...] = ("opened", "completed", "answered")

MAX_SEQ = 2**40
MAX_NAME_CHARS = 80
MAX_QUESTION_CHARS = 200
MAX_ANSWER_BYTES = 2000  # UTF-8; a GIFT short answer or a number, never an essay
MAX_SCORE_MILLI = 1000

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_LEARNER_ID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}")

_RECORD_KEYS = frozenset(
    {
        "seq",
        "learner",
        "class",
        "bundle",
        "locale",
        "lesson",
        "kind",
        "question",
        "answer",
        "correct",
        "score_milli",
        "time",
    }
)
_LEARNER_KEYS = frozenset({"learner", "name", "class", "bundle", "locale", "joined"})
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})


# -- learners ---------------------------------------------------------------------------------
def new_learner_id(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """128 random bits as 26 lower-case Crockford base32 characters."""
    n = int.from_bytes(random_bytes(16), "big")
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def check_learner_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _LEARNER_ID.fullmatch(value):
        raise FormatError(f"{what} learner id must be 26 lower-case Crockford base32 characters")
    return value


def _printable(text: str, allow: str = "") -> bool:
    # Only control and line/paragraph separators are refused: refusing unassigned code
    # points would let a server with an older Unicode table refuse a newer laptop's records.
    return all(ch in allow or unicodedata.category(ch) not in _UNPRINTABLE for ch in text)


def clean_learner_name(text: str) -> str:
    """A name as typed at ``join``: trimmed, NFC, one line, at most 80 characters."""
    name = unicodedata.normalize("NFC", " ".join(text.split()))
    if not name:
        raise UsageError("the learner's name is empty; give the name the teacher will see")
    if len(name) > MAX_NAME_CHARS or not _printable(name):
        raise UsageError(
            f"the learner's name must be at most {MAX_NAME_CHARS} printable characters"
        )
    return name


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{what} name must be a string")
    try:
        name = clean_learner_name(value)
    except UsageError as exc:
        raise FormatError(f"{what}: {exc}") from None
    if name != value:
        raise FormatError(f"{what} name is not trimmed NFC text on one line")
    return name


def _check_bundle_locale(bundle: object, locale: object, what: str) -> None:
    if not isinstance(bundle, str) or not isinstance(locale, str):
        raise FormatError(f"{what} bundle and locale must be strings")
    try:
        _bundle_locale_ok(bundle, locale)
    except UsageError as exc:
        raise FormatError(f"{what}: {exc}") from None


# A batch repeats the same few bundles, lessons and class codes hundreds of times: remember
# the ones that passed (a failure raises, and lru_cache never keeps a raise).
@functools.lru_cache(maxsize=4096)
def _bundle_locale_ok(bundle: str, locale: str) -> None:
    check_bundle(bundle)
    check_locale(locale)


@functools.lru_cache(maxsize=4096)
def _lesson_ok(lesson: str) -> None:
    check_path(lesson)


@functools.lru_cache(maxsize=1024)
def _code_ok(code: str, what: str) -> None:
    check_join_code(code, what)


def _check_time(value: datetime, what: str) -> None:
    offset = value.utcoffset() if isinstance(value, datetime) else None
    if offset is None or offset.total_seconds() != 0 or value.microsecond:
        raise FormatError(f"{what} time must be a UTC datetime in whole seconds")


def utc_seconds(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to whole seconds (the precision records keep)."""
    return moment.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Learner:
    """One learner on one laptop; the name travels only inside sealed, signed batches."""

    learner: str
    name: str
    class_code: str
    bundle: str
    locale: str
    joined: datetime

    def __post_init__(self) -> None:
        check_learner_id(self.learner, "learner")
        _check_name(self.name, "learner")
        check_join_code(self.class_code, "learner")
        _check_bundle_locale(self.bundle, self.locale, "learner")
        _check_time(self.joined, "learner joined")

    def to_json(self) -> dict[str, Any]:
        return {
            "learner": self.learner,
            "name": self.name,
            "class": self.class_code,
            "bundle": self.bundle,
            "locale": self.locale,
            "joined": format_time(self.joined),
        }

    @classmethod
    def from_json(cls, raw: object) -> Learner:
        if not isinstance(raw, dict) or set(raw) != _LEARNER_KEYS:
            raise FormatError(f"a learner must be an object with exactly {sorted(_LEARNER_KEYS)}")
        return cls(
            learner=check_learner_id(raw["learner"], "learner"),
            name=_check_name(raw["name"], "learner"),
            class_code=check_join_code(raw["class"], "learner"),
            bundle=raw["bundle"],
            locale=raw["locale"],
            joined=parse_time(raw["joined"], "learner joined"),
        )


# -- records ----------------------------------------------------------------------------------
def _check_question(value: object, what: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_QUESTION_CHARS
        or not _printable(value)
        or value != value.strip()
    ):
        raise FormatError(
            f"{what} question id must be 1-{MAX_QUESTION_CHARS} printable characters"
            " without surrounding spaces"
        )
    return value


def _check_answer(value: object, what: str) -> str:
    if not isinstance(value, str) or not _printable(value, allow="\n\t"):
        raise FormatError(f"{what} answer must be text (tabs and newlines allowed)")
    if len(value.encode("utf-8")) > MAX_ANSWER_BYTES:
        raise FormatError(f"{what} answer is over {MAX_ANSWER_BYTES} bytes")
    return value


@dataclass(frozen=True, slots=True)
class Record:
    """One thing a learner did, as the device that recorded it numbered it."""

    seq: int
    learner: str
    class_code: str
    bundle: str
    locale: str
    lesson: str
    kind: Kind
    question: str | None
    answer: str | None
    correct: bool | None
    score_milli: int | None
    time: datetime

    def __post_init__(self) -> None:
        what = f"record {self.seq!r}"
        if type(self.seq) is not int or not 1 <= self.seq <= MAX_SEQ:
            raise FormatError(f"{what}: seq must be an integer from 1 to {MAX_SEQ}")
        check_learner_id(self.learner, what)
        if not isinstance(self.class_code, str):
            raise FormatError(f"{what}: class code must be a join code")
        _code_ok(self.class_code, "record")
        _check_bundle_locale(self.bundle, self.locale, what)
        if not isinstance(self.lesson, str):
            raise FormatError(f"{what}: lesson must be a path")
        try:
            _lesson_ok(self.lesson)
        except FormatError as exc:
            raise type(exc)(f"{what} lesson: {exc}") from None
        if self.kind not in KINDS:
            raise FormatError(f"{what}: kind must be one of {', '.join(KINDS)}")
        _check_time(self.time, what)
        if self.kind != "answered":
            if (self.question, self.answer, self.correct, self.score_milli) != (
                None,
                None,
                None,
                None,
            ):
                raise FormatError(
                    f"{what}: an {self.kind!r} record has no question, answer, correct or score"
                )
            return
        _check_question(self.question, what)
        _check_answer(self.answer, what)
        if self.correct is not None and type(self.correct) is not bool:
            raise FormatError(f"{what}: correct must be true, false or null")
        if self.score_milli is not None and (
            type(self.score_milli) is not int or not 0 <= self.score_milli <= MAX_SCORE_MILLI
        ):
            raise FormatError(f"{what}: score_milli must be an integer 0-1000 or null")

    @property
    def scaled_score(self) -> float | None:
        """The score as a number from 0 to 1 (None when the answer was not scored)."""
        return None if self.score_milli is None else self.score_milli / MAX_SCORE_MILLI

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "learner": self.learner,
            "class": self.class_code,
            "bundle": self.bundle,
            "locale": self.locale,
            "lesson": self.lesson,
            "kind": self.kind,
            "question": self.question,
            "answer": self.answer,
            "correct": self.correct,
            "score_milli": self.score_milli,
            "time": format_time(self.time),
        }

    @classmethod
    def from_json(cls, raw: object) -> Record:
        if not isinstance(raw, dict) or set(raw) != _RECORD_KEYS:
            raise FormatError(f"a record must be an object with exactly {sorted(_RECORD_KEYS)}")
        for key in ("learner", "class", "bundle", "locale", "lesson", "kind"):
            if not isinstance(raw[key], str):
                raise FormatError(f"record {key} must be a string")
        return cls(
            seq=raw["seq"],
            learner=raw["learner"],
            class_code=raw["class"],
            bundle=raw["bundle"],
            locale=raw["locale"],
            lesson=raw["lesson"],
            kind=cast(Kind, raw["kind"]),
            question=raw["question"],
            answer=raw["answer"],
            correct=raw["correct"],
            score_milli=raw["score_milli"],
            time=parse_time(raw["time"], "record time"),
        )


def score_to_milli(score: float | None) -> int | None:
    """A score from 0 to 1 (as the viewer computes it) in the thousandths records carry."""
    if score is None:
        return None
    if isinstance(score, bool) or not 0 <= score <= 1:
        raise UsageError(f"score {score!r} must be a number from 0 to 1")
    return round(score * MAX_SCORE_MILLI)
