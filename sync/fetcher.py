"""The small interface between the updater and wherever bytes come from.

An HTTP implementation lives in ``satchel.clients.http``; tests use an in-memory one. Any
fetcher error must be a :class:`~satchel.content.errors.TransportError` or ``NotFoundError``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IndexResponse:
    body: bytes | None  # None: not modified since ``etag`` (HTTP 304)
    etag: str | None


@dataclass(slots=True)
class PackResponse:
    length: int | None  # the body's byte length, when the source knows it
    pieces: Iterator[bytes]

    def close(self) -> None:
        """Stop receiving (e.g. a data budget was reached): the source's connection closes."""
        if isinstance(self.pieces, Generator):
            self.pieces.close()


@dataclass(slots=True)
class RangeResponse:
    """Bytes of one stored object: from ``start`` (0 when the source sent the whole object)."""

    start: int
    total: int | None  # the whole object's length, when the source says it
    pieces: Iterator[bytes]

    def close(self) -> None:
        if isinstance(self.pieces, Generator):
            self.pieces.close()


class Fetcher(Protocol):
    def fetch_index(self, bundle: str, locale: str, etag: str | None) -> IndexResponse:
        """A line's signed release index, or ``body=None`` if it still has ``etag``.
        NotFoundError if the source has no such line."""
        ...

    def fetch_manifest(self, manifest_id: str, base: str | None = None) -> bytes:
        """The manifest as a stored object, or as a delta (0x04) against manifest ``base``."""
        ...

    def fetch_pack(self, manifest_id: str, want: bytes, base: str | None = None) -> PackResponse:
        """A pack with the objects ``want`` selects, as deltas against ``base`` where smaller."""
        ...

    def fetch_delta(self, base: str, manifest_id: str) -> PackResponse:
        """The ready-made pack from version ``base`` to ``manifest_id`` (NotFoundError if none)."""
        ...

    def fetch_range(self, cid: str, start: int, end: int | None = None) -> RangeResponse:
        """Bytes ``start``..``end`` (inclusive; None: to the end) of stored object ``cid``.

        A source that ignores ranges may send the whole object (``start`` 0). NotFoundError if
        the object is not there or the range is past its end.
        """
        ...

    def delta_size(self, base: str, manifest_id: str) -> int:
        """The byte length of the ready-made pack :meth:`fetch_delta` would send, unsent."""
        ...

    def pack_size(self, manifest_id: str, want: bytes, base: str | None = None) -> int:
        """The exact byte length of the pack :meth:`fetch_pack` would send, unsent."""
        ...
