"""Scoring a learner's response to an exercise, on the laptop, with no network.

A response is a string, as a form or a JSON endpoint passes it through:

- multiple choice: the choice's index (``"2"``); multiple answers: indices joined by commas
  (``"0,2"``, ``""`` for none ticked), scored as Moodle does (the sum of the ticked weights,
  kept within 0..1) and ``correct`` only when that is full credit with no wrong choice ticked;
- true/false: ``"true"`` or ``"false"``;
- short answer: the text typed; it matches an accepted answer ignoring case (Unicode case
  folding, so ``Київ`` matches ``київ``), Unicode form (NFC) and runs of white space;
- numeric: the number typed (``3.5``, ``3,5``, ``-1e3``); compared exactly in decimal, so
  3.6 is within 3.5:0.1; anything else is a wrong answer;
- essay: the text, recorded and never scored (``correct`` is None);
- a CNXML exercise's self-assessment (:func:`score_self_assessment`): ``"got-it"`` or
  ``"not-yet"``.

A response that is not a string, is longer than :data:`MAX_RESPONSE_CHARS` (essays:
:data:`MAX_ESSAY_CHARS`), is not valid Unicode, or names a choice that does not exist is
refused with FormatError (a bad request, not a wrong answer).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .errors import FormatError
from .gift import Choice, Question, parse_number

MAX_RESPONSE_CHARS = 1_000
MAX_ESSAY_CHARS = 20_000
SELF_ASSESSMENT = ("got-it", "not-yet")

_INDEX = re.compile(r"\d{1,4}")


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt."""

    correct: bool | None  # None: recorded, not scored (essay)
    score: float  # 0..1
    feedback: str  # for this answer (may be empty)
    response_text: str  # the answer as a person reads it (choice texts, not indices)
    general_feedback: str = ""  # the question's, shown after any attempt


def normalize(text: str) -> str:
    """Text as short answers compare it: NFC, case-folded, white space collapsed."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return " ".join(folded.split())


def _checked(question: Question, response: object) -> str:
    if not isinstance(response, str):
        raise FormatError(f"the response to {question.id!r} must be a string")
    limit = MAX_ESSAY_CHARS if question.kind == "essay" else MAX_RESPONSE_CHARS
    if len(response) > limit:
        raise FormatError(f"the response to {question.id!r} is over {limit:,} characters")
    try:
        response.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"the response to {question.id!r} is not valid Unicode") from None
    return response


def _index(question: Question, raw: str) -> int:
    raw = raw.strip()
    count = len(question.choices)
    if not _INDEX.fullmatch(raw) or int(raw) >= count:
        raise FormatError(
            f"the response to {question.id!r} must be a choice number from 0 to {count - 1}"
        )
    return int(raw)


def _percent(total: float) -> float:
    return min(1.0, max(0.0, total / 100))


def _best(question: Question, matches: list[tuple[float, str]], typed: str) -> Result:
    """The result for the accepted answer with the most credit among ``matches``."""
    general = question.general_feedback
    if not matches:
        return Result(False, 0.0, question.other_feedback, typed, general)
    percent, feedback = max(matches, key=lambda m: m[0])
    return Result(percent >= 100, _percent(percent), feedback, typed, general)


def score(question: Question, response: object) -> Result:
    """Score ``response`` (a string, see the module docstring) to ``question``."""
    text = _checked(question, response)
    general = question.general_feedback
    kind = question.kind
    if kind == "description":
        raise FormatError(f"{question.id!r} is a description: there is nothing to answer")
    if kind == "essay":
        return Result(None, 0.0, "", text, general)
    if kind == "multiple_choice":
        if not text.strip():
            return Result(False, 0.0, "", "", general)
        choice = question.choices[_index(question, text)]
        return Result(
            choice.percent >= 100, _percent(choice.percent), choice.feedback, choice.text, general
        )
    if kind == "multiple_answers":
        raw = [part for part in text.split(",") if part.strip()]
        picked = [_index(question, part) for part in raw]
        if len(set(picked)) != len(picked):
            raise FormatError(f"the response to {question.id!r} names a choice twice")
        chosen: list[Choice] = [question.choices[i] for i in sorted(picked)]
        total = _percent(sum(c.percent for c in chosen))
        feedback = "\n".join(c.feedback for c in chosen if c.feedback)
        shown = "; ".join(c.text for c in chosen)
        # Full credit can come with a 0% choice ticked too (Moodle's sum); that is not "right".
        right = total >= 1.0 and all(c.percent > 0 for c in chosen)
        return Result(right, total, feedback, shown, general)
    if kind == "true_false":
        said = text.strip().casefold()
        if said not in ("true", "false", "t", "f"):
            raise FormatError(f"the response to {question.id!r} must be 'true' or 'false'")
        value = said in ("true", "t")
        feedback = question.feedback_true if value else question.feedback_false
        right = value == question.truth
        return Result(right, 1.0 if right else 0.0, feedback, "true" if value else "false", general)
    if kind == "short_answer":
        typed = normalize(text)
        hits = [(a.percent, a.feedback) for a in question.answers if normalize(a.text) == typed]
        return _best(question, hits, text.strip())
    # numeric
    written = text.strip()
    if written.count(",") == 1 and "." not in written:
        written = written.replace(",", ".")  # 3,5: the decimal comma of uk, ru, ky, kk, es...
    number = parse_number(written)
    if number is None:
        return _best(question, [], text.strip())
    hits = [(n.percent, n.feedback) for n in question.numeric if n.low <= number <= n.high]
    return _best(question, hits, text.strip())


def score_self_assessment(exercise_id: str, response: object) -> Result:
    """A learner's own verdict on a CNXML exercise after seeing its solution."""
    if not isinstance(response, str) or response.strip() not in SELF_ASSESSMENT:
        raise FormatError(f"the response to {exercise_id[:80]!r} must be 'got-it' or 'not-yet'")
    got = response.strip() == "got-it"
    return Result(got, 1.0 if got else 0.0, "", response.strip())
