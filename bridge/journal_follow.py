"""Following the journal (`bridge tail --follow`) without missing lines that commit out of id order.

Why: on PostgreSQL journal ids come from a sequence, taken when a line is inserted, not when its transaction
commits. Two processes (or two connections of one) can take ids 41 and 42 and commit 42 first; a reader that
has printed 42 and then asks for "id > 42" never sees 41. SQLite and the memory store have one writer, so
their ids commit in order, and this costs them nothing but a set of recent ids.

How: the follower keeps a low-water mark below which every line is taken as final, and re-reads from it on
every poll, printing only ids it has not printed yet. An id becomes final once it has been printed for
`lag_s` (monotonic clock): a writing transaction open longer than that after a later id was committed could
still be missed, and bridge's journal writes are single short transactions (well under a second), so the
default of 10 s leaves a wide margin. A poll reads from the first id above the mark that it has not printed:
when nothing is missing below the newest printed id (SQLite, memory, and PostgreSQL between overlapping
commits) that is only the new lines; with a hole, at most the lines of the last `lag_s` are read again.

The console's live journal follows the same way from a browser, over requests that any replica may answer:
its state (the low-water mark and the ids returned within the lag, with when) travels as a short cursor
(`cursor()` / `JournalFollower.resume`), and its times are wall-clock seconds (`timer`), which every process
shares, rather than one process's monotonic clock. Ids returned in one poll are mostly consecutive, so the
cursor holds runs of ids per poll time: a few dozen characters, whatever the rate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

from bridge.clock import Clock
from bridge.records import JournalEntry

__all__ = ["DEFAULT_LAG_S", "BadCursor", "JournalFollower"]

DEFAULT_LAG_S = 10.0
PAGE = 500
MAX_PENDING = 50_000  # ids a resumed cursor may hold above its mark (a forged "1-10**9" run is refused)
MAX_RUNS = 200  # runs a cursor carries; past that its oldest polls are taken as final (see cursor())
_GROUP = re.compile(r"(\d{1,15}(?:\.\d{1,6})?):(\d{1,18}(?:-\d{1,18})?(?:_\d{1,18}(?:-\d{1,18})?)*)")


class BadCursor(ValueError):
    """A cursor that `JournalFollower.resume` cannot read (not one `cursor()` wrote, or too big)."""


class JournalReader(Protocol):
    async def journal(self, after_id: int = 0, *, source: str | None = None, limit: int = 500
                      ) -> list[JournalEntry]: ...


class JournalFollower:
    """Yields each journal line (of `source`, if given) with id > `after` once, in the order they become
    visible; lines that commit late, below ids already printed, are printed when they appear."""

    def __init__(self, st: JournalReader, clock: Clock, *, after: int = 0, source: str | None = None,
                 lag_s: float = DEFAULT_LAG_S, page: int = PAGE, timer: Callable[[], float] | None = None) -> None:
        self.store = st
        self.clock = clock
        self.source = source
        self.lag_s = lag_s
        self.page = page
        self.timer = timer or clock.monotonic  # seconds; wall-clock ones for a cursor another process resumes
        self.low = after  # every line with id <= low is final: printed, or taken as never coming
        self._printed: dict[int, float] = {}  # id -> when it was printed, for the ids above `low`
        self.more = False  # the last poll stopped at its limit: lines were left for the next one

    async def poll(self, limit: int | None = None) -> list[JournalEntry]:
        """The lines not yet returned, by id within this poll; at most `limit` of them (the lowest ids), the rest
        left for the next poll (`more` says so)."""
        fresh: list[JournalEntry] = []
        cursor = self.low
        while cursor + 1 in self._printed:  # printed without a hole: nothing below it can still come
            cursor += 1
        while True:
            page = await self.store.journal(cursor, source=self.source, limit=self.page)
            fresh.extend(e for e in page if e.id not in self._printed)
            if len(page) < self.page or (limit is not None and len(fresh) >= limit):
                break
            cursor = page[-1].id
        self.more = limit is not None and (len(fresh) > limit or (len(fresh) == limit and len(page) == self.page))
        if limit is not None:
            fresh = fresh[:limit]
        now = self.timer()
        for e in fresh:
            self._printed[e.id] = now
        self._advance(now)
        return fresh

    def cursor(self) -> str:
        """This follower's state as text: `low~t:a-b_c~t2:d`, the mark, then per poll time the runs of ids
        returned then. At most MAX_RUNS runs: beyond that (ids returned in a pattern of holes, not in runs) the
        oldest polls are taken as final early, which can miss a line of theirs that commits later still."""
        groups = self._groups()
        while sum(len(runs) for _, runs in groups) > MAX_RUNS:
            self._finalise(groups[0][1][-1][1])
            groups = self._groups()
        return "~".join([str(self.low)] + [
            f"{at:.3f}:" + "_".join(f"{a}-{b}" if b > a else str(a) for a, b in runs) for at, runs in groups])

    def _groups(self) -> list[tuple[float, list[tuple[int, int]]]]:
        by_time: dict[float, list[int]] = {}
        for line_id, at in self._printed.items():
            by_time.setdefault(at, []).append(line_id)
        return [(at, _runs(sorted(ids))) for at, ids in sorted(by_time.items())]

    def _finalise(self, upto: int) -> None:
        """Take every line up to `upto` as final now."""
        self.low = max(self.low, upto)
        self._printed = {line_id: at for line_id, at in self._printed.items() if line_id > self.low}

    @classmethod
    def resume(cls, st: JournalReader, clock: Clock, cursor: str, *, source: str | None = None,
               lag_s: float = DEFAULT_LAG_S, page: int = PAGE, timer: Callable[[], float] | None = None,
               ) -> JournalFollower:
        """A follower in the state `cursor()` wrote (with the same kind of `timer`). BadCursor if it is not one."""
        head, *groups = cursor.split("~")
        if not head.isdigit() or len(head) > 18:
            raise BadCursor("a journal cursor starts with a journal id")
        follower = cls(st, clock, after=int(head), source=source, lag_s=lag_s, page=page, timer=timer)
        for group in groups:
            m = _GROUP.fullmatch(group)
            if m is None:
                raise BadCursor(f"not a part of a journal cursor: {group[:40]!r}")
            at = float(m.group(1))
            for run in m.group(2).split("_"):
                a, _, b = run.partition("-")
                first, last = int(a), int(b or a)
                if last < first or first <= follower.low:
                    raise BadCursor("a journal cursor's runs are ids above its mark, low to high")
                if len(follower._printed) + last - first + 1 > MAX_PENDING:
                    raise BadCursor(f"a journal cursor holds at most {MAX_PENDING} ids")
                follower._printed.update(dict.fromkeys(range(first, last + 1), at))
        return follower

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


def _runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ones: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for line_id in ids:
        if runs and runs[-1][1] == line_id - 1:
            runs[-1] = (runs[-1][0], line_id)
        else:
            runs.append((line_id, line_id))
    return runs
