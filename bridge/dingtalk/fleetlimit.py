"""The fleet's rate limit: one app's `qps` per endpoint holds for all its processes together, not per process.

DingTalk counts calls per app and endpoint, whichever machine makes them, so three workers each keeping 20
calls/s would make 60. On PostgreSQL every process therefore takes its start times from one schedule in the
database (`SlotSource.take_rate_slots`, a GCRA row per app and endpoint: `next_at` moves on by one spacing per
slot). Design choices, and why:

- Leased slots, not a round trip per call: a process reserves as many consecutive slots as it has callers
  waiting (at most `BATCH_MAX`) in one statement, and hands them out locally in order. Idle, that is one slot
  per call; busy, one round trip serves several calls.
- The database's clock: the schedule is kept in the database server's time (`clock_timestamp()`), and each
  process maps it onto its own monotonic clock with an offset estimated like NTP: every answer carries the
  database's now, the round trip brackets it, and the offset of the quickest round trip of the last
  `OFFSET_HORIZON_S` is used (error at most half that round trip). So machines whose clocks disagree share one
  schedule, and an answer that sat in a busy event loop for 300 ms does not shift its slots 300 ms late (which
  put 29 starts into one 1.02 s window in a first version that computed "now + delay" on arrival).
- Spacing with a margin: slots are `(window_s + SPREAD_S) / qps` apart ((1.02 s + 20 ms) / 20 = 52 ms; 1.02 s
  is the window the local limiter keeps, see bridge.dingtalk.client). The offsets' errors and wake-up jitter
  can still bring two processes' neighbouring starts a little closer than planned; SPREAD_S absorbs 20 ms of
  that per window, so `window_s` still holds at most `qps` starts across the fleet (bench/fleet_limit.py: 21
  in a 1.02 s window without it), for 2% of throughput.
- A slot is only used on time: one already more than half a spacing (at least `LATE_FLOOR_S`) past when its
  caller gets to it, or when its caller wakes (a stalled process), is dropped and a new one taken, so late
  starts do not bunch up with other processes' slots. Progress wins in the end: a fresh reservation that is
  late on arrival is retried twice, then used.
- Prefetch while idle: `prefetch()` (the worker calls it as a decision that makes a send or an update is
  written) starts a one-slot reservation in the background when this process holds no slot, none is being
  reserved and no caller waits, so the reservation's round trip overlaps the decision's instead of following
  it. The slot is an ordinary one: used on time or dropped as late (a decision slower than half a spacing),
  so prefetching never lets a start come early; an unused one costs the fleet one slot of an idle schedule.
- Storage down: the process falls back to its local limiter (`bridge.dingtalk.ratelimit`) and logs it once;
  delivering at the per-process rate beats not delivering while the database is away.

On SQLite and in memory one process serves, and the local limiter is the whole story.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Protocol, runtime_checkable

from bridge import logs
from bridge.clock import Clock
from bridge.dingtalk.ratelimit import RateLimiter
from bridge.errors import StorageUnavailable

__all__ = ["BATCH_MAX", "FleetLimiter", "FleetLimiters", "SlotSource"]

log = logs.get_logger(__name__)

BATCH_MAX = 4  # slots one process may hold ahead: enough to halve round trips under load, few to waste
SPREAD_S = 0.02  # per window: how much closer than planned two processes' neighbouring starts may come
LATE_FLOOR_S = 0.005  # a slot may be used this late whatever the spacing (offset error plus wake-up jitter)
RETRIES_WHEN_LATE = 2  # a fresh reservation already late on arrival is retried this often, then used anyway
OFFSET_HORIZON_S = 10.0  # the database-clock offset comes from the quickest round trip this recent


@runtime_checkable
class SlotSource(Protocol):
    """A store that keeps a shared start schedule (bridge.store.postgres.PostgresStore)."""

    async def take_rate_slots(self, key: str, spacing_s: float, count: int) -> tuple[float, float]: ...


class FleetLimiter:
    """One app endpoint's slots from the shared schedule, handed out first come, first served."""

    def __init__(self, slots: SlotSource, key: str, rate: float, clock: Clock, window_s: float = 1.0,
                 batch_max: int = BATCH_MAX, spread_s: float = SPREAD_S) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of calls per second, got {rate!r}")
        self.key = key
        self.capacity = max(1, math.floor(rate * window_s + 1e-9))  # starts allowed in any window_s
        self.spacing_s = (window_s + spread_s) / self.capacity
        self.batch_max = max(1, batch_max)
        self._slots_source = slots
        self._clock = clock
        self._local = RateLimiter(self.capacity / window_s, clock, window_s)
        self._held: deque[float] = deque()  # monotonic start times reserved for this process
        self._lock = asyncio.Lock()  # asyncio.Lock wakes waiters in arrival order: that is the FIFO
        self._waiting = 0
        self._degraded = False
        self._offset: tuple[float, float, float] | None = None  # (db minus monotonic, its error, measured at)
        self._prefetching: asyncio.Task[None] | None = None
        self.round_trips = 0  # reservations made (bench and tests)
        self.dropped = 0  # slots not used because they were already late

    def __repr__(self) -> str:
        return f"FleetLimiter(key={self.key[:12]}…, capacity={self.capacity}, spacing_s={self.spacing_s:g})"

    async def acquire(self) -> None:
        """Wait for this process's next slot of the fleet's schedule, then return (the call starts)."""
        self._waiting += 1  # callers queued here: how many slots the next reservation takes
        queued = True
        try:
            async with self._lock:
                self._waiting, queued = self._waiting - 1, False
                for _ in range(RETRIES_WHEN_LATE + 1):
                    start = await self._next_start()
                    if start is None:
                        await self._local.acquire()
                        return
                    wait = start - self._clock.monotonic()
                    if wait > 0:
                        await self._clock.sleep(wait)
                    if not self._late(start):
                        return
                    self.dropped += 1  # overslept (a stalled process): take another slot, a few times
        finally:
            if queued:  # cancelled while queued
                self._waiting -= 1

    def prefetch(self) -> None:
        """A call is likely soon: reserve one slot in the background if nothing is held, being reserved or waited
        for (when busy, callers' own reservations batch; an idle process's next call then finds its slot held)."""
        if self._held or self._lock.locked() or self._degraded or (
                self._prefetching is not None and not self._prefetching.done()):
            return
        self._prefetching = asyncio.get_running_loop().create_task(self._prefetch(), name="bridge-rate-prefetch")
        self._prefetching.add_done_callback(_retrieved)

    async def _prefetch(self) -> None:
        async with self._lock:  # a caller arriving meanwhile waits for this reservation, then uses its slot
            if not self._held:
                await self._reserve(1)

    def _late(self, start: float) -> bool:
        return self._clock.monotonic() > start + max(self.spacing_s / 2, LATE_FLOOR_S)

    async def _next_start(self) -> float | None:
        """The next slot on this process's clock; None while storage is down (the local limiter stands in)."""
        for attempt in range(RETRIES_WHEN_LATE + 2):
            while self._held and self._late(self._held[0]) and attempt <= RETRIES_WHEN_LATE:
                self._held.popleft()  # too late to use on time: dropped, never used late
                self.dropped += 1
            if self._held:
                return self._held.popleft()
            if not await self._reserve(min(self.batch_max, 1 + self._waiting)):
                return None
        # a process so loaded that even fresh slots arrive late: it goes on (its calls are late, not early)
        return self._held.popleft()

    async def _reserve(self, count: int) -> bool:
        """Take `count` consecutive slots from the shared schedule into `_held` (the caller holds the lock);
        False while storage is down (logged once)."""
        sent = self._clock.monotonic()
        try:
            first_db, now_db = await self._slots_source.take_rate_slots(self.key, self.spacing_s, count)
        except StorageUnavailable as exc:
            if not self._degraded:
                log.warning("dingtalk.rate_limit_local", error=str(exc))
                self._degraded = True
            return False
        self._degraded = False
        self.round_trips += 1
        offset = self._db_offset(sent, self._clock.monotonic(), now_db)
        first = first_db - offset
        self._held.extend(first + i * self.spacing_s for i in range(count))
        return True

    def _db_offset(self, sent: float, received: float, now_db: float) -> float:
        """Database clock minus this process's monotonic clock, from the quickest recent round trip."""
        error = (received - sent) / 2
        sample = (now_db - (sent + received) / 2, error, received)
        best = self._offset
        if best is None or error <= best[1] or received - best[2] > OFFSET_HORIZON_S:
            self._offset = best = sample
        return best[0]


def _retrieved(task: asyncio.Task[None]) -> None:
    """A prefetch nobody awaits: its failure (storage down is handled inside) is logged, not left unretrieved."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("dingtalk.rate_prefetch_failed", error=str(exc) or type(exc).__name__)


class FleetLimiters:
    """One FleetLimiter per endpoint of one app (the drop-in for `EndpointLimiters` on a shared store)."""

    def __init__(self, slots: SlotSource, app: str, rate: float, clock: Clock, window_s: float = 1.0) -> None:
        self._slots = slots
        self.app = app
        self.rate = rate
        self.window_s = window_s
        self._clock = clock
        self._limiters: dict[str, FleetLimiter] = {}

    def prefetch(self, name: str) -> None:
        """A `name` call is likely soon: its limiter reserves a slot ahead if idle (FleetLimiter.prefetch)."""
        self.for_call(name).prefetch()

    def for_call(self, name: str) -> FleetLimiter:
        limiter = self._limiters.get(name)
        if limiter is None:
            limiter = self._limiters[name] = FleetLimiter(self._slots, f"{self.app}:{name}", self.rate, self._clock,
                                                          self.window_s)
        return limiter
