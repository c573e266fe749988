"""bridge.dingtalk.fleetlimit on a FakeClock: two processes taking slots from one schedule (an in-memory GCRA
standing in for PostgreSQL's rate_slots row) never start more than `capacity` calls in any window together,
share the throughput, batch reservations when callers queue, never use a slot late, and fall back to the
local limiter while storage is down."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.dingtalk.fleetlimit import BATCH_MAX, SPREAD_S, FleetLimiter, FleetLimiters
from bridge.errors import StorageUnavailable

WINDOW = 1.02


class VirtualClock(FakeClock):
    """A FakeClock on which concurrent sleepers wait for virtual time together: `drive` runs the tasks until
    all are blocked, then moves time to the earliest sleeper's wake-up (FakeClock.sleep adds every sleep up)."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.monotonic() + max(0.0, seconds), next(self._seq), fut))
        await fut

    async def drive(self, work: Awaitable[Any]) -> Any:
        task = asyncio.ensure_future(work)
        while not task.done():
            for _ in range(50):
                await asyncio.sleep(0)
            if self._sleepers and not task.done():
                at, _, fut = heapq.heappop(self._sleepers)
                self.advance(max(0.0, at - self.monotonic()))
                fut.set_result(None)
        return task.result()


class Schedule:
    """The rate_slots row: next_at per key on the database's clock (the shared clock + 5000 s); one "round trip"
    per call; `slow_answers` makes answers arrive that much later (a busy event loop)."""

    DB_AHEAD = 5000.0

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.next_at: dict[str, float] = {}
        self.calls = 0
        self.down = False
        self.slow_answers: list[float] = []

    async def take_rate_slots(self, key: str, spacing_s: float, count: int) -> tuple[float, float]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise StorageUnavailable("storage unavailable: test")
        now = self.clock.monotonic() + self.DB_AHEAD
        first = max(self.next_at.get(key, now), now)
        self.next_at[key] = first + spacing_s * count
        if self.slow_answers:
            await self.clock.sleep(self.slow_answers.pop(0))
        return first, now


def max_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - window + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def run(limiter: FleetLimiter, clock: FakeClock, n: int, starts: list[float]) -> None:
    async def one() -> None:
        await limiter.acquire()
        starts.append(clock.monotonic())

    await asyncio.gather(*(one() for _ in range(n)))


async def test_two_processes_together_keep_the_apps_qps() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    a = FleetLimiter(schedule, "app:send", 20 / WINDOW, clock, WINDOW)
    b = FleetLimiter(schedule, "app:send", 20 / WINDOW, clock, WINDOW)
    starts_a: list[float] = []
    starts_b: list[float] = []
    await clock.drive(asyncio.gather(run(a, clock, 100, starts_a), run(b, clock, 100, starts_b)))
    assert len(starts_a) == len(starts_b) == 100
    assert max_in_window(starts_a + starts_b, WINDOW) == 20  # not 40
    elapsed = max(starts_a + starts_b) - min(starts_a + starts_b)
    assert elapsed == pytest.approx(199 * (WINDOW + SPREAD_S) / 20, rel=0.01)  # the whole rate is used, none wasted
    assert schedule.calls < 200 / 2  # queued callers share reservations


async def test_an_answer_delayed_in_a_busy_process_does_not_shift_its_slots_onto_others() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    a = FleetLimiter(schedule, "app:send", 20 / WINDOW, clock, WINDOW)
    b = FleetLimiter(schedule, "app:send", 20 / WINDOW, clock, WINDOW)
    starts: list[float] = []
    await clock.drive(run(a, clock, 1, starts))  # a quick round trip: a knows the database's clock
    schedule.slow_answers = [0.0, 0.3, 0.0, 0.0, 0.3]  # then some answers sit 300 ms in a busy loop
    await clock.drive(asyncio.gather(run(a, clock, 60, starts), run(b, clock, 60, starts)))
    assert len(starts) == 121 and max_in_window(starts, WINDOW) <= 20
    assert a.dropped + b.dropped > 0  # the slots that were already late were dropped, not used late


