"""Retry policy: how long to wait before the next attempt of a failed DingTalk call. Pure.

Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
[0, min(cap, base * 2 ** (n - 1))]. Full jitter spreads a burst of failures (DingTalk throttling everyone
at the top of the hour) instead of retrying them in lock-step. A failure that says how long to wait
(throttling's retry_after, the IP-ban page's `wait`) waits at least that long. The random source is
injected so tests are exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bridge import errors


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 12
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def ceiling(self, attempt: int) -> float:
        """The largest wait after failed attempt number `attempt` (1-based)."""
        doubled: float = self.base_s * (2 ** max(0, attempt - 1))
        return min(self.cap_s, doubled)

    def next_delay(self, attempt: int, error: BaseException | None = None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when the job should go to the dead letters.

        Only transient DingTalk failures are retried; anything else (a permanent DingTalk error, a bug)
        is not.
        """
        if not isinstance(error, errors.TransientDingTalkError) and error is not None:
            return None
        if attempt >= self.max_attempts:
            return None
        delay = self.rng.uniform(0.0, self.ceiling(attempt))
        hint = getattr(error, "retry_after", None)
        if hint:
            delay = max(delay, float(hint))
        return delay
