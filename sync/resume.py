"""Poor-link helpers for the updater: partial objects, retry with backoff, a data budget.

**Partial objects.** When a pack stops inside a frame whose object is a plain stored object
(format 0x00, 0x01 or 0x02; never a 0x03 range delta, which only decodes whole) and at least
:data:`MIN_PARTIAL` bytes of it arrived, the client keeps those bytes in
``STORE/partial/<chunk id>``: ``"SATPART" 0x01``, the declared object length (u32, big-endian),
then the bytes so far. Each file is written atomically. The next sync finishes each one with
``GET /v1/chunks/{id}`` and ``Range: bytes=<have>-`` before it plans its pack, then verifies
the whole object against the signed manifest (nothing in ``partial/`` is trusted). Below 16 KiB
a partial is not worth the extra request: on a 256 kbit/s link with a 500 ms round trip that
turn costs about as much time as resending the bytes.

**Retries.** :class:`RetryPolicy` says how often and how long to wait after a transient link
failure (:func:`is_transient`); every retry resumes, because everything verified is stored.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from satchel.content.errors import FormatError, StalledError, TransportError
from satchel.content.manifest import check_chunk_id
from satchel.content.objects import RAW, ZSTD, ZSTD_DICT

from .fsutil import write_atomic
from .pack import MAX_FRAME

MIN_PARTIAL = 16 * 1024
MAX_PARTIALS = 8
PLAIN_FORMATS = frozenset({RAW, ZSTD, ZSTD_DICT})
_MAGIC = b"SATPART\x01"
_HEAD = struct.Struct(">8sI")


@dataclass(frozen=True, slots=True)
class Partial:
    """The first bytes of a stored object, kept after a cut: ``length`` is the whole object's."""

    chunk_id: str
    length: int
    data: bytes

    @property
    def have(self) -> int:
        return len(self.data)


def keepable(fmt: int | None, have: int, length: int) -> bool:
    """Whether a frame cut after ``have`` of ``length`` object bytes is worth keeping."""
    return fmt in PLAIN_FORMATS and MIN_PARTIAL <= have < length


class PartialStore:
    """``STORE/partial/``: at most :data:`MAX_PARTIALS` partly received objects."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable

    def _path(self, cid: str) -> Path:
        return self.root / check_chunk_id(cid)

    def save(self, partial: Partial) -> None:
        """Keep ``partial`` (replacing an older one of the same object), bounded in number.

        When the bound is reached, the smallest others make room.
        """
        if not 0 < partial.have < partial.length <= MAX_FRAME:
            raise FormatError("a partial object must be shorter than its declared length")
        others = []
        for cid in self.ids():
            if cid != partial.chunk_id:
                try:
                    others.append((self._path(cid).stat().st_size, cid))
                except FileNotFoundError:
                    continue
        others.sort()
        while len(others) >= MAX_PARTIALS:
            self.delete(others.pop(0)[1])
        write_atomic(
            self._path(partial.chunk_id),
            _HEAD.pack(_MAGIC, partial.length) + partial.data,
            durable=self.durable,
        )

    def get(self, cid: str) -> Partial | None:
        path = self._path(cid)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) < _HEAD.size:
            path.unlink(missing_ok=True)
            return None
        magic, length = _HEAD.unpack_from(raw)
        data = raw[_HEAD.size :]
        if magic != _MAGIC or not 0 < len(data) < length <= MAX_FRAME:
            path.unlink(missing_ok=True)  # unreadable bookkeeping: just fetch it whole again
            return None
        return Partial(cid, length, data)

    def load(self) -> list[Partial]:
        """Every kept partial, by chunk id; unreadable files are removed."""
        if not self.root.is_dir():
            return []
        out: list[Partial] = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith("."):
                continue
            try:
                cid = check_chunk_id(path.name)
            except FormatError:
                continue
            partial = self.get(cid)
            if partial is not None:
                out.append(partial)
        return out

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.iterdir()):
            try:
                out.append(check_chunk_id(path.name))
            except FormatError:
                continue
        return out

    def delete(self, cid: str) -> None:
        self._path(cid).unlink(missing_ok=True)


def is_transient(exc: BaseException) -> bool:
    """A link failure that may go away: connection refused/reset, timeout, cut, 5xx, 429.

    A :class:`TransportError` may say otherwise with a false ``transient`` attribute (e.g. an
    HTTP 405 from a relay that will answer the same way every time).
    """
    return isinstance(exc, TransportError) and bool(getattr(exc, "transient", True))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to ``retries`` more attempts; waits base, 2 base, 4 base... (capped), with jitter."""

    retries: int = 0
    base: float = 1.0
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 30))
        return ceiling * (0.5 + 0.5 * self.jitter())  # "equal jitter": never 0, never > cap


class Budget:
    """Bytes of object data (packs and ranges) one sync may still receive; None: no limit."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit <= 0:
            raise ValueError("a byte budget must be positive")
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def spent(self) -> bool:
        return self.limit is not None and self.used >= self.limit


# -- a source that stalls --------------------------------------------------------------------
MIN_BYTES_PER_MINUTE = 4 * 1024  # far under a 2G link's ~1.9 MB a minute, far over a trickle


class ProgressDeadline:
    """Ends a transfer whose source sends less than ``min_bytes`` in a ``window`` of seconds.

    A hostile server or relay can send one byte every 20 s and keep a sync open for ever (each
    byte resets a read timeout). :meth:`arrived` is called with each piece as it arrives; once
    a whole window has passed with fewer than ``min_bytes`` in it, it raises
    :class:`~satchel.content.errors.StalledError`, a link failure: everything verified so far
    is kept, and the next sync resumes. Silence itself is the read timeout's job.
    """

    def __init__(
        self,
        min_bytes: int = MIN_BYTES_PER_MINUTE,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_bytes = min_bytes
        self.window = window
        self.clock = clock
        self._start = clock()
        self._bytes = 0

    def restart(self) -> None:
        self._start = self.clock()
        self._bytes = 0

    def arrived(self, n: int) -> None:
        self._bytes += n
        elapsed = self.clock() - self._start
        if elapsed < self.window:
            return
        if self._bytes < self.min_bytes * elapsed / self.window:
            raise StalledError(
                f"the source sent {self._bytes:,} bytes in {elapsed:.0f} s, under"
                f" {self.min_bytes:,} a minute; stopped, keeping what arrived"
            )
        self.restart()
