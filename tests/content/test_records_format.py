"""Learners and records: every field checked strictly, both when recorded and when parsed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from satchel.content import canonical
from satchel.content.errors import FormatError, UnsafePathError, UsageError
from satchel.content.records import (
    MAX_ANSWER_BYTES,
    MAX_NAME_CHARS,
    Learner,
    Record,
    check_learner_id,
    clean_learner_name,
    new_learner_id,
    score_to_milli,
)

from harness.records import T0, learner, record

WHO = learner()


def test_learner_ids_are_128_random_bits_in_26_printable_characters() -> None:
    ids = {new_learner_id() for _ in range(500)}
    assert len(ids) == 500
    for x in ids:
        assert check_learner_id(x, "t") == x and len(x) == 26
    assert new_learner_id(lambda n: b"\xff" * n) == "7" + "z" * 25
    assert new_learner_id(lambda n: bytes(n)) == "0" * 26


@pytest.mark.parametrize(
    "bad", ["", "0" * 25, "0" * 27, "8" + "0" * 25, "0" * 25 + "u", "O" * 26, None, 7]
)
def test_malformed_learner_ids_are_refused(bad: object) -> None:
    with pytest.raises(FormatError):
        check_learner_id(bad, "t")


def test_learner_and_record_round_trip_through_canonical_json() -> None:
    assert (
        Learner.from_json(
            canonical.decode(canonical.encode(WHO.to_json()), what="t", max_bytes=9999)
        )
        == WHO
    )
    for kind in ("opened", "completed", "answered"):
        rec = record(5, WHO, kind)
        doc = canonical.decode(canonical.encode(rec.to_json()), what="t", max_bytes=9999)
        assert Record.from_json(doc) == rec


def test_names_are_cleaned_at_join_and_must_be_clean_in_documents() -> None:
    assert clean_learner_name("  Ana \t  Petrenko ") == "Ana Petrenko"
    assert clean_learner_name("Zoe\u0301") == "Zoé"  # NFC
    for bad in ("", "   ", "x" * (MAX_NAME_CHARS + 1), "a\x00b"):
        with pytest.raises(UsageError):
            clean_learner_name(bad)
    doc = WHO.to_json()
    for bad in (" Ana", "Ana  K", "Zoe\u0301", "", 5):
        with pytest.raises(FormatError):
            Learner.from_json({**doc, "name": bad})


def _record_doc(**changes: Any) -> dict[str, Any]:
    return {**record(3, WHO, "answered").to_json(), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": 0},
        {"seq": -1},
        {"seq": 2**40 + 1},
        {"seq": "3"},
        {"seq": True},
        {"learner": "nobody"},
        {"class": "ABCD-EFGH"},  # fails its check character
        {"class": "abcd-efgh"},
        {"bundle": "Intro Stats"},
        {"bundle": "../x"},
        {"locale": "english!"},
        {"kind": "skipped"},
        {"kind": 1},
        {"question": ""},
        {"question": " q1"},
        {"question": "q\n1"},
        {"question": "q" * 201},
        {"question": None},
        {"answer": None},
        {"answer": "a\x00b"},
        {"answer": "a\rb"},
        {"answer": "x" * (MAX_ANSWER_BYTES + 1)},
        {"answer": "я" * (MAX_ANSWER_BYTES // 2 + 1)},  # counted in UTF-8 bytes
        {"correct": 1},
        {"correct": "true"},
        {"score_milli": 1001},
        {"score_milli": -1},
        {"score_milli": "500"},
        {"time": "2026-11-23 10:00:00"},
        {"time": "2026-11-23T10:00:00+02:00"},
        {"time": 1795000000},
    ],
)
def test_each_malformed_record_field_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Record.from_json(_record_doc(**changes))


@pytest.mark.parametrize(
    "lesson", ["../etc/passwd", "/abs.md", "a//b.md", "a/./b.md", "a\\b.md", "", "cafe\u0301.md"]
)
def test_lesson_paths_follow_the_bundle_path_rules(lesson: str) -> None:
    with pytest.raises(UnsafePathError):
        Record.from_json(_record_doc(lesson=lesson))


def test_unknown_and_missing_fields_are_refused() -> None:
    with pytest.raises(FormatError, match="exactly"):
        Record.from_json({**_record_doc(), "extra": 1})
    doc = _record_doc()
    del doc["score_milli"]
    with pytest.raises(FormatError, match="exactly"):
        Record.from_json(doc)
    with pytest.raises(FormatError, match="exactly"):
        Learner.from_json({**WHO.to_json(), "extra": 1})


@pytest.mark.parametrize("field", ["question", "answer", "correct", "score_milli"])
@pytest.mark.parametrize("kind", ["opened", "completed"])
def test_only_answers_carry_answer_fields(kind: str, field: str) -> None:
    value = {"question": "q1", "answer": "x", "correct": True, "score_milli": 5}[field]
    with pytest.raises(FormatError, match="has no question"):
        Record.from_json({**record(4, WHO, kind).to_json(), field: value})


def test_an_answer_may_be_unscored_and_empty() -> None:
    rec = record(9, WHO, "answered", answer="", correct=None, score_milli=None)
    assert rec.scaled_score is None
    assert record(9, WHO, "answered", score_milli=250).scaled_score == 0.25


def test_times_are_utc_whole_seconds() -> None:
    with pytest.raises(FormatError):
        replace(record(1, WHO), time=T0.replace(microsecond=5))
    with pytest.raises(FormatError):
        replace(record(1, WHO), time=T0.replace(tzinfo=timezone(timedelta(hours=2))))
    with pytest.raises(FormatError):
        replace(record(1, WHO), time=datetime(2026, 1, 1))  # naive
    assert replace(record(1, WHO), time=T0.astimezone(UTC)).time == T0


def test_scores_become_thousandths() -> None:
    assert score_to_milli(None) is None
    assert score_to_milli(0.0) == 0
    assert score_to_milli(1) == 1000
    assert score_to_milli(2 / 3) == 667
    for bad in (-0.1, 1.01, True):
        with pytest.raises(UsageError):
            score_to_milli(bad)
