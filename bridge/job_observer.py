"""What the worker reports as it runs (`bridge.metrics.Metrics` is the observer `bridge serve` gives it).

A module of its own so the worker, the metrics and the tests' counting observers share one protocol without
the metrics importing the worker.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["IgnoreJobs", "JobObserver"]


class JobObserver(Protocol):
    """What the worker reports as it runs jobs."""

    def job_retried(self, kind: str) -> None: ...

    def job_dead(self, kind: str) -> None: ...

    def job_done(self, kind: str, outcome: str) -> None: ...

    def recipients_not_reached(self, reason: str, count: int) -> None: ...

    def notice_orphaned(self) -> None: ...

    def held_off(self, seconds: float) -> None:
        """The worker waited `seconds` for the receiver's webhooks (bridge.priority), the 20 ms probe included."""


class IgnoreJobs:
    """The JobObserver of a worker nobody watches."""

    def job_retried(self, kind: str) -> None:
        pass

    def job_dead(self, kind: str) -> None:
        pass

    def job_done(self, kind: str, outcome: str) -> None:
        pass

    def recipients_not_reached(self, reason: str, count: int) -> None:
        pass

    def notice_orphaned(self) -> None:
        pass

    def held_off(self, seconds: float) -> None:
        pass
