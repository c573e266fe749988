"""Webhooks first: while webhooks keep arriving, the all-in-one process's worker waits to decide and send.

Why: in one process the webhook receiver and the worker share one core. Deciding an event and sending its
card costs about ten times what receiving it does (bench/instructions.py), so under a burst a worker that
decided as eagerly as ever took most of the CPU, and the receiver answered a third as many webhooks per
second as it does alone, with senders' timeouts (and their retries) close behind. A 202 needs only the
stored event; the card can follow a second later. So while webhooks keep coming (two within `QUIET_S` of
each other, the last less than `QUIET_S` ago) the worker holds off, for at most `max_defer_s` at a time: then
it runs one pass (up to 200 events decided, due jobs claimed) and may hold off again. A sustained flood
thus still gets its cards, at one pass per `max_defer_s`; a burst is received at the receiver's own rate and
decided as soon as it ends. `[worker] intake_priority_s` sets `max_defer_s`; 0 turns the waiting off.

Pure: the caller passes the monotonic time of each arrival and of each question.
"""

from __future__ import annotations

import math

__all__ = ["QUIET_S", "IntakeFirst"]

QUIET_S = 0.05  # webhooks closer together than this are "still arriving" (more than 20 a second)


class IntakeFirst:
    """When the worker may go ahead (`wait_s(now) == 0`) and how long it should wait otherwise."""

    __slots__ = ("_last", "_prev", "_since", "max_defer_s", "quiet_s")

    def __init__(self, max_defer_s: float, quiet_s: float = QUIET_S) -> None:
        self.max_defer_s, self.quiet_s = max_defer_s, quiet_s
        self._last = self._prev = -math.inf
        self._since: float | None = None  # when the current holding-off began

    def arrived(self, at: float) -> None:
        """A webhook was stored at monotonic time `at`."""
        self._prev, self._last = self._last, at

    def busy(self, now: float) -> bool:
        """Webhooks are still arriving: two close together, the last one recent."""
        return now - self._last < self.quiet_s and self._last - self._prev < self.quiet_s

    def wait_s(self, now: float) -> float:
        """Seconds the worker should wait before its next pass; 0: go now. After `max_defer_s` of waiting in
        a row the answer is 0 once, so a flood that never pauses still lets one pass through."""
        if self.max_defer_s <= 0 or not self.busy(now):
            self._since = None
            return 0.0
        if self._since is None:
            self._since = now
        left = self.max_defer_s - (now - self._since)
        if left <= 0:
            self._since = None
            return 0.0
        return min(left, self.quiet_s - (now - self._last))  # ask again when this quiet window would end
