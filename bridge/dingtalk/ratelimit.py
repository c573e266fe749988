"""Client-side rate limiting for DingTalk calls, on an injected clock.

DingTalk allows 20 calls per second per app per endpoint and answers more with 90018; a worker that bursts
past it wastes calls and retries. `RateLimiter` keeps each endpoint under the limit before the call leaves the
process: at most `rate * window_s` calls start in any rolling window (a sliding log of start times), and
consecutive starts are at least `1 / rate` apart, so a steady stream is spread evenly instead of 20 calls in
the first millisecond of each second. (With an integer `rate * window_s` the spacing alone already keeps the
window; the sliding log is what holds a fractional rate such as 2.5/s to 2 calls per second.) Waiters are
served first come, first served. Only `clock.monotonic()` and `clock.sleep()` are used, so tests
with a FakeClock run instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from bridge.clock import Clock

# Float rounding over many additions can land a start a hair before its slot (1004.9499999999991 instead of
# 1004.95); a nanosecond of slack on every wait keeps both limits exact.
_SLACK_S = 1e-9


class RateLimiter:
    """At most `rate` calls per second: a sliding-log window plus minimum spacing, FIFO under concurrency."""

    def __init__(self, rate: float, clock: Clock, window_s: float = 1.0) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of calls per second, got {rate!r}")
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.rate = float(rate)
        self.window_s = float(window_s)
        self.capacity = max(1, math.floor(self.rate * self.window_s + 1e-9))
        self.spacing_s = 1.0 / self.rate
        self._clock = clock
        self._starts: deque[float] = deque(maxlen=self.capacity)
        self._lock = asyncio.Lock()  # asyncio.Lock wakes waiters in arrival order: that is the FIFO

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}, window_s={self.window_s:g})"

    def _ready_at(self) -> float:
        """The earliest monotonic time the next call may start."""
        ready = self._starts[-1] + self.spacing_s + _SLACK_S if self._starts else -math.inf
        if len(self._starts) == self.capacity:
            ready = max(ready, self._starts[0] + self.window_s + _SLACK_S)
        return ready

    async def acquire(self) -> None:
        """Wait until a call may start, and record that it started."""
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                wait = self._ready_at() - now
                if wait <= 0:
                    break
                await self._clock.sleep(wait)
            self._starts.append(now)


class EndpointLimiters:
    """One RateLimiter per DingTalk endpoint (DingTalk counts each API separately)."""

    def __init__(self, rate: float, clock: Clock, window_s: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of calls per second, got {rate!r}")
        self.rate = rate
        self.window_s = window_s
        self._clock = clock
        self._limiters: dict[str, RateLimiter] = {}

    def for_call(self, name: str) -> RateLimiter:
        limiter = self._limiters.get(name)
        if limiter is None:
            limiter = self._limiters[name] = RateLimiter(self.rate, self._clock, self.window_s)
        return limiter
