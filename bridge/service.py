"""Deciding: stored events → the pure decision → one transaction, logged and observed.

The `Decider` takes unprocessed inbox events, one approval at a time in `occurred_at` order (different
approvals concurrently), reads the approval and its notices, asks `bridge.decide` (pure, clock passed in)
for the `Decision`, and hands it to the store to write atomically: the inbox event marked with its
outcome, the approval's new state, an audit row, the new notices and one job per DingTalk call. Nothing
here talks to DingTalk; the worker does that from the jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from bridge import errors, logs, store
from bridge.clock import Clock
from bridge.config import Config
from bridge.decide import CARD_TRUNCATED, Policy, decide
from bridge.records import Outcome

__all__ = ["Decider", "DecisionObserver", "JobTaker", "Processed", "policy_for"]

log = logs.get_logger("bridge.service")


class DecisionObserver(Protocol):
    """What the Decider reports for each event it decides (`bridge.metrics.Metrics` is one)."""

    def event_processed(self, outcome: str) -> None: ...

    def transition(self, from_state: str, to_state: str) -> None: ...


class _IgnoreDecisions:
    """The DecisionObserver of a Decider nobody watches."""

    def event_processed(self, outcome: str) -> None:
        pass

    def transition(self, from_state: str, to_state: str) -> None:
        pass


class JobTaker(Protocol):
    """Who runs the jobs a decision claims for itself (`bridge.worker.Worker`): `reserve` grants up to as many of
    its free slots as the decision has jobs due now (0: claim nothing), `take` gets them back with what was
    claimed (None: the write failed) and starts those jobs at once, so a new card's send needs no claim_jobs and
    no notices_for round trips."""

    lease_s: float

    def reserve(self, decision: store.Decision) -> int: ...

    def take(self, granted: int, applied: store.Applied | None) -> None: ...


def policy_for(cfg: Config) -> Policy:
    """The settings the pure decision reads, taken from the loaded configuration."""
    return Policy(statuses=cfg.statuses, card=cfg.card, on_revoked=cfg.card.on_revoked,
                  max_userids=cfg.dingtalk.status_bar_max_userids,
                  templates={s.name: s.card for s in cfg.sources if s.card is not None})


Known = tuple[store.Approval | None, Sequence[store.Notice]]  # an approval's row and notices, read already


@dataclass(frozen=True, slots=True)
class Processed:
    inbox_id: int
    outcome: str
    job_ids: tuple[int, ...]


class Decider:
    """Turns stored events into decisions. One instance per process; `process_pending` is re-entrant-safe
    only when called from one task at a time (the worker loop does so)."""

    def __init__(
        self,
        st: store.Store,
        cfg: Config,
        clock: Clock,
        observer: DecisionObserver | None = None,
        concurrency: int = 16,
    ) -> None:
        self.store = st
        self.cfg = cfg
        self.policy = policy_for(cfg)
        self.clock = clock
        self.observer: DecisionObserver = observer or _IgnoreDecisions()
        self._sem = asyncio.Semaphore(concurrency)
        self.taker: JobTaker | None = None  # set by the worker that runs this decider's jobs

    async def process_pending(self, limit: int = 200) -> list[Processed]:
        """Process up to `limit` unprocessed events; returns what happened to each. The batch comes with the
        approvals' rows and notices (`Store.pending_batch`), which the first decision of each approval uses."""
        batch = await self.store.pending_batch(limit)
        if not batch.events:
            return []
        by_approval: dict[tuple[str, str], list[store.InboxEvent]] = {}
        for ie in batch.events:
            by_approval.setdefault((ie.event.source, ie.event.approval_id), []).append(ie)
        results = await asyncio.gather(*(
            self._process_approval(group, (batch.approvals.get(key), batch.notices.get(key, ())))
            for key, group in by_approval.items()))
        return [p for group in results for p in group]

    async def _process_approval(self, group: list[store.InboxEvent], known: Known) -> list[Processed]:
        async with self._sem:
            out = []
            for i, ie in enumerate(sorted(group, key=lambda e: (e.event.occurred_at, e.id))):
                out.append(await self.process_one(ie, known if i == 0 else None))  # later ones: read anew
            return out

    async def process_one(self, ie: store.InboxEvent, known: Known | None = None) -> Processed:
        """Decide one event; `known`: its approval's row (None: new) and notices, read with the batch."""
        ev = ie.event
        with structlog.contextvars.bound_contextvars(
            source=ev.source, approval_id=ev.approval_id, event_id=ev.event_id
        ):
            if known is not None:
                approval, notices = known[0], list(known[1])
            else:
                approval = await self.store.get_approval(ev.source, ev.approval_id)
                notices = await self.store.notices_for(ev.source, ev.approval_id) if approval else []
            now = self.clock.now()
            decision = decide(ie, approval, notices, self.policy, now)
            try:
                job_ids = await self._apply(decision, now)
            except errors.AlreadyDecided:
                # another decider (a second process on the same database) claimed this event first; its
                # decision stands and this one changed nothing
                log.info("event.already_decided")
                return Processed(ie.id, _ALREADY_DECIDED, ())
            self.observer.event_processed(decision.outcome)
            if decision.outcome == Outcome.APPLIED and decision.from_status != decision.to_status:
                self.observer.transition(decision.from_status, decision.to_status)
            for line in decision.journal:
                if line.kind == CARD_TRUNCATED:
                    log.warning("card.truncated", cut=line.data.get("cut"))
            level = "info" if decision.outcome in (Outcome.APPLIED, Outcome.UNCHANGED, Outcome.IGNORED) else "warning"
            getattr(log, level)(
                f"event.{decision.outcome}",
                from_state=decision.from_status,
                to_state=decision.to_status,
                reason=decision.reason,
                jobs=len(job_ids),
            )
            return Processed(ie.id, decision.outcome, tuple(job_ids))


    async def _apply(self, decision: store.Decision, now: datetime) -> list[int]:
        """The decision written; with a taker that has free slots, its due jobs claimed in the same write and
        handed over (another process deciding the same event still gets AlreadyDecided: nothing is claimed)."""
        taker = self.taker
        granted = taker.reserve(decision) if taker is not None else 0
        if taker is None or not granted:
            return await self.store.apply_decision(decision, now)
        applied = None
        try:
            applied = await self.store.apply_decision_and_claim(decision, now, taker.lease_s, granted)
        finally:
            taker.take(granted, applied)
        return list(applied.job_ids)


_ALREADY_DECIDED = "already_decided"  # Processed.outcome when another decider claimed the event first
