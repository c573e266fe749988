"""Deciding: stored events → state machine → approval state, audit and outbox jobs, in one transaction.

The `Decider` takes unprocessed inbox events, one approval at a time in `occurred_at` order (different
approvals concurrently), asks the pure machine what the event means, renders the card when a new one is
needed, and hands the store one `Decision` to write atomically: the inbox event marked with its outcome,
the approval's new state, an audit row, the new notices and one job per DingTalk call. Nothing here
talks to DingTalk; the worker does that from the jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from bridge import errors, machine, render, store
from bridge.clock import Clock
from bridge.config import Config
from bridge.events import ApprovalEvent
from bridge.records import JobKind, Outcome

log = structlog.get_logger("bridge.service")


class Observer:
    """Hooks for metrics; the default does nothing."""

    def event_processed(self, outcome: str) -> None: ...

    def transition(self, from_state: str, to_state: str) -> None: ...


def lock_key(source: str, approval_id: str) -> str:
    """Jobs of one approval share this key, so the worker runs them one at a time, in order."""
    return f"{source}/{approval_id}"


_CARD_FIELDS = ("title", "recipients", "applicant", "url", "pc_url", "form", "amount", "content")


def merge_card(card: Mapping[str, Any], event: ApprovalEvent) -> dict[str, Any]:
    """The approval's card data with every card field the event carries laid over it."""
    given = event.to_dict()  # leaves out absent and empty fields
    return {**card, **{name: given[name] for name in _CARD_FIELDS if name in given}}


def with_reference(card: Mapping[str, Any], approval_id: str) -> dict[str, Any]:
    """The card data to render: when neither the title nor a form value shows the approval id, a
    "审批编号" row is added. DingTalk delivers the same content to a user only once a day, so two
    approvals whose cards would otherwise look identical must still differ."""
    shown = [str(card.get("title") or "")] + [str(f.get("value", "")) for f in card.get("form") or ()]
    if any(approval_id in text for text in shown):
        return dict(card)
    return {**card, "form": [{"key": "审批编号", "value": approval_id}, *(card.get("form") or ())]}


def missing_for_card(card: Mapping[str, Any]) -> list[str]:
    return [name for name in ("title", "recipients", "url") if not card.get(name)]


@dataclass(frozen=True, slots=True)
class Processed:
    inbox_id: int
    outcome: str
    job_ids: tuple[int, ...]


