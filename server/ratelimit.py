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
from collections.abc import Callable

from cachetools import LRUCache
from satchel.content.errors import RateLimitedError


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
        # address -> (failures left, when): the least recently failing address goes first.
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(max_addresses)
        self._lock = threading.Lock()

    def _level(self, address: str, now: float) -> float:
        tokens, then = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - then) * self.rate)

    def check(self, address: str) -> None:
        """Raise RateLimitedError when ``address`` has no failures left to spend."""
        with self._lock:
            now = self.clock()
            level = self._level(address, now)
        if level < 1:
            wait = max(1, math.ceil((1 - level) / self.rate))
            raise RateLimitedError(
                f"too many failed authentications from this address; retry in {wait} s", wait
            )

    def failure(self, address: str) -> None:
        """Record one failed authentication from ``address``."""
        with self._lock:
            now = self.clock()
            level = self._level(address, now)
            self._buckets[address] = (max(0.0, level - 1), now)
