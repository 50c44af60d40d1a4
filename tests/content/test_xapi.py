"""xAPI export: statements checked against the xAPI 1.0.3 requirements an LRS enforces.

The checker below encodes the rules of xAPI-Data (ADL, 1.0.3) that apply to what Satchel
emits: §2.2 (actor, verb and object present; no null values; no empty objects), §2.4.1 (id
is a UUID in standard form), §2.4.2 (an Agent has exactly one inverse functional identifier;
an account has an IRL homePage and a name), §2.4.3 (verb id is an IRI; display is a language
map), §2.4.4 (an Activity's id is an absolute IRI; objectType "Activity" when present),
§2.4.5 (result types; score.scaled between -1 and 1), §2.4.6 (context language RFC 5646,
extensions keyed by IRIs, contextActivities holding activities), §2.4.7/§4.5 (timestamp in
ISO 8601) and §2.4.10 (version 1.0.x).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from satchel.content.batch import open_batch, seal_batch
from satchel.content.errors import UsageError
from satchel.content.recordskey import derive_records_key
from satchel.content.signing import SigningKey
from satchel.content.xapi import (
    VERBS,
    activity_id,
    batch_statements,
    record_statement,
)

from harness.records import learner, record

SERVER_URL = "https://satchel.example.org/"
WHO = learner("Ана Петренко")
DEVICE = "ab" * 32
LANG_TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
STATEMENT_KEYS = {
    "id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority",
    "version", "attachments",
}  # fmt: skip


def _iri(value: object) -> None:
    assert isinstance(value, str) and value == value.strip() and " " not in value
    parts = urlsplit(value)
    assert parts.scheme in ("http", "https") and parts.netloc, value


def _language_map(value: object) -> None:
    assert isinstance(value, dict) and value
    for tag, text in value.items():
        assert LANG_TAG.fullmatch(tag) and isinstance(text, str)


def _no_nulls_or_empty_objects(value: object, inside_extensions: bool = False) -> None:
    if isinstance(value, dict):
        assert value, "xAPI: SHOULD NOT include empty objects"
        for key, item in value.items():
            assert inside_extensions or item is not None, f"null value for {key}"
            _no_nulls_or_empty_objects(item, inside_extensions or key == "extensions")
    elif isinstance(value, list):
        for item in value:
            _no_nulls_or_empty_objects(item, inside_extensions)


def _activity(value: Any) -> None:
    assert set(value) <= {"objectType", "id", "definition"}
    assert value.get("objectType", "Activity") == "Activity"
    _iri(value["id"])
    if "definition" in value:
        _iri(value["definition"]["type"])
        _language_map(value["definition"]["name"])


def check_statement(st: Any) -> None:
    """Raise AssertionError unless ``st`` meets the xAPI 1.0.3 rules listed above."""
    st = json.loads(json.dumps(st))  # what an LRS receives
    assert set(st) <= STATEMENT_KEYS
    assert {"actor", "verb", "object"} <= set(st)
    _no_nulls_or_empty_objects(st)
    assert str(uuid.UUID(st["id"])) == st["id"]
    actor = st["actor"]
    assert actor.get("objectType", "Agent") == "Agent"
    ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in actor]
    assert ifis == ["account"]
    assert set(actor["account"]) == {"homePage", "name"}
    _iri(actor["account"]["homePage"])
    assert isinstance(actor["account"]["name"], str) and actor["account"]["name"]
    assert isinstance(actor.get("name", ""), str)
    _iri(st["verb"]["id"])
    _language_map(st["verb"]["display"])
    _activity(st["object"])
    result = st.get("result", {})
    assert set(result) <= {"score", "success", "completion", "response", "duration", "extensions"}
    for flag in ("success", "completion"):
        assert isinstance(result.get(flag, True), bool)
    if "score" in result:
        scaled = result["score"]["scaled"]
        assert isinstance(scaled, int | float) and not isinstance(scaled, bool)
        assert -1 <= scaled <= 1
    assert isinstance(result.get("response", ""), str)
    ctx = st["context"]
    assert LANG_TAG.fullmatch(ctx["language"])
    for key in ctx["extensions"]:
        _iri(key)
    for kind, activities in ctx["contextActivities"].items():
        assert kind in ("parent", "grouping", "category", "other")
        for act in activities:
            _activity(act)
    assert "registration" not in ctx  # would have to be a UUID
    datetime.fromisoformat(st["timestamp"].replace("Z", "+00:00"))
    assert st["version"].startswith("1.0.")


@pytest.mark.parametrize("kind", ["opened", "completed", "answered"])
def test_each_kind_of_record_gives_a_valid_statement(kind: str) -> None:
    rec = record(7, WHO, kind)
    st = record_statement(rec, WHO, DEVICE, SERVER_URL)
    check_statement(st)
    assert st["verb"]["id"] == VERBS[kind][0]
    assert st["actor"]["account"] == {
        "homePage": "https://satchel.example.org",
        "name": WHO.learner,
    }
    assert st["actor"]["name"] == WHO.name
    assert st["timestamp"] == "2026-11-23T10:00:07Z"
    ext = st["context"]["extensions"]
    assert ext["https://satchel.example.org/xapi/extensions/class-code"] == WHO.class_code
    lesson_iri = f"https://satchel.example.org/activities/intro-stats/en/{rec.lesson}"
    if kind == "answered":
        assert st["object"]["id"] == f"{lesson_iri}#{rec.question}"
        assert st["context"]["contextActivities"]["parent"][0]["id"] == lesson_iri
        assert st["result"] == {
            "success": rec.correct,
            "score": {"scaled": rec.score_milli / 1000},  # type: ignore[operator]
            "response": rec.answer,
        }
    else:
        assert st["object"]["id"] == lesson_iri
        assert st.get("result") == ({"completion": True} if kind == "completed" else None)


def test_unknown_fields_are_left_out_rather_than_sent_as_null() -> None:
    rec = record(3, WHO, "answered", correct=None, score_milli=None, answer="")
    st = record_statement(rec, None, DEVICE, SERVER_URL)
    check_statement(st)
    assert st["result"] == {"response": ""}
    assert "name" not in st["actor"]


def test_odd_characters_in_paths_and_question_ids_still_make_valid_iris() -> None:
    rec = record(2, WHO, "answered", lesson="Глава 1/урок #2?.md", question="Q 1: a/b#c")
    st = record_statement(rec, WHO, DEVICE, SERVER_URL)
    check_statement(st)
    iri = st["object"]["id"]
    assert iri.count("#") == 1 and "?" not in iri and " " not in iri


def test_statement_ids_are_stable_per_device_and_seq() -> None:
    a = record_statement(record(5, WHO), WHO, DEVICE, SERVER_URL)
    b = record_statement(record(5, WHO), WHO, DEVICE, SERVER_URL.rstrip("/"))
    c = record_statement(record(5, WHO), WHO, "cd" * 32, SERVER_URL)
    d = record_statement(record(6, WHO), WHO, DEVICE, SERVER_URL)
    assert a["id"] == b["id"] and len({a["id"], c["id"], d["id"]}) == 3


def test_a_verified_batch_becomes_statements_in_seq_order() -> None:
    server = derive_records_key(SigningKey.generate())
    device = SigningKey.generate()
    recs = [record(s, WHO, k) for s, k in ((1, "opened"), (2, "answered"), (3, "completed"))]
    batch = open_batch(seal_batch([WHO], recs, device, server.public), server)
    statements = batch_statements(batch, SERVER_URL)
    for st in statements:
        check_statement(st)
    assert [s["verb"]["display"]["en-US"] for s in statements] == [
        "experienced",
        "answered",
        "completed",
    ]
    assert {s["context"]["extensions"][f"{SERVER_URL}xapi/extensions/device"] for s in statements} \
        == {device.public.keyid}  # fmt: skip


@pytest.mark.parametrize("url", ["satchel.example.org", "ftp://x", "https://", "https://x/?a=1"])
def test_the_server_url_must_be_an_absolute_web_address(url: str) -> None:
    with pytest.raises(UsageError):
        activity_id(url, "b", "en", None)


def test_the_checker_catches_what_an_lrs_would_refuse() -> None:
    good = record_statement(record(2, WHO), WHO, DEVICE, SERVER_URL)
    for broken in (
        {**good, "id": "not-a-uuid"},
        {**good, "verb": {"id": "answered", "display": {"en-US": "answered"}}},
        {**good, "result": {"success": None}},
        {**good, "result": {"score": {"scaled": 1.5}}},
        {**good, "actor": {**good["actor"], "mbox": "mailto:a@b.c"}},
        {k: v for k, v in good.items() if k != "verb"},
        {**good, "timestamp": "yesterday"},
    ):
        with pytest.raises((AssertionError, ValueError)):
            check_statement(broken)
