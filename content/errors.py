"""The one exception hierarchy of Satchel.

::

    SatchelError
    ├── ContentError            the data is wrong: never retry the same bytes
    │   ├── FormatError         malformed or unsupported encoding (manifest, index, object, pack)
    │   │   └── UnsafePathError a path that could escape or clash inside a checkout
    │   ├── IntegrityError      bytes do not match their id, size or declared length
    │   └── TrustError          bad or missing signature, unknown key, rollback, expired index
    ├── TransportError          the link failed (lives in satchel.sync.errors): retrying may help
    ├── NotFoundError           a bundle, version or object that does not exist
    ├── StoreError              the local store cannot do what was asked (disk, layout)
    └── UsageError              the caller asked for something impossible (bad name, bad option)

Every message is one line a person can act on: it says what was wrong and, where it helps,
what to do.
"""

from __future__ import annotations


class SatchelError(Exception):
    """Root of every error Satchel raises on purpose."""


class ContentError(SatchelError):
    """The bytes are wrong; fetching the same bytes again will not help."""


class FormatError(ContentError):
    """Malformed, truncated, oversized or unsupported encoding."""


class UnsafePathError(FormatError):
    """A path that is absolute, climbs out with '..', or otherwise cannot be checked out safely."""


class IntegrityError(ContentError):
    """Bytes whose hash or size differs from what a signed document promised."""


class TrustError(ContentError):
    """A signature that does not verify, a key that is not the pinned one, a rollback or freeze."""


class NotFoundError(SatchelError):
    """Something asked for by name does not exist."""


class StoreError(SatchelError):
    """The local store cannot complete an operation (layout, permissions, disk)."""


class UsageError(SatchelError):
    """A bad argument: invalid bundle name, locale, option combination."""
