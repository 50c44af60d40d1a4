"""Sealed batches: learning records as they travel by network, relay or USB stick.

One format for every route. Inside, a document signed by the device key (an envelope over
canonical JSON, :mod:`satchel.content.signing`)::

    {"_type": "records", "format": 1,
     "device": {"keyid": HEX, "public_key": BASE64, "scheme": "ed25519"},
     "learners": [learner, ...],      sorted by id: every learner the records name, no other
     "records": [record, ...]}        ascending seq (:mod:`satchel.content.records`)

compressed as one zstd frame that declares its size, then sealed with HPKE (RFC 9180, base
mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the server's records key
(:mod:`satchel.content.recordskey`). On the outside, all integers big-endian::

    sealed = magic recipient length ciphertext
    magic      "SATSEAL" 0x01          8 bytes (the last byte is the format version)
    recipient  32 bytes                key id of the records key it is sealed to
    length     u32                     bytes of ciphertext that follow, and nothing after
    ciphertext HPKE enc (32) || AEAD ciphertext of the zstd frame (+16 tag)

HPKE's ``info`` is the first 40 bytes (magic, version, recipient), so a batch cannot be
opened as another version or for another key. Nothing else is in clear: a relay or a found
stick learns the recipient key (one per deployment) and the size. The batch id is the
SHA-256 of the whole sealed bytes; relays and sticks name and deduplicate batches by it.

The device key is inside, covered by its own signature: a batch proves which device wrote
it, and the server decides (revocation, exactly-once by device and seq) with
:mod:`satchel.sync.ingest`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from .errors import FormatError, IntegrityError, TrustError
from .objects import check_frame, decompress_checked
from .records import Learner, Record
from .recordskey import RecordsPrivateKey, RecordsPublicKey
from .signing import PublicKey, SigningKey, open_envelope, verify_envelope

MAGIC = b"SATSEAL\x01"
_HEAD = struct.Struct(">8s32sI")
HEADER_SIZE = _HEAD.size  # 44
BATCH_FORMAT = 1
SEALED_MEDIA_TYPE = "application/vnd.satchel.sealed"

MAX_SEALED_BYTES = 4 * 1024 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # the signed document, decompressed
MAX_BATCH_RECORDS = 2000
MAX_BATCH_LEARNERS = 1000
TARGET_PAYLOAD_BYTES = 1024 * 1024  # a writer starts a new batch beyond this
ZSTD_LEVEL = 19

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_MIN_CIPHERTEXT = 32 + 16  # HPKE enc + AEAD tag
_WHAT = "sealed batch"


@dataclass(frozen=True, slots=True)
class SealedHeader:
    recipient: str  # key id (hex) of the records key
    length: int  # ciphertext bytes after the header

    @property
    def total(self) -> int:
        return HEADER_SIZE + self.length


@dataclass(frozen=True, slots=True)
class VerifiedBatch:
    """A batch that decrypted, decompressed within bounds, and verified under its device key."""

    batch_id: str
    device: str  # the device id: key id of its Ed25519 key
    device_key: PublicKey
    learners: tuple[Learner, ...]
    records: tuple[Record, ...]


def batch_id(sealed: bytes) -> str:
    return hashlib.sha256(sealed).hexdigest()


def read_header(head: bytes, *, max_bytes: int = MAX_SEALED_BYTES) -> SealedHeader:
    """Parse the 44-byte head of a sealed batch; refuses a batch over ``max_bytes`` from it."""
    if len(head) < HEADER_SIZE:
        raise FormatError(f"{_WHAT} is cut short: {len(head)} bytes, its header alone is 44")
    magic, recipient, length = _HEAD.unpack_from(head)
    if magic[:7] != MAGIC[:7]:
        raise FormatError(f"{_WHAT} does not start with SATSEAL (not a sealed batch)")
    if magic[7] != MAGIC[7]:
        raise FormatError(f"{_WHAT} format {magic[7]} is not {MAGIC[7]}; update satchel")
    if HEADER_SIZE + length > max_bytes:
        raise FormatError(
            f"{_WHAT} declares {HEADER_SIZE + length:,} bytes, over the {max_bytes:,}-byte limit"
        )
    if length < _MIN_CIPHERTEXT:
        raise FormatError(f"{_WHAT} declares {length} bytes of ciphertext, too few to be one")
    return SealedHeader(recipient.hex(), length)


def _info(recipient: RecordsPublicKey) -> bytes:
    return MAGIC + bytes.fromhex(recipient.keyid)


def _check_contents(learners: Sequence[Learner], records: Sequence[Record]) -> None:
    if not 1 <= len(records) <= MAX_BATCH_RECORDS:
        raise FormatError(f"a batch holds 1 to {MAX_BATCH_RECORDS} records, not {len(records)}")
    if len(learners) > MAX_BATCH_LEARNERS:
        raise FormatError(f"a batch names at most {MAX_BATCH_LEARNERS} learners")
    ids = [lr.learner for lr in learners]
    if ids != sorted(set(ids)):
        raise FormatError("batch learners must be sorted by id, each once")
    by_id = {lr.learner: lr for lr in learners}
    last = 0
    used: set[str] = set()
    for rec in records:
        if rec.seq <= last:
            raise FormatError(f"batch records must have ascending seq ({rec.seq} after {last})")
        last = rec.seq
        learner = by_id.get(rec.learner)
        if learner is None:
            raise FormatError(f"record {rec.seq} names a learner the batch does not list")
        if rec.class_code != learner.class_code:
            raise FormatError(f"record {rec.seq} has a class code other than its learner's")
        used.add(rec.learner)
    if used != set(ids):
        raise FormatError("batch lists learners that none of its records name")


def signed_body(
    device: PublicKey, learners: Sequence[Learner], records: Sequence[Record]
) -> dict[str, Any]:
    return {
        "_type": "records",
        "format": BATCH_FORMAT,
        "device": device.to_json(),
        "learners": [lr.to_json() for lr in learners],
        "records": [r.to_json() for r in records],
    }


def seal_batch(
    learners: Sequence[Learner],
    records: Sequence[Record],
    device: SigningKey,
    recipient: RecordsPublicKey,
) -> bytes:
    """Sign ``records`` (and the learners they name) with ``device``, compress, seal."""
    learners = sorted(learners, key=lambda lr: lr.learner)
    _check_contents(learners, records)
    envelope = device.sign(signed_body(device.public, learners, records))
    if len(envelope) > MAX_PAYLOAD_BYTES:
        raise FormatError(f"a batch of {len(records)} records is over the payload limit")
    frame = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(envelope)
    ciphertext = _SUITE.encrypt(frame, recipient.key(), info=_info(recipient))
    sealed = _HEAD.pack(MAGIC, bytes.fromhex(recipient.keyid), len(ciphertext)) + ciphertext
    if len(sealed) > MAX_SEALED_BYTES:
        raise FormatError(f"a sealed batch of {len(records)} records is over the size limit")
    return sealed


def open_batch(
    sealed: bytes, records_key: RecordsPrivateKey, *, max_bytes: int = MAX_SEALED_BYTES
) -> VerifiedBatch:
    """Decrypt, decompress (bounded), verify the device signature and every field.

    Raises FormatError (malformed, oversized, unknown version), IntegrityError (altered or
    cut in transit) or TrustError (sealed to another key, or a bad device signature).
    """
    head = read_header(sealed, max_bytes=max_bytes)
    if len(sealed) != head.total:
        raise IntegrityError(
            f"{_WHAT} is {len(sealed):,} bytes but its header declares {head.total:,}"
            " (cut short or padded in transit)"
        )
    own = records_key.public
    if head.recipient != own.keyid:
        raise TrustError(
            f"{_WHAT} is sealed to records key {head.recipient[:16]}..., not this server's"
            f" {own.keyid[:16]}... (made for another server, or before a key change)"
        )
    try:
        frame = _SUITE.decrypt(sealed[HEADER_SIZE:], records_key.private, info=_info(own))
    except (InvalidTag, ValueError):  # ValueError: an encapsulated key that is no point
        raise IntegrityError(f"{_WHAT} does not decrypt: it was altered or damaged") from None
    envelope = _decompress(frame)
    return _verify(envelope, batch_id(sealed))


def _decompress(frame: bytes) -> bytes:
    try:
        size = zstandard.get_frame_parameters(frame).content_size
    except zstandard.ZstdError as exc:
        raise FormatError(f"{_WHAT} holds a corrupt zstd frame ({exc})") from None
    if size >= zstandard.CONTENTSIZE_ERROR:
        raise FormatError(f"{_WHAT} holds a zstd frame that does not declare its size")
    if size > MAX_PAYLOAD_BYTES:
        raise FormatError(
            f"{_WHAT} unpacks to {size:,} bytes, over the {MAX_PAYLOAD_BYTES:,}-byte limit"
        )
    check_frame(frame, size, _WHAT)
    return decompress_checked(frame, size, None, _WHAT)


def _verify(envelope: bytes, bid: str) -> VerifiedBatch:
    env = open_envelope(envelope, what=_WHAT, max_bytes=MAX_PAYLOAD_BYTES)
    body = env.signed
    if body.get("_type") != "records":
        raise FormatError(f"{_WHAT} does not hold records (its _type is not 'records')")
    if body.get("format") != BATCH_FORMAT:
        raise FormatError(
            f"{_WHAT} records format {body.get('format')!r} is not {BATCH_FORMAT}; update satchel"
        )
    if set(body) != {"_type", "format", "device", "learners", "records"}:
        raise FormatError(f"{_WHAT} has unknown or missing fields")
    device = PublicKey.from_json(body["device"])
    verify_envelope(env, device, what=_WHAT, signer="its device key")
    raw_learners, raw_records = body["learners"], body["records"]
    if not isinstance(raw_learners, list) or not isinstance(raw_records, list):
        raise FormatError(f"{_WHAT} learners and records must be lists")
    if len(raw_records) > MAX_BATCH_RECORDS or len(raw_learners) > MAX_BATCH_LEARNERS:
        raise FormatError(f"{_WHAT} holds more records or learners than a batch may")
    learners = tuple(Learner.from_json(lr) for lr in raw_learners)
    records = tuple(Record.from_json(r) for r in raw_records)
    _check_contents(learners, records)
    return VerifiedBatch(bid, device.keyid, device, learners, records)


class SealedReader:
    """Sans-IO splitter for sealed batches sent back to back (one request, many batches).

    Each batch is refused from its header, before it is buffered, when it declares more than
    the limit; at most one batch is held at a time.
    """

    def __init__(self, *, max_bytes: int = MAX_SEALED_BYTES, max_batches: int = 10_000) -> None:
        self._buf = bytearray()
        self._max_bytes = max_bytes
        self._left = max_batches
        self.count = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= HEADER_SIZE:
            total = read_header(bytes(self._buf[:HEADER_SIZE]), max_bytes=self._max_bytes).total
            if len(self._buf) < total:
                break
            if self._left == 0:
                raise FormatError(f"more than {self.count:,} sealed batches in one stream")
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]
            self._left -= 1
            self.count += 1
        return out

    def finish(self) -> None:
        """Raise unless the stream ended exactly after a whole batch."""
        if self._buf:
            raise FormatError(
                f"sealed batch stream was cut short after {self.count} whole batches"
                f" ({len(self._buf)} bytes of the next)"
            )
