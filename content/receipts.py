"""Receipts and answers: what the server signs back about learning records it took.

Both are envelopes signed by the publisher key (the one every laptop and relay pins), so a
relay or a stick can carry them but cannot forge one.

A **receipt** tells one device how far its records are safely stored::

    {"_type": "receipt", "format": 1, "device": KEYID, "acked_through": N,
     "time": "2026-11-23T10:00:00Z"}

``acked_through`` is the device's highest *contiguous* seq stored: every record 1..N is
stored, so the laptop may stop sending them. A later receipt never lowers it.

An **answer** tells a relay which sealed batches (by batch id) the server is finished with,
accepted or refused for good, so it may drop them::

    {"_type": "records-answer", "format": 1, "time": ...,
     "accepted": [BATCH ID, ...], "refused": [{"batch": BATCH ID, "reason": TEXT}, ...]}

A batch id names exact bytes, so "accepted" stays true forever and replaying an old answer
changes nothing. Dropping a batch never loses records: the laptop keeps every record until a
receipt covers it, and sends it again otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import FormatError
from .manifest import check_chunk_id, format_time, parse_time
from .records import MAX_SEQ
from .signing import PublicKey, SigningKey, open_envelope, verify_envelope

RECEIPT_FORMAT = 1
MAX_RECEIPT_BYTES = 4096
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_ANSWER_BATCHES = 10_000
MAX_REASON_CHARS = 200


def check_device_id(value: object, what: str) -> str:
    """A device id: the key id (64 lower-case hex) of its Ed25519 key."""
    try:
        return check_chunk_id(value)
    except FormatError:
        raise FormatError(f"{what} device must be a key id (64 lower-case hex digits)") from None


@dataclass(frozen=True, slots=True)
class Receipt:
    device: str
    acked_through: int
    time: datetime

    def __post_init__(self) -> None:
        check_device_id(self.device, "receipt")
        if type(self.acked_through) is not int or not 0 <= self.acked_through <= MAX_SEQ:
            raise FormatError(f"receipt acked_through must be an integer 0..{MAX_SEQ}")

    def to_signed(self) -> dict[str, Any]:
        return {
            "_type": "receipt",
            "format": RECEIPT_FORMAT,
            "device": self.device,
            "acked_through": self.acked_through,
            "time": format_time(self.time),
        }


def _check_type(raw: dict[str, Any], kind: str, what: str) -> None:
    if raw.get("_type") != kind:
        raise FormatError(f"document is not a {what} (its _type is not {kind!r})")
    if raw.get("format") != RECEIPT_FORMAT:
        raise FormatError(
            f"{what} format {raw.get('format')!r} is not {RECEIPT_FORMAT}; update satchel"
        )


def sign_receipt(key: SigningKey, receipt: Receipt) -> bytes:
    return key.sign(receipt.to_signed())


def verify_receipt(data: bytes, publisher: PublicKey) -> Receipt:
    """A receipt's values, once its signature verifies under the pinned ``publisher`` key."""
    env = open_envelope(data, what="receipt", max_bytes=MAX_RECEIPT_BYTES)
    verify_envelope(env, publisher, what="receipt")
    raw = env.signed
    _check_type(raw, "receipt", "receipt")
    acked = raw.get("acked_through")
    if type(acked) is not int:
        raise FormatError("receipt acked_through must be an integer")
    return Receipt(
        device=check_device_id(raw.get("device"), "receipt"),
        acked_through=acked,
        time=parse_time(raw.get("time"), "receipt time"),
    )


@dataclass(frozen=True, slots=True)
class RecordsAnswer:
    accepted: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]  # (batch id, reason)
    time: datetime

    def __post_init__(self) -> None:
        if len(self.accepted) + len(self.refused) > MAX_ANSWER_BATCHES:
            raise FormatError(f"an answer names at most {MAX_ANSWER_BATCHES:,} batches")
        for bid in (*self.accepted, *(b for b, _ in self.refused)):
            check_chunk_id(bid)
        for _, reason in self.refused:
            if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
                raise FormatError(f"a refusal reason is text of at most {MAX_REASON_CHARS} chars")

    @property
    def finished(self) -> frozenset[str]:
        """Every batch the server is done with (a relay may drop these)."""
        return frozenset(self.accepted) | frozenset(b for b, _ in self.refused)

    def to_signed(self) -> dict[str, Any]:
        return {
            "_type": "records-answer",
            "format": RECEIPT_FORMAT,
            "time": format_time(self.time),
            "accepted": sorted(self.accepted),
            "refused": [{"batch": b, "reason": r} for b, r in sorted(self.refused)],
        }


def sign_answer(
    key: SigningKey, accepted: Sequence[str], refused: Sequence[tuple[str, str]], now: datetime
) -> bytes:
    """The server's signed answer to a relay that forwarded batches."""
    clipped = tuple((b, r[:MAX_REASON_CHARS]) for b, r in refused)
    return key.sign(RecordsAnswer(tuple(accepted), clipped, now).to_signed())


def verify_answer(data: bytes, publisher: PublicKey) -> RecordsAnswer:
    env = open_envelope(data, what="records answer", max_bytes=MAX_ANSWER_BYTES)
    verify_envelope(env, publisher, what="records answer")
    raw = env.signed
    _check_type(raw, "records-answer", "records answer")
    accepted, refused = raw.get("accepted"), raw.get("refused")
    if not isinstance(accepted, list) or not isinstance(refused, list):
        raise FormatError("records answer accepted and refused must be lists")
    pairs: list[tuple[str, str]] = []
    for item in refused:
        if not isinstance(item, dict) or set(item) != {"batch", "reason"}:
            raise FormatError("records answer refusals must be {batch, reason} objects")
        pairs.append((item["batch"], item["reason"]))
    return RecordsAnswer(
        tuple(check_chunk_id(b) for b in accepted),
        tuple(pairs),
        parse_time(raw.get("time"), "records answer time"),
    )
