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
    │   ├── StalledError           408          the peer stopped sending
    │   └── UnreachableError                    nothing answers at that address
    ├── NotFoundError              404  exit 6  a bundle, version or object that does not exist
    ├── MachineError               503  exit 7  this machine cannot: a busy port, a full disk
    │   └── StoreError                          storage cannot do what was asked (disk, layout)
    ├── AuthError                  401  exit 8  missing, unknown or revoked credentials
    ├── ForbiddenError             403  exit 8  known credentials that may not do this
    ├── RateLimitedError           429  exit 8  too many failed attempts; retry later
    ├── TooLargeError              413  exit 2  a request or document over its limit
    └── UsageError                 400  exit 2  a bad argument: name, option, combination

The command line's exit codes are this one table (:data:`EXIT_CODES`); two of them belong
to no error: 5, a sync that stopped at its ``--max-bytes`` budget (everything received is
kept), and 130, a command interrupted with Ctrl-C (everything verified is kept).

Each class carries its HTTP ``status`` and its command-line ``exit_code``; every edge (the API,
the web page, the relay, the viewer, the CLI) reads them from here, so one table decides. A
``TransportError`` is 422 on a server because there it means a request body arrived broken.

Every message is one line a person can act on: it says what was wrong and, where it helps,
what to do. Messages never carry a server's own file paths (a storage failure says so, and
the operator finds the detail in the server's log).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_VERIFICATION = 3
EXIT_LINK = 4
EXIT_BUDGET = 5
EXIT_NOT_FOUND = 6
EXIT_MACHINE = 7
EXIT_REFUSED = 8
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_OTHER: "any other error",
    EXIT_USAGE: "bad usage: a wrong option, name, folder or combination",
    EXIT_VERIFICATION: "data failed verification or trust (nothing stored was changed)",
    EXIT_LINK: "the link failed, after any retries (run again to resume)",
    EXIT_BUDGET: "sync --max-bytes budget reached (everything received is kept; run again)",
    EXIT_NOT_FOUND: "not found: no such bundle, locale, version, file or token",
    EXIT_MACHINE: "this machine cannot: a port in use, a full disk, a folder it may not write",
    EXIT_REFUSED: "refused: a token that is missing, unknown, revoked or not allowed this",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); everything verified is kept: run again to resume",
}
"""Every exit code of ``satchel`` and its meaning (README and ``satchel --help`` say the same)."""


class SatchelError(Exception):
    """Root of every error Satchel raises on purpose."""

    status = 500
    exit_code = EXIT_OTHER


class ContentError(SatchelError):
    """The bytes are wrong; fetching the same bytes again will not help."""

    status = 422
    exit_code = EXIT_VERIFICATION


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
    exit_code = EXIT_LINK


class TruncatedError(TransportError):
    """A stream ended before its end marker: the link was cut (or cut on purpose). Resumable."""


class StalledError(TransportError):
    """The other side stopped sending for too long (a stalled or slowloris peer)."""

    status = 408


class UnreachableError(TransportError):
    """Nothing answered at the address: connection refused, unknown host, no route. Unlike a
    cut in mid-transfer, the likely cause is a wrong URL or a server that is not running."""


class AuthError(SatchelError):
    """Missing, unknown or revoked credentials."""

    status = 401
    exit_code = EXIT_REFUSED


class ForbiddenError(SatchelError):
    """Valid credentials that do not allow this (wrong role, bundle, locale or origin)."""

    status = 403
    exit_code = EXIT_REFUSED


class NotFoundError(SatchelError):
    """Something asked for by name does not exist."""

    status = 404
    exit_code = EXIT_NOT_FOUND


class TooLargeError(SatchelError):
    """A request body or document over the limit it is read with."""

    status = 413
    exit_code = EXIT_USAGE


class RateLimitedError(SatchelError):
    """Too many failures from one address: refused for ``retry_after`` seconds."""

    status = 429
    exit_code = EXIT_REFUSED

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MachineError(SatchelError):
    """This machine cannot do what was asked: a port already in use, a full disk, a folder it
    may not write. Nothing is wrong with the data or the command; the machine must change."""

    status = 503
    exit_code = EXIT_MACHINE


class StoreError(MachineError):
    """Storage cannot complete an operation (layout, permissions, disk)."""


class UsageError(SatchelError):
    """A bad argument: invalid bundle name, locale, option combination."""

    status = 400
    exit_code = EXIT_USAGE


def http_status(exc: BaseException) -> int:
    """The HTTP status of an error: its class's, or 500 for anything that is not ours."""
    return exc.status if isinstance(exc, SatchelError) else 500
