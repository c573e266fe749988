"""Retention: the worker prunes what bridge no longer needs, a little at a time.

Without it the journal, the inbox and the finished jobs grow for ever (500,000 journal rows made
`bridge tail` take 14 s before it read only its tail). Every `prune_every_s` the worker deletes rows
older than `retention_days` in batches of `prune_batch` per kind, each batch its own short transaction,
and at most `_MAX_BATCHES` batches per look, so webhooks and jobs never queue behind a long delete.

What goes: journal lines, processed inbox rows with their audit rows, and done jobs. What stays, however
old: approvals and notices (the cards' memory: a late event must still find its card), unprocessed
events, and pending, running or dead jobs (an operator must see a dead job until it is retried).
A redelivery of an event older than the retention window is therefore stored again and decided as
stale against the approval's `last_occurred_at`, which the approvals row keeps.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol

from bridge import logs, store
from bridge.clock import Clock
from bridge.config import WorkerConfig

log = logs.get_logger("bridge.retention")

_MAX_BATCHES = 20  # per look; the rest waits for the next look


class PruneObserver(Protocol):
    def rows_pruned(self, kind: str, count: int) -> None: ...


class Retention:
    """Decides when to prune and drives `Store.prune` batch by batch."""

    def __init__(self, st: store.Store, clock: Clock, cfg: WorkerConfig, observer: PruneObserver | None) -> None:
        self.store = st
        self.clock = clock
        self.cfg = cfg
        self.observer = observer
        self._next_at: datetime | None = None

    async def tick(self) -> store.Pruned:
        """Prune if a look is due; returns what this look deleted (nothing when none was due)."""
        now = self.clock.now()
        if self.cfg.retention_days <= 0 or (self._next_at is not None and now < self._next_at):
            return store.Pruned()
        self._next_at = now + timedelta(seconds=self.cfg.prune_every_s)
        before = now - timedelta(days=self.cfg.retention_days)
        total = store.Pruned()
        for _ in range(_MAX_BATCHES):
            batch = await self.store.prune(before, self.cfg.prune_batch)
            self._count(batch)
            total = store.Pruned(journal=total.journal + batch.journal, inbox=total.inbox + batch.inbox,
                                 audit=total.audit + batch.audit, jobs=total.jobs + batch.jobs)
            if batch.total == 0:
                break
            await asyncio.sleep(0)  # let webhooks and jobs in between batches
        else:
            self._next_at = now  # more is left: look again on the next loop
        if total.total:
            log.info("retention.pruned", before=before.isoformat(), journal=total.journal, inbox=total.inbox,
                     audit=total.audit, jobs=total.jobs)
        return total

    def _count(self, batch: store.Pruned) -> None:
        if self.observer is None:
            return
        for kind in ("journal", "inbox", "audit", "jobs"):
            if count := getattr(batch, kind):
                self.observer.rows_pruned(kind, count)
