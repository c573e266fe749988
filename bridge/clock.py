"""Time, injected.

Everything in bridge that needs the time takes a `Clock`, so tests move time forward instead of sleeping
(token expiry, rate limits, retry backoff, DingTalk's 24-hour and 7-day windows). `SystemClock` is the
real one; `FakeClock` is for tests and for the simulator's movable clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals, rate limits, caches)."""

    def cpu(self) -> float:
        """CPU seconds this process has used (is the process busy: `bridge.priority`)."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def cpu(self) -> float:
        return time.process_time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when told to.

    `sleep()` advances the clock by the requested amount and yields once to the event loop, so code that
    sleeps (a rate limiter, a retry loop) runs instantly and deterministically; `sleeps` records every
    requested delay so tests can assert on them. Its process uses `cpu_share` of a core as its time passes
    (0 unless a test sets it): nothing in a test waits because the real machine happens to be busy.
    """

    def __init__(self, start: datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._now = start or datetime(2026, 11, 29, 2, 0, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._mono = monotonic_start
        self.sleeps: list[float] = []
        self.cpu_share = 0.0
        self._cpu = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def cpu(self) -> float:
        return self._cpu

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
        self._cpu += seconds * self.cpu_share

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
