"""The download rate limit (`--rate-limit`): an average, and never a burst of idle time."""

from __future__ import annotations

from satchel.clients.http import Throttle


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_reads_are_paced_to_the_rate() -> None:
    t = FakeTime()
    throttle = Throttle(1000, clock=t.clock, sleep=t.sleep)
    for _ in range(10):
        throttle.wait(500)  # 5,000 bytes at 1,000 a second: 4 s beyond the 1 s burst
    assert 3.9 <= t.slept <= 4.1


def test_time_before_the_transfer_is_no_licence_for_a_burst() -> None:
    t = FakeTime()
    throttle = Throttle(1000, clock=t.clock, sleep=t.sleep)
    t.now += 30  # start-up, the index, the manifest: 30 s before the first byte
    for _ in range(10):
        throttle.wait(500)
    assert 3.9 <= t.slept <= 4.1  # as if it had started now, not 30 s of credit


def test_no_rate_never_sleeps() -> None:
    t = FakeTime()
    throttle = Throttle(None, clock=t.clock, sleep=t.sleep)
    throttle.wait(10**9)
    assert t.slept == 0
