"""Receipts and answers: signed by the publisher, parsed strictly, never believed unsigned."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from satchel.content.errors import FormatError, SatchelError, TrustError
from satchel.content.receipts import (
    MAX_ANSWER_BATCHES,
    Receipt,
    RecordsAnswer,
    sign_answer,
    sign_receipt,
    verify_answer,
    verify_receipt,
)
from satchel.content.signing import SigningKey

from harness.records import T0

SERVER = SigningKey.generate()
DEVICE = "d" * 64
BATCH = "b" * 64


def test_a_receipt_round_trips_and_only_under_its_key() -> None:
    data = sign_receipt(SERVER, Receipt(DEVICE, 41, T0))
    assert verify_receipt(data, SERVER.public) == Receipt(DEVICE, 41, T0)
    with pytest.raises(TrustError, match="not signed by the pinned publisher key"):
        verify_receipt(data, SigningKey.generate().public)
    relabelled = SigningKey.generate().sign(Receipt(DEVICE, 99, T0).to_signed())
    relabelled = relabelled.replace(
        relabelled[relabelled.index(b'"keyid":"') + 9 :][:64], SERVER.public.keyid.encode()
    )
    with pytest.raises(TrustError, match="bad signature"):
        verify_receipt(relabelled, SERVER.public)


@pytest.mark.parametrize(
    "changes",
    [
        {"_type": "index"},
        {"format": 2},
        {"device": "D" * 64},
        {"device": "short"},
        {"acked_through": -1},
        {"acked_through": "5"},
        {"acked_through": True},
        {"acked_through": 2**40 + 1},
        {"time": "yesterday"},
    ],
)
def test_malformed_receipts_are_refused_even_when_signed(changes: dict[str, Any]) -> None:
    doc = {**Receipt(DEVICE, 3, T0).to_signed(), **changes}
    with pytest.raises(FormatError):
        verify_receipt(SERVER.sign(doc), SERVER.public)


def test_an_oversized_receipt_is_refused_before_parsing() -> None:
    with pytest.raises(FormatError, match="over the"):
        verify_receipt(b"{" + b" " * 5000 + b"}", SERVER.public)


def test_an_answer_round_trips_and_names_what_is_finished() -> None:
    data = sign_answer(SERVER, [BATCH], [("c" * 64, "device revoked " + "x" * 300)], T0)
    answer = verify_answer(data, SERVER.public)
    assert answer.accepted == (BATCH,)
    assert answer.refused[0][0] == "c" * 64 and len(answer.refused[0][1]) == 200
    assert answer.finished == {BATCH, "c" * 64}
    with pytest.raises(TrustError):
        verify_answer(data, SigningKey.generate().public)


@pytest.mark.parametrize(
    "changes",
    [
        {"_type": "receipt"},
        {"format": 2},
        {"accepted": "all"},
        {"accepted": ["../x"]},
        {"refused": [{"batch": BATCH}]},
        {"refused": [{"batch": BATCH, "reason": 5}]},
        {"refused": [{"batch": BATCH, "reason": "x" * 201}]},
        {"accepted": [BATCH] * (MAX_ANSWER_BATCHES + 1)},
    ],
)
def test_malformed_answers_are_refused_even_when_signed(changes: dict[str, Any]) -> None:
    doc = {**RecordsAnswer((BATCH,), (), T0).to_signed(), **changes}
    with pytest.raises(FormatError):
        verify_answer(SERVER.sign(doc), SERVER.public)


RECEIPT = sign_receipt(SERVER, Receipt(DEVICE, 7, T0))
ANSWER = sign_answer(SERVER, [BATCH], [("c" * 64, "bad")], T0)


def _mutate(data: st.DataObject, original: bytes) -> bytes:
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1)) if raw else 0
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[at : at + data.draw(st.integers(1, 8))]
    return bytes(raw)


@settings(max_examples=150, derandomize=True, database=None)
@given(data=st.data())
def test_mutated_receipts_and_answers_verify_or_raise_a_satchel_error(
    data: st.DataObject,
) -> None:
    receipt, answer = _mutate(data, RECEIPT), _mutate(data, ANSWER)
    with contextlib.suppress(SatchelError):
        assert verify_receipt(receipt, SERVER.public) == verify_receipt(RECEIPT, SERVER.public)
    with contextlib.suppress(SatchelError):
        assert verify_answer(answer, SERVER.public) == verify_answer(ANSWER, SERVER.public)
