"""The server's records key: the X25519 key learning records are sealed to.

It is derived from the server's Ed25519 signing key with HKDF-SHA256 (info
``satchel records key v1``), so every replica that shares the signing key (``satchel keygen``,
``serve --signing-key``) opens the same sealed batches with no new file to copy or lose. The
public half travels in the signed release index (``records_key``), so a laptop learns it,
checked against the pinned publisher key, on the sync it already makes.

Public key JSON, like the publisher key's (key id = SHA-256 of the raw 32-byte key)::

    {"keyid": HEX, "public_key": BASE64, "scheme": "x25519"}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .errors import FormatError
from .signing import SigningKey

RECORDS_KEY_INFO = b"satchel records key v1"
SCHEME = "x25519"


@dataclass(frozen=True, slots=True)
class RecordsPublicKey:
    """The public half: what a laptop seals to."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise FormatError("an X25519 public key is 32 bytes")

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.raw)

    def to_json(self) -> dict[str, str]:
        return {
            "keyid": self.keyid,
            "public_key": base64.b64encode(self.raw).decode("ascii"),
            "scheme": SCHEME,
        }

    @classmethod
    def from_json(cls, raw: object) -> RecordsPublicKey:
        if not isinstance(raw, dict) or raw.get("scheme") != SCHEME:
            raise FormatError(f"records key must be an object with scheme {SCHEME!r}")
        text = raw.get("public_key")
        if not isinstance(text, str):
            raise FormatError("records key public_key must be a base64 string")
        try:
            key = cls(base64.b64decode(text.encode("ascii"), validate=True))
        except (binascii.Error, UnicodeEncodeError):
            raise FormatError("records key public_key is not valid base64") from None
        if raw.get("keyid") != key.keyid:
            raise FormatError("records keyid does not match its public key")
        return key


class RecordsPrivateKey:
    """The private half, held only by the server (derived again at every start)."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self.private = private
        self.public = RecordsPublicKey(
            private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls) -> RecordsPrivateKey:
        return cls(X25519PrivateKey.generate())


def derive_records_key(signing: SigningKey) -> RecordsPrivateKey:
    """The records key of the server whose signing key is ``signing`` (deterministic)."""
    seed = signing.derive_secret(RECORDS_KEY_INFO)
    return RecordsPrivateKey(X25519PrivateKey.from_private_bytes(seed))
