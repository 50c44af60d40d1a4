"""Errors of the sync layer, on top of :mod:`satchel.content.errors` (one hierarchy).

``ContentError`` (the data is wrong) and ``TransportError`` (the link failed) are the two
roots a caller branches on: the first must never be retried with the same source, the second
may be retried, and resumes where it stopped because every verified chunk is already stored.
"""

from __future__ import annotations

from satchel.content.errors import (
    ContentError,
    FormatError,
    IntegrityError,
    NotFoundError,
    SatchelError,
    StoreError,
    TrustError,
    UnsafePathError,
    UsageError,
)


class TransportError(SatchelError):
    """The connection failed, timed out, was cut, or the server answered with an error status."""


class TruncatedError(TransportError):
    """A stream ended before its end marker: the link was cut (or cut on purpose). Resumable."""


class AuthError(SatchelError):
    """Missing, unknown, revoked or insufficient credentials."""


__all__ = [
    "AuthError",
    "ContentError",
    "FormatError",
    "IntegrityError",
    "NotFoundError",
    "SatchelError",
    "StoreError",
    "TransportError",
    "TruncatedError",
    "TrustError",
    "UnsafePathError",
    "UsageError",
]
