"""The records exchange, declared once: ``POST /v1/records``, its limits and its reply.

A laptop (or a relay forwarding its inbox) sends sealed batches back to back
(:mod:`satchel.content.batch`; zero batches is a valid request) and names its own device id,
so that whoever answers can hand back the receipt it holds for it. The reply is JSON::

    {"receipts": [BASE64 receipt envelope, ...], "answer": BASE64 answer envelope | null}

Everything in it that matters is signed by the publisher key (receipts, the answer), so the
reply needs no trust in whoever sent it: the server answers with a receipt per device it
stored records of and an answer naming every batch; a relay (:class:`InboxSink`) keeps the
batches for its next sync and answers with the receipt it holds for the asking device, and
no answer (it cannot sign one).

Two sinks implement :class:`RecordsSink` (the server's ingest, a relay's inbox) and
:mod:`satchel.edge.records_route` serves either with one route.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from satchel.content.batch import SealedReader
from satchel.content.errors import FormatError
from satchel.content.receipts import MAX_ANSWER_BYTES, MAX_RECEIPT_BYTES, check_device_id

from .inbox import RelayInbox
from .local import LocalStore

RECORDS_PATH = "/v1/records"
INBOX_DIR = "inbox"  # a relay's inbox: STORE/inbox (sync/inbox.py)
MAX_RECORDS_REQUEST = 32 * 1024 * 1024  # sealed bytes in one request (a relay sends more
MAX_REQUEST_BATCHES = 10_000  # in later syncs); the answer names at most this many batches
MAX_REPLY_RECEIPTS = MAX_REQUEST_BATCHES + 1
MAX_REPLY_BYTES = 4 * (MAX_ANSWER_BYTES + MAX_REPLY_RECEIPTS * MAX_RECEIPT_BYTES) // 3 + 4096


@dataclass(frozen=True, slots=True)
class RecordsReply:
    receipts: tuple[bytes, ...]  # signed receipt envelopes (verified by whoever applies them)
    answer: bytes | None  # the server's signed answer; None from a relay

    def encode(self) -> bytes:
        return json.dumps(
            {
                "receipts": [base64.b64encode(r).decode("ascii") for r in self.receipts],
                "answer": None if self.answer is None else base64.b64encode(self.answer).decode(),
            },
            separators=(",", ":"),
        ).encode()


def parse_reply(body: bytes) -> RecordsReply:
    """A reply's envelopes (not yet verified); FormatError for anything else."""
    if len(body) > MAX_REPLY_BYTES:
        raise FormatError(f"records reply is over the {MAX_REPLY_BYTES:,}-byte limit")
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise FormatError("records reply is not JSON") from None
    if not isinstance(raw, dict) or set(raw) != {"receipts", "answer"}:
        raise FormatError("records reply must be an object with receipts and answer")
    receipts, answer = raw["receipts"], raw["answer"]
    if not isinstance(receipts, list) or len(receipts) > MAX_REPLY_RECEIPTS:
        raise FormatError(f"records reply holds a list of at most {MAX_REPLY_RECEIPTS} receipts")
    return RecordsReply(
        tuple(_b64(r, MAX_RECEIPT_BYTES, "receipt") for r in receipts),
        None if answer is None else _b64(answer, MAX_ANSWER_BYTES, "answer"),
    )


def _b64(value: object, limit: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * limit // 3 + 4:
        raise FormatError(f"records reply {what} must be base64 of at most {limit:,} bytes")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise FormatError(f"records reply {what} is not valid base64") from None


def split_batches(body: bytes) -> list[bytes]:
    """A request body as whole sealed batches (each bounded from its head), or FormatError:
    a body cut inside a batch, or a batch that is not one, refuses the whole request."""
    reader = SealedReader(max_batches=MAX_REQUEST_BATCHES)
    batches = reader.feed(body)
    reader.finish()
    return batches


def check_device(value: str | None) -> str | None:
    """The ``device`` query parameter: a device id, or absent."""
    return None if value is None else check_device_id(value, "request")


class RecordsSink(Protocol):
    """Whoever takes sealed batches: the server (ingest) or a relay (its inbox)."""

    def receive(self, batches: Sequence[bytes], device: str | None) -> RecordsReply: ...


class InboxSink:
    """A relay's side (``satchel share``): keep the batches to forward on the relay's next
    sync, and hand the asking laptop the receipt the relay holds for it (verified under the
    key the relay's store pins, read afresh: the relay may be syncing meanwhile)."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.inbox = RelayInbox(store.root / INBOX_DIR, durable=store.durable)

    def receive(self, batches: Sequence[bytes], device: str | None) -> RecordsReply:
        for data in batches:
            self.inbox.put_batch(data)  # a full inbox: StoreError (503); the laptop keeps all
        publisher = self.store.pinned_key()
        if device is None or publisher is None:
            return RecordsReply((), None)
        held = self.inbox.receipt(device, publisher)
        return RecordsReply(() if held is None else (held.data,), None)