class Decider:
    """Turns stored events into decisions. One instance per process; `process_pending` is re-entrant-safe
    only when called from one task at a time (the worker loop does so)."""

    def __init__(
        self, st: store.Store, cfg: Config, clock: Clock, observer: Observer | None = None, concurrency: int = 16
    ) -> None:
        self.store = st
        self.cfg = cfg
        self.clock = clock
        self.observer = observer or Observer()
        self._sem = asyncio.Semaphore(concurrency)

    async def process_pending(self, limit: int = 200) -> list[Processed]:
        """Process up to `limit` unprocessed events; returns what happened to each."""
        events = await self.store.pending_events(limit)
        if not events:
            return []
        by_approval: dict[tuple[str, str], list[store.InboxEvent]] = {}
        for ie in events:
            by_approval.setdefault((ie.event.source, ie.event.approval_id), []).append(ie)
        results = await asyncio.gather(*(self._process_approval(group) for group in by_approval.values()))
        return [p for group in results for p in group]

    async def _process_approval(self, group: list[store.InboxEvent]) -> list[Processed]:
        async with self._sem:
            out = []
            for ie in sorted(group, key=lambda e: (e.event.occurred_at, e.id)):
                out.append(await self.process_one(ie))
            return out

    async def process_one(self, ie: store.InboxEvent) -> Processed:
        ev = ie.event
        with structlog.contextvars.bound_contextvars(
            source=ev.source, approval_id=ev.approval_id, event_id=ev.event_id
        ):
            approval = await self.store.get_approval(ev.source, ev.approval_id)
            notices = await self.store.notices_for(ev.source, ev.approval_id) if approval else []
            decision = self.decide(ie, approval, notices)
            now = self.clock.now()
            try:
                job_ids = await self.store.apply_decision(decision, now)
            except errors.AlreadyDecided:
                # another decider (a second process on the same database) claimed this event first; its
                # decision stands and this one changed nothing
                log.info("event.already_decided")
                return Processed(ie.id, _ALREADY_DECIDED, ())
            self.observer.event_processed(decision.outcome)
            if decision.outcome == Outcome.APPLIED and decision.from_status != decision.to_status:
                self.observer.transition(decision.from_status, decision.to_status)
            level = "info" if decision.outcome in (Outcome.APPLIED, Outcome.UNCHANGED, Outcome.IGNORED) else "warning"
            getattr(log, level)(
                f"event.{decision.outcome}",
                from_state=decision.from_status,
                to_state=decision.to_status,
                reason=decision.reason,
                jobs=len(job_ids),
            )
            return Processed(ie.id, decision.outcome, tuple(job_ids))

    def decide(
        self, ie: store.InboxEvent, approval: store.Approval | None, notices: list[store.Notice]
    ) -> store.Decision:
        """Pure: the Decision for one event given the approval's current row and notices."""
        ev = ie.event
        now = self.clock.now()
        state = approval.status if approval else "new"
        card = merge_card(approval.card if approval else {}, ev)

        def journal(outcome: str, message: str, **data: Any) -> list[store.NewJournal]:
            return [
                store.NewJournal(
                    kind=f"event.{outcome}",
                    message=message,
                    source=ev.source,
                    approval_id=ev.approval_id,
                    event_id=ev.event_id,
                    data=data,
                )
            ]

        def unchanged(outcome: str, reason: str | None, keep_card: bool = False) -> store.Decision:
            row = None
            if keep_card and approval is not None:
                row = _replace_approval(approval, card=card, updated_at=now)
            return store.Decision(
                inbox_id=ie.id,
                outcome=outcome,
                reason=reason,
                from_status=state,
                to_status=state,
                approval=row,
                journal=journal(outcome, reason or outcome),
            )

        if ev.status is None:
            return unchanged(Outcome.IGNORED, ev.note or "the event carries no status change")

        verdict = machine.decide(
            state,
            ev.status,
            occurred_at=ev.occurred_at,
            last_occurred_at=approval.last_occurred_at if approval else None,
            on_revoked=self.cfg.card.on_revoked,
        )
        if verdict.outcome == Outcome.STALE:
            return unchanged(Outcome.STALE, verdict.reason)
        if verdict.outcome == Outcome.CONFLICT:
            return unchanged(Outcome.CONFLICT, verdict.reason)
        if verdict.outcome == Outcome.UNCHANGED:
            return unchanged(Outcome.UNCHANGED, verdict.reason, keep_card=True)

        generation = (approval.generation if approval else 0) + (1 if verdict.resubmission or not approval else 0)
        if machine.Action.SEND in verdict.actions:
            missing = missing_for_card(card)
            if missing:
                reason = ev.unresolved or (
                    f"cannot create a card: no {', '.join(missing)} known for this approval "
                    "(send them on the first event)"
                )
                return unchanged(Outcome.UNRESOLVED, reason)

        new_notices: list[store.NewNotice] = []
        jobs: list[store.NewJob] = []
        key = lock_key(ev.source, ev.approval_id)
        style = self.cfg.statuses.style(verdict.to_state) if verdict.to_state in _STYLED else None
        for action in verdict.actions:
            if action is machine.Action.SEND:
                assert style is not None
                try:
                    msg = render.render_card(with_reference(card, ev.approval_id), style, self.cfg.card,
                                             generation=generation, approval_id=ev.approval_id)
                except errors.MessageInvalid as exc:
                    return unchanged(Outcome.UNRESOLVED, f"cannot render the card: {exc}")
                groups = render.chunk(card["recipients"], self.cfg.dingtalk.status_bar_max_userids)
                for i, userids in enumerate(groups):
                    new_notices.append(
                        store.NewNotice(
                            generation=generation,
                            group_index=i,
                            userids=userids,
                            msg=msg,
                            status_value=style.label,
                            status_bg=style.color,
                        )
                    )
                    jobs.append(
                        store.NewJob(kind=JobKind.SEND, lock_key=key, new_notice_index=len(new_notices) - 1,
                                     event_id=ev.event_id)
                    )
            elif action is machine.Action.UPDATE:
                assert style is not None
                for n in notices:
                    if n.generation == generation and n.state != "recalled":
                        jobs.append(
                            store.NewJob(
                                kind=JobKind.UPDATE,
                                lock_key=key,
                                notice_id=n.id,
                                payload={"status": verdict.to_state, "status_value": style.label,
                                         "status_bg": style.color},
                                event_id=ev.event_id,
                            )
                        )
            elif action is machine.Action.RECALL:
                revoked = self.cfg.statuses.revoked
                whole_history = verdict.to_state == "recalled"
                for n in notices:
                    if n.state != "recalled" and (whole_history or n.generation == generation):
                        jobs.append(
                            store.NewJob(
                                kind=JobKind.RECALL,
                                lock_key=key,
                                notice_id=n.id,
                                payload={"fallback_status_value": revoked.label, "fallback_status_bg": revoked.color},
                                event_id=ev.event_id,
                            )
                        )

        row = store.Approval(
            source=ev.source,
            approval_id=ev.approval_id,
            status=verdict.to_state,
            last_occurred_at=ev.occurred_at,
            generation=generation,
            card=card,
            created_at=approval.created_at if approval else now,
            updated_at=now,
        )
        reason = f"{state} → {verdict.to_state}"
        if verdict.resubmission:
            reason += f" (resubmitted: card generation {generation})"
        return store.Decision(
            inbox_id=ie.id,
            outcome=Outcome.APPLIED,
            reason=reason,
            from_status=state,
            to_status=verdict.to_state,
            approval=row,
            new_notices=new_notices,
            jobs=jobs,
            journal=journal(Outcome.APPLIED, reason, actions=[a.value for a in verdict.actions], jobs=len(jobs)),
        )


_ALREADY_DECIDED = "already_decided"  # Processed.outcome when another decider claimed the event first
_STYLED = frozenset({"pending", "approved", "rejected", "revoked"})


def _replace_approval(a: store.Approval, **changes: Any) -> store.Approval:
    from dataclasses import replace

    return replace(a, **changes)
