"""Webhooks first: while webhooks keep a core busy, the all-in-one process's worker waits to decide and send.

Why: in one process the webhook receiver and the worker share one core. Deciding an event and sending its
card costs about ten times what receiving it does (bench/instructions.py), so under a burst a worker that
decided as eagerly as ever took most of the CPU, and the receiver answered half as many webhooks per second
as it does alone, with senders' timeouts (and their retries) close behind. A 202 needs only the stored
event; the card can follow a second later.

When to hold off: while webhooks keep arriving (two within `QUIET_S` of each other, the last less than
`QUIET_S` ago) and the process keeps a core busy without the worker (at least `BUSY_CPU_SHARE` of a core's
time in CPU while the worker itself waited, over a probe of `PROBE_S` and then over each wait, read from
the injected clock's `cpu()`). Webhooks that arrive steadily but leave the CPU room do not hold it off:
waiting would only leave the core idle and the cards later, and a worker held off at 150 webhooks a second
would fall behind for good. Tried first and dropped: the time one turn of the event loop takes (~1.2 ms under wrk's
saturating load and under the e2e bench's, which left the CPU half idle) and the webhooks in progress at the
moment the worker asks (nearly always 0: the worker runs right after a group commit answered them all).

How long: at most `max_defer_s` in a row; then the worker runs one pass (up to 200 events decided, due jobs
claimed) and may hold off again. A flood that never pauses still gets its cards, one pass per `max_defer_s`;
a burst is received at the receiver's own rate and decided as soon as it ends. `[worker] intake_priority_s`
sets `max_defer_s`; 0 turns the waiting off.

Pure: the caller passes the monotonic time of each arrival and of each question, and the CPU share it read.
"""

from __future__ import annotations

import math

__all__ = ["BUSY_CPU_SHARE", "PROBE_S", "QUIET_S", "IntakeFirst"]

QUIET_S = 0.05  # webhooks closer together than this are "still arriving" (more than 20 a second)
# of a core, used while the worker waited: the receiver alone keeps the CPU busy (under wrk 0.92-1.0 was read; a
# process receiving at 0.8 of a core could not decide as fast anyway: that costs ~10x, bench/instructions.py)
BUSY_CPU_SHARE = 0.8
PROBE_S = 0.02  # the first wait, over which that share is measured


class IntakeFirst:
    """The receiver's arrivals; when the worker may go (`wait_s(...) == 0`) and how long to wait otherwise."""

    __slots__ = ("_last", "_prev", "_since", "max_defer_s", "quiet_s")

    def __init__(self, max_defer_s: float, quiet_s: float = QUIET_S) -> None:
        self.max_defer_s, self.quiet_s = max_defer_s, quiet_s
        self._last = self._prev = -math.inf
        self._since: float | None = None  # when the current holding-off began

    def arrived(self, at: float) -> None:
        """A webhook arrived at monotonic time `at`."""
        self._prev, self._last = self._last, at

    def arriving(self, now: float) -> bool:
        """Webhooks keep arriving: two close together, the last one recent."""
        return self.max_defer_s > 0 and now - self._last < self.quiet_s and self._last - self._prev < self.quiet_s

    def wait_s(self, now: float, cpu_share: float) -> float:
        """Seconds the worker should wait before its next pass; 0: go now. `cpu_share`: the share of a core
        the process used while the worker last waited. After `max_defer_s` of holding off in a row the answer
        is 0 once, so a flood that never pauses still lets one pass through."""
        if not self.arriving(now) or cpu_share < BUSY_CPU_SHARE:
            self._since = None
            return 0.0
        if self._since is None:
            self._since = now
        left = self.max_defer_s - (now - self._since)
        if left <= 0:
            self._since = None
            return 0.0
        return min(left, self.quiet_s)  # and measure again over that wait
