"""Ed25519 keys and signed documents (TUF-style envelopes over canonical JSON).

A signed document is the canonical JSON of::

    {"signatures": [{"keyid": HEX, "sig": BASE64}], "signed": {...}}

where each signature is Ed25519 over the canonical bytes of ``signed``, and ``keyid`` is the
SHA-256 of the raw 32-byte public key (the fingerprint a person compares and passes as
``--trust``). The document's own id is the SHA-256 of the whole envelope's bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import canonical
from .errors import FormatError, TrustError


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise FormatError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise FormatError(f"{what} is not valid base64") from None


def normalize_fingerprint(text: str) -> str:
    """Accept a fingerprint with or without ':' / spaces / upper case; return 64 lowercase hex."""
    cleaned = text.replace(":", "").replace(" ", "").strip().lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise FormatError(f"fingerprint {text!r} is not 64 hex digits")
    return cleaned


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A publisher's Ed25519 public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise FormatError("an Ed25519 public key is 32 bytes")

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def fingerprint(self) -> str:
        """The keyid grouped in fours, for people to read aloud and compare."""
        kid = self.keyid
        return ":".join(kid[i : i + 4] for i in range(0, 64, 4))

    def to_json(self) -> dict[str, str]:
        return {"keyid": self.keyid, "public_key": _b64(self.raw), "scheme": "ed25519"}

    @classmethod
    def from_json(cls, raw: object) -> PublicKey:
        if not isinstance(raw, dict) or raw.get("scheme") != "ed25519":
            raise FormatError("publisher key must be an object with scheme 'ed25519'")
        key = cls(_unb64(raw.get("public_key"), "publisher public_key"))
        if raw.get("keyid") != key.keyid:
            raise FormatError("publisher keyid does not match its public key")
        return key

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """A publisher's Ed25519 private key, kept in a PEM (PKCS#8) file readable only by its owner."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = PublicKey(
            private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise FormatError(
                f"{path.name} is not an unencrypted PEM Ed25519 key ({exc})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise FormatError(f"{path.name} holds a key that is not Ed25519")
        return cls(key)

    def pem(self) -> bytes:
        """The key as an unencrypted PKCS#8 PEM (for a file only its owner may read)."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def derive_secret(self, info: bytes, length: int = 32) -> bytes:
        """A secret for another purpose, derived from this key with HKDF-SHA256 (RFC 5869).

        The input is the 32-byte Ed25519 seed; ``info`` names the purpose, so every purpose
        gets an independent secret and whoever holds the signing key can derive it again
        (replicas sharing one key share every derived secret, with no new file).
        """
        seed = self._private.private_bytes_raw()
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(seed)

    def save(self, path: Path) -> None:
        """Write the key with mode 0600, never replacing an existing key file."""
        pem = self.pem()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        try:
            key.save(path)
        except FileExistsError:  # another process created it first: use theirs
            return cls.load(path)
        return key

    def sign(self, signed: dict[str, Any]) -> bytes:
        """Return the canonical envelope bytes of ``signed`` with this key's signature."""
        message = canonical.encode(signed)
        sig = self._private.sign(message)
        return canonical.encode(
            {"signatures": [{"keyid": self.public.keyid, "sig": _b64(sig)}], "signed": signed}
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed, not yet verified, signed document."""

    signed: dict[str, Any]
    signatures: tuple[tuple[str, bytes], ...]
    raw: bytes
    message: bytes  # the canonical bytes of ``signed``: what the signatures sign

    @property
    def doc_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


_SIGNATURES_HEAD = b'{"signatures":'
_SIGNED_HEAD = b',"signed":'


def open_envelope(data: bytes, *, what: str, max_bytes: int) -> Envelope:
    """Parse a signed document's envelope (structure only; see :func:`verify_envelope`)."""
    doc = canonical.decode(data, what=what, max_bytes=max_bytes)
    if not isinstance(doc, dict) or set(doc) != {"signatures", "signed"}:
        raise FormatError(f"{what} must be an object with exactly 'signatures' and 'signed'")
    signed, sigs = doc["signed"], doc["signatures"]
    if not isinstance(signed, dict) or not isinstance(sigs, list) or not 1 <= len(sigs) <= 8:
        raise FormatError(f"{what} has a malformed signature envelope")
    parsed: list[tuple[str, bytes]] = []
    for sig in sigs:
        if not isinstance(sig, dict) or not isinstance(sig.get("keyid"), str):
            raise FormatError(f"{what} has a malformed signature entry")
        parsed.append((sig["keyid"], _unb64(sig.get("sig"), f"{what} signature")))
    # The signed bytes are a slice of the document: it is canonical (decode checked that it
    # re-encodes to itself) and "signatures" sorts before "signed", so the document is
    # {"signatures":S,"signed":M} with S re-encoded here (small) and M the rest but "}".
    start = len(_SIGNATURES_HEAD) + len(canonical.encode(sigs)) + len(_SIGNED_HEAD)
    return Envelope(signed=signed, signatures=tuple(parsed), raw=data, message=data[start:-1])


def verify_envelope(
    env: Envelope, key: PublicKey, *, what: str, signer: str = "the pinned publisher key"
) -> None:
    """Raise TrustError unless ``env`` carries a valid signature by ``key``.

    ``signer`` names the key in the message (a device key signs learning records).
    """
    message = env.message  # not re-encoded: 17 MB for a manifest of 100,000 files
    for keyid, sig in env.signatures:
        if keyid == key.keyid:
            if key.verify(sig, message):
                return
            raise TrustError(f"{what} has a bad signature from key {key.fingerprint}")
    raise TrustError(f"{what} is not signed by {signer} {key.fingerprint}")
