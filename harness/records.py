"""Builders for learning-record tests: learners, records, and sealed batches made by hand."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import zstandard
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from satchel.content import canonical
from satchel.content.batch import MAGIC
from satchel.content.joincode import generate_join_code
from satchel.content.records import Learner, Record, new_learner_id
from satchel.content.recordskey import RecordsPublicKey
from satchel.content.signing import SigningKey

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CODE = generate_join_code(lambda n: bytes(range(1, n + 1)))
SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)


def learner(name: str = "Ана Петренко", code: str = CODE, **changes: Any) -> Learner:
    base = Learner(new_learner_id(), name, code, "intro-stats", "en", T0)
    return replace(base, **changes)


def record(seq: int, who: Learner, kind: str = "answered", **changes: Any) -> Record:
    fields: dict[str, Any] = {
        "seq": seq,
        "learner": who.learner,
        "class_code": who.class_code,
        "bundle": "intro-stats",
        "locale": "en",
        "lesson": f"ch{seq % 7}/lesson-{seq % 5}.md",
        "kind": kind,
        "question": None,
        "answer": None,
        "correct": None,
        "score_milli": None,
        "time": T0 + timedelta(seconds=seq),
    }
    if kind == "answered":
        fields.update(question=f"q{seq % 9}", answer=f"{seq % 13}", correct=seq % 3 != 0)
        fields["score_milli"] = 1000 if fields["correct"] else 0
    fields.update(changes)
    return Record(**fields)


def records(first: int, last: int, who: Learner) -> list[Record]:
    kinds = ("opened", "answered", "answered", "completed")
    return [record(s, who, kinds[s % 4]) for s in range(first, last + 1)]


def body(device: SigningKey, learners: Sequence[Learner], recs: Sequence[Record]) -> dict[str, Any]:
    return {
        "_type": "records",
        "format": 1,
        "device": device.public.to_json(),
        "learners": [lr.to_json() for lr in sorted(learners, key=lambda lr: lr.learner)],
        "records": [r.to_json() for r in recs],
    }


def seal_raw(
    envelope: bytes,
    recipient: RecordsPublicKey,
    *,
    magic: bytes = MAGIC,
    compress: bool = True,
    header_keyid: str | None = None,
) -> bytes:
    """Seal any bytes the way a batch is sealed (for documents the writer would refuse)."""
    frame = zstandard.ZstdCompressor(level=3).compress(envelope) if compress else envelope
    info = magic + bytes.fromhex(recipient.keyid)
    ciphertext = SUITE.encrypt(frame, recipient.key(), info=info)
    keyid = bytes.fromhex(header_keyid or recipient.keyid)
    return struct.pack(">8s32sI", magic, keyid, len(ciphertext)) + ciphertext


def seal_body(doc: dict[str, Any], signer: SigningKey, recipient: RecordsPublicKey) -> bytes:
    return seal_raw(signer.sign(doc), recipient)


def canonical_bytes(value: Any) -> bytes:
    return canonical.encode(value)
