"""Tests for bridge.ratelimit on a FakeClock: windows, spacing, FIFO order, per-endpoint independence."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bridge.clock import FakeClock
from bridge.dingtalk.ratelimit import EndpointLimiters, RateLimiter


def _max_in_any_window(starts: list[float], window: float) -> int:
    """The largest number of starts inside any half-open window [t, t + window)."""
    best = 0
    for i, t in enumerate(starts):
        best = max(best, sum(1 for s in starts[i:] if s < t + window))
    return best


async def test_hundred_calls_at_twenty_per_second(clock: FakeClock) -> None:
    limiter = RateLimiter(20, clock)
    t0 = clock.monotonic()
    starts = []
    for _ in range(100):
        await limiter.acquire()
        starts.append(clock.monotonic())
    assert starts[-1] - t0 >= 4.95
    assert starts[-1] - t0 < 5.0
    assert _max_in_any_window(starts, 1.0) <= 20
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.05 - 1e-9


async def test_concurrent_callers_never_exceed_rate_and_are_fifo(clock: FakeClock) -> None:
    limiter = RateLimiter(20, clock)
    order: list[int] = []
    starts: list[float] = []

    async def call(i: int) -> None:
        await limiter.acquire()
        order.append(i)
        starts.append(clock.monotonic())

    tasks = [asyncio.create_task(call(i)) for i in range(60)]
    await asyncio.gather(*tasks)
    assert order == list(range(60))
    assert _max_in_any_window(starts, 1.0) <= 20
    assert starts[-1] - starts[0] >= 59 * 0.05 - 1e-9


async def test_first_call_does_not_wait(clock: FakeClock) -> None:
    limiter = RateLimiter(5, clock)
    await limiter.acquire()
    assert clock.sleeps == []


async def test_idle_time_is_not_banked_into_a_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(10, clock)
    await limiter.acquire()
    clock.advance(30)
    t0 = clock.monotonic()
    for _ in range(3):
        await limiter.acquire()
    # after a long idle period the next call starts at once, but the following ones are still spaced
    assert clock.monotonic() - t0 == pytest.approx(0.2)


async def test_window_cap_binds_when_spacing_is_looser(clock: FakeClock) -> None:
    # 2.5/s: spacing alone (0.4 s) would start 3 calls within 0.8 s; the sliding log holds it to 2 per second.
    limiter = RateLimiter(2.5, clock)
    starts = []
    for _ in range(5):
        await limiter.acquire()
        starts.append(clock.monotonic() - 1000.0)
    assert _max_in_any_window(starts, 1.0) <= 2
    assert starts == [pytest.approx(x) for x in (0.0, 0.4, 1.0, 1.4, 2.0)]


async def test_cancelled_waiter_does_not_block_the_queue(clock: FakeClock) -> None:
    gate = asyncio.Event()

    class GatedClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await gate.wait()
            await super().sleep(seconds)

    gated = GatedClock()
    limiter = RateLimiter(1, gated)
    await limiter.acquire()
    stuck = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    gate.set()
    await asyncio.wait_for(limiter.acquire(), timeout=5)
    assert gated.monotonic() - 1000.0 == pytest.approx(1.0)


async def test_endpoint_limiters_are_independent(clock: FakeClock) -> None:
    limiters = EndpointLimiters(1, clock)
    assert limiters.for_call("recall") is limiters.for_call("recall")
    await limiters.for_call("asyncsend_v2").acquire()
    await limiters.for_call("recall").acquire()
    assert clock.sleeps == []  # a different endpoint has its own budget
    await limiters.for_call("asyncsend_v2").acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_rejects_nonsense_rates(rate: float, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate, clock)
