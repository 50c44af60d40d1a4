"""The one exception hierarchy of Satchel, and what each error means at an edge.

::

    SatchelError                   500  exit 1  anything else we raise on purpose
    ├── ContentError               422  exit 3  the data is wrong: never retry the same bytes
    │   ├── FormatError                         malformed or unsupported encoding
    │   │   └── UnsafePathError                 a path that could escape or clash in a checkout
    │   ├── IntegrityError                      bytes do not match their id, size or length
    │   └── TrustError                          bad signature, unknown key, rollback, expiry
    ├── TransportError             422  exit 4  the link failed or a body was cut: retry resumes
    │   ├── TruncatedError                      a stream ended before its end marker
    │   └── StalledError           408          the peer stopped sending
    ├── AuthError                  401  exit 1  missing, unknown or revoked credentials
    ├── ForbiddenError             403  exit 1  known credentials that may not do this
    ├── NotFoundError              404  exit 1  a bundle, version or object that does not exist
    ├── TooLargeError              413  exit 1  a request or document over its limit
    ├── RateLimitedError           429  exit 1  too many failed attempts; retry later
    ├── StoreError                 503  exit 1  storage cannot do what was asked (disk, layout)
    └── UsageError                 400  exit 2  a bad argument: name, option, combination

Each class carries its HTTP ``status`` and its command-line ``exit_code``; every edge (the API,
the web page, the relay, the viewer, the CLI) reads them from here, so one table decides. A
``TransportError`` is 422 on a server because there it means a request body arrived broken.

Every message is one line a person can act on: it says what was wrong and, where it helps,
what to do. Messages never carry a server's own file paths (a storage failure says so, and
the operator finds the detail in the server's log).
"""

from __future__ import annotations


class SatchelError(Exception):
    """Root of every error Satchel raises on purpose."""

    status = 500
    exit_code = 1


class ContentError(SatchelError):
    """The bytes are wrong; fetching the same bytes again will not help."""

    status = 422
    exit_code = 3


class FormatError(ContentError):
    """Malformed, truncated, oversized or unsupported encoding."""


class UnsafePathError(FormatError):
    """A path that is absolute, climbs out with '..', or otherwise cannot be checked out safely."""


class IntegrityError(ContentError):
    """Bytes whose hash or size differs from what a signed document promised."""


class TrustError(ContentError):
    """A signature that does not verify, a key that is not the pinned one, a rollback or freeze."""


class TransportError(SatchelError):
    """The connection failed, timed out, was cut, or the server answered with an error status."""

    status = 422
    exit_code = 4


class TruncatedError(TransportError):
    """A stream ended before its end marker: the link was cut (or cut on purpose). Resumable."""


class StalledError(TransportError):
    """The other side stopped sending for too long (a stalled or slowloris peer)."""

    status = 408


class AuthError(SatchelError):
    """Missing, unknown or revoked credentials."""

    status = 401


class ForbiddenError(SatchelError):
    """Valid credentials that do not allow this (wrong role, bundle, locale or origin)."""

    status = 403


class NotFoundError(SatchelError):
    """Something asked for by name does not exist."""

    status = 404


class TooLargeError(SatchelError):
    """A request body or document over the limit it is read with."""

    status = 413


class RateLimitedError(SatchelError):
    """Too many failures from one address: refused for ``retry_after`` seconds."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(SatchelError):
    """Storage cannot complete an operation (layout, permissions, disk)."""

    status = 503


class UsageError(SatchelError):
    """A bad argument: invalid bundle name, locale, option combination."""

    status = 400
    exit_code = 2


def http_status(exc: BaseException) -> int:
    """The HTTP status of an error: its class's, or 500 for anything that is not ours."""
    return exc.status if isinstance(exc, SatchelError) else 500
