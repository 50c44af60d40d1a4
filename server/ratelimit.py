"""A brake on token guessing: failed authentications per client address, as a token bucket.

Each address has a bucket of ``burst`` failures that refills at ``burst`` per ``period``
seconds. A failed authentication takes one; an address with an empty bucket is refused
(HTTP 429 with Retry-After) before its token is even looked up. Successful requests cost
nothing, so a classroom behind one address is not slowed down by its own syncs. Memory is
bounded: at most ``max_addresses`` buckets, the least recently used dropped first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from satchel.content.errors import SatchelError


class RateLimited(SatchelError):
    """Too many failed authentications from one address; try again after ``retry_after``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed authentications from this address; retry in {retry_after} s"
        )
        self.retry_after = retry_after


class FailureLimiter:
    def __init__(
        self,
        *,
        burst: int = 10,
        period: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or period <= 0 or max_addresses < 1:
            raise ValueError("burst, period and max_addresses must be positive")
        self.burst = burst
        self.rate = burst / period  # failures forgiven per second
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def _level(self, address: str, now: float) -> float:
        tokens, then = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - then) * self.rate)

    def check(self, address: str) -> None:
        """Raise RateLimited when ``address`` has no failures left to spend."""
        with self._lock:
            now = self.clock()
            level = self._level(address, now)
        if level < 1:
            raise RateLimited(max(1, math.ceil((1 - level) / self.rate)))

    def failure(self, address: str) -> None:
        """Record one failed authentication from ``address``."""
        with self._lock:
            now = self.clock()
            level = self._level(address, now)
            self._buckets[address] = (max(0.0, level - 1), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