async def test_an_idle_caller_starts_at_once_with_one_round_trip() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    limiter = FleetLimiter(schedule, "app:send", 20, clock, 1.0)
    t0 = clock.monotonic()
    await limiter.acquire()
    assert clock.monotonic() == t0 and schedule.calls == 1 and limiter.round_trips == 1
    clock.advance(5)
    await limiter.acquire()
    assert schedule.calls == 2


async def test_reservations_take_at_most_batch_max_slots() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    limiter = FleetLimiter(schedule, "app:send", 10, clock, 1.0)
    starts: list[float] = []
    await clock.drive(run(limiter, clock, 40, starts))
    assert schedule.calls == 1 + 39 // BATCH_MAX + 1  # the first caller found nobody queued behind it
    assert schedule.next_at["app:send"] == pytest.approx(starts[0] + Schedule.DB_AHEAD + 40 * limiter.spacing_s)
    assert limiter.spacing_s == pytest.approx((1.0 + SPREAD_S) / 10)


async def test_a_slot_too_late_to_use_on_time_is_dropped_not_used() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    limiter = FleetLimiter(schedule, "app:send", 10, clock, 1.0)
    starts: list[float] = []
    await clock.drive(run(limiter, clock, 2, starts))
    before = schedule.calls
    limiter._held.extend([clock.monotonic() + 0.1, clock.monotonic() + 0.2])  # as if a batch were held
    clock.advance(0.5)  # the process stalled past both
    await clock.drive(limiter.acquire())
    assert schedule.calls == before + 1 and not limiter._held  # both dropped, a fresh slot taken


async def test_storage_down_falls_back_to_the_local_limiter() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    schedule.down = True
    limiter = FleetLimiter(schedule, "app:send", 5, clock, 1.0)
    starts: list[float] = []
    await clock.drive(run(limiter, clock, 10, starts))
    assert max_in_window(starts, 1.0) == 5 and len(starts) == 10


async def test_endpoints_and_apps_have_their_own_schedules() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    one, other = FleetLimiters(schedule, "A", 20, clock), FleetLimiters(schedule, "B", 20, clock)
    assert one.for_call("send") is one.for_call("send")
    await one.for_call("send").acquire()
    await one.for_call("status_bar_update").acquire()
    await other.for_call("send").acquire()
    assert set(schedule.next_at) == {"A:send", "A:status_bar_update", "B:send"}
    with pytest.raises(ValueError):
        FleetLimiter(schedule, "x", 0, clock)


async def test_an_idle_prefetch_takes_one_slot_ahead_and_the_next_call_uses_it() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    limiter = FleetLimiter(schedule, "app:send", 20, clock, 1.0)
    t0 = clock.monotonic()
    limiter.prefetch()
    limiter.prefetch()  # one in flight already: nothing more
    await clock.drive(asyncio.sleep(0))
    assert schedule.calls == 1 and len(limiter._held) == 1
    limiter.prefetch()  # a slot is held: nothing more
    await limiter.acquire()
    assert clock.monotonic() == t0 and schedule.calls == 1  # the call used the prefetched slot
    assert schedule.next_at["app:send"] == pytest.approx(t0 + Schedule.DB_AHEAD + limiter.spacing_s)


async def test_a_prefetched_slot_gone_late_is_dropped_and_a_busy_limiter_prefetches_nothing() -> None:
    clock = VirtualClock()
    schedule = Schedule(clock)
    limiter = FleetLimiter(schedule, "app:send", 20, clock, 1.0)
    limiter.prefetch()
    await clock.drive(asyncio.sleep(0))
    clock.advance(limiter.spacing_s)  # the call came later than half a spacing after its slot
    await clock.drive(limiter.acquire())
    assert limiter.dropped == 1 and schedule.calls == 2
    done_before = limiter._prefetching
    async with limiter._lock:  # a caller is reserving: a prefetch now would only add a slot nobody asked for
        limiter.prefetch()
    assert limiter._prefetching is done_before and schedule.calls == 2
