"""The small interface between the updater and wherever bytes come from.

An HTTP implementation lives in ``satchel.clients.http``; tests use an in-memory one. Any
fetcher error must be a :class:`~satchel.sync.errors.TransportError` or ``NotFoundError``.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class Fetcher(Protocol):
    def fetch_index(self, etag: str | None) -> IndexResponse:
        """The signed release index, or ``body=None`` if it still has ``etag``."""
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
