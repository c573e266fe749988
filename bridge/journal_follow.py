"""Following the journal (`bridge tail --follow`) without missing lines that commit out of id order.

Why: on PostgreSQL journal ids come from a sequence, taken when a line is inserted, not when its transaction
commits. Two processes (or two connections of one) can take ids 41 and 42 and commit 42 first; a reader that
has printed 42 and then asks for "id > 42" never sees 41. SQLite and the memory store have one writer, so
their ids commit in order, and this costs them nothing but a set of recent ids.

How: the follower keeps a low-water mark below which every line is taken as final, and re-reads from it on
every poll, printing only ids it has not printed yet. An id becomes final once it has been printed for
`lag_s` (monotonic clock): a writing transaction open longer than that after a later id was committed could
still be missed, and bridge's journal writes are single short transactions (well under a second), so the
default of 10 s leaves a wide margin. Each poll re-reads at most the lines of the last `lag_s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bridge.clock import Clock
from bridge.records import JournalEntry

__all__ = ["DEFAULT_LAG_S", "JournalFollower"]

DEFAULT_LAG_S = 10.0
PAGE = 500


class JournalReader(Protocol):
    async def journal(self, after_id: int = 0, *, source: str | None = None, limit: int = 500
                      ) -> list[JournalEntry]: ...


class JournalFollower:
    """Yields each journal line (of `source`, if given) with id > `after` once, in the order they become
    visible; lines that commit late, below ids already printed, are printed when they appear."""

    def __init__(self, st: JournalReader, clock: Clock, *, after: int = 0, source: str | None = None,
                 lag_s: float = DEFAULT_LAG_S, page: int = PAGE) -> None:
        self.store = st
        self.clock = clock
        self.source = source
        self.lag_s = lag_s
        self.page = page
        self.low = after  # every line with id <= low is final: printed, or taken as never coming
        self._printed: dict[int, float] = {}  # id -> when it was printed, for the ids above `low`

    async def poll(self) -> list[JournalEntry]:
        """The lines not yet returned, by id within this poll."""
        fresh: list[JournalEntry] = []
        cursor = self.low
        while True:
            page = await self.store.journal(cursor, source=self.source, limit=self.page)
            fresh.extend(e for e in page if e.id not in self._printed)
            if len(page) < self.page:
                break
            cursor = page[-1].id
        now = self.clock.monotonic()
        for e in fresh:
            self._printed[e.id] = now
        self._advance(now)
        return fresh

    def _advance(self, now: float) -> None:
        """Raise the low-water mark over the printed ids that are older than the lag, in id order: a hole
        below them that is still open after lag_s is taken as a rolled-back insert."""
        for line_id in sorted(self._printed):
            if now - self._printed[line_id] < self.lag_s:
                break
            self.low = line_id
            del self._printed[line_id]

    @property
    def pending(self) -> Sequence[int]:
        """The printed ids still inside the lag window (for tests and debugging)."""
        return sorted(self._printed)
