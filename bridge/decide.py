"""The pure decision: one stored event + the approval as it stands → the `Decision` to write.

Split out of the service so the rule "what does this event do to this approval and its cards" can be
read and tested without a store, a worker or a clock: `decide()` takes the event, the approval row, its
notices, the settings it needs (`Policy`) and `now` as arguments, and returns a `records.Decision`. It
does no I/O and reads no clock; the service fetches the inputs, calls it and applies the result in one
transaction. The machine (bridge.machine) says which move is legal and which DingTalk work it means;
this module turns that work into notices and jobs, one small helper per action (send, update, recall).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bridge import cards, errors, machine, render
from bridge.events import ApprovalEvent
from bridge.records import (
    Approval,
    ApprovalState,
    Decision,
    InboxEvent,
    JobKind,
    NewJob,
    NewJournal,
    NewNotice,
    Notice,
    NoticeState,
    Outcome,
)
from bridge.render import CardLook, StatusLook, StatusLooks

__all__ = ["Policy", "StatusLooks", "card_message", "decide", "lock_key", "merge_card", "missing_for_card",
           "with_reference"]

_CARD_FIELDS = ("title", "recipients", "applicant", "url", "pc_url", "form", "amount", "content")
# The states a card shows a status bar for (the others, new and recalled, have no colour of their own).
_STYLED = frozenset({ApprovalState.PENDING, ApprovalState.APPROVED, ApprovalState.REJECTED, ApprovalState.REVOKED})


@dataclass(frozen=True, slots=True)
class Policy:
    """The part of the configuration a decision depends on, so a test can state it in one line and the
    decision cannot reach for settings (timeouts, URLs, secrets) that must not change what it decides.
    Typed by Protocols, not the config loader, so the pure core does not import it; the service builds
    one from the loaded `Config` (`bridge.service.policy_for`)."""

    statuses: StatusLooks
    card: CardLook
    on_revoked: str = "update"  # "update": grey status bar; "recall": recall the cards
    max_userids: int = 5  # DingTalk shows the OA status bar only on sends to at most this many userids
    templates: Mapping[str, cards.CardTemplate] = field(default_factory=dict)  # by source name ([sources.card])

    def statuses_for(self, source: str) -> StatusLooks:
        """The status bar looks of `source`'s cards: its template's, else the global [statuses]."""
        tpl = self.templates.get(source)
        return tpl.statuses if tpl is not None else self.statuses


def card_message(
    policy: Policy, card: Mapping[str, Any], event: ApprovalEvent, status: str, generation: int
) -> render.Rendered:
    """The card an approval's `card` data makes when `event` brings it to `status`: the source's template
    applied (if it has one), the approval reference added, rendered to fit. The decision and `bridge render`
    both call this, so the command shows exactly what would be sent. Raises MessageInvalid like render."""
    tpl = policy.templates.get(event.source)
    look: CardLook = policy.card
    if tpl is not None:
        ctx = cards.context(card, event, status=status, generation=generation)
        card, look = cards.apply(tpl, card, ctx), cards.look(tpl, ctx)
    style = policy.statuses_for(event.source).style(status)
    return render.render(with_reference(card, event.approval_id), style, look, generation=generation,
                         approval_id=event.approval_id)


def lock_key(source: str, approval_id: str) -> str:
    """Jobs of one approval share this key, so the worker runs them one at a time, in order."""
    return f"{source}/{approval_id}"


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
    """The fields without which no card can be sent; named in the `unresolved` reason."""
    return [name for name in ("title", "recipients", "url") if not card.get(name)]


@dataclass(frozen=True, slots=True)
class _Context:
    """What every step of one decision needs; built once so the helpers take one argument, not seven."""

    ie: InboxEvent
    approval: Approval | None
    notices: Sequence[Notice]
    policy: Policy
    now: datetime
    state: str
    card: dict[str, Any]

    @property
    def ev(self) -> ApprovalEvent:
        return self.ie.event

    def journal(self, outcome: str, message: str, **data: Any) -> list[NewJournal]:
        ev = self.ev
        return [
            NewJournal(
                kind=f"event.{outcome}",
                message=message,
                source=ev.source,
                approval_id=ev.approval_id,
                event_id=ev.event_id,
                data=data,
            )
        ]

    def unchanged(self, outcome: str, reason: str | None, keep_card: bool = False) -> Decision:
        """A decision that leaves the state where it is; `keep_card` still stores card data the event brought."""
        row = None
        if keep_card and self.approval is not None:
            row = replace(self.approval, card=self.card, updated_at=self.now)
        return Decision(
            inbox_id=self.ie.id,
            outcome=outcome,
            reason=reason,
            from_status=self.state,
            to_status=self.state,
            approval=row,
            journal=self.journal(outcome, reason or outcome),
        )


def decide(
    ie: InboxEvent,
    approval: Approval | None,
    notices: Sequence[Notice],
    policy: Policy,
    now: datetime,
) -> Decision:
    """The Decision for one event given the approval's current row and notices. Pure: same inputs, same
    Decision; `now` only stamps the rows it returns."""
    ev = ie.event
    cx = _Context(
        ie=ie,
        approval=approval,
        notices=notices,
        policy=policy,
        now=now,
        state=approval.status if approval else ApprovalState.NEW,
        card=merge_card(approval.card if approval else {}, ev),
    )
    if ev.status is None:
        return cx.unchanged(Outcome.IGNORED, ev.note or "the event carries no status change")

    verdict = machine.decide(
        cx.state,
        ev.status,
        occurred_at=ev.occurred_at,
        last_occurred_at=approval.last_occurred_at if approval else None,
        on_revoked=policy.on_revoked,
    )
    if verdict.outcome in (Outcome.STALE, Outcome.CONFLICT):
        return cx.unchanged(verdict.outcome, verdict.reason)
    if verdict.outcome == Outcome.UNCHANGED:
        return cx.unchanged(Outcome.UNCHANGED, verdict.reason, keep_card=True)

    generation = (approval.generation if approval else 0) + (1 if verdict.resubmission or not approval else 0)
    looks = policy.statuses_for(ev.source)
    style = looks.style(verdict.to_state) if verdict.to_state in _STYLED else None
    new_notices: list[NewNotice] = []
    jobs: list[NewJob] = []
    cut: tuple[str, ...] = ()
    for action in verdict.actions:
        if action is machine.Action.SEND:
            assert style is not None
            sent = _send(cx, verdict.to_state, style, generation)
            if isinstance(sent, Decision):
                return sent
            made, cut = sent
            new_notices.extend(made)
            jobs.extend(_send_jobs(cx, len(made)))
        elif action is machine.Action.UPDATE:
            assert style is not None
            jobs.extend(_update_jobs(cx, verdict.to_state, style, generation))
        elif action is machine.Action.RECALL:
            jobs.extend(_recall_jobs(cx, verdict.to_state, generation))
    decision = _applied(cx, verdict, generation, new_notices, jobs)
    if cut:  # the service logs this journal line as card.truncated
        line = NewJournal(kind=CARD_TRUNCATED, source=ev.source, approval_id=ev.approval_id, event_id=ev.event_id,
                          message=f"the card was too long for DingTalk and was shortened: {', '.join(cut)}",
                          data={"cut": list(cut)})
        decision = replace(decision, journal=[*decision.journal, line])
    return decision


CARD_TRUNCATED = "card.truncated"  # the journal kind (and log event) of a card shortened to fit


def _send(
    cx: _Context, to_state: str, style: StatusLook, generation: int
) -> tuple[list[NewNotice], tuple[str, ...]] | Decision:
    """The new notices of a send (one per group of recipients a status bar can show) and what was cut to fit
    the card, or the `unresolved` Decision when the card cannot be made: fields missing or it does not render."""
    missing = missing_for_card(cx.card)
    if missing:
        reason = cx.ev.unresolved or (
            f"cannot create a card: no {', '.join(missing)} known for this approval (send them on the first event)"
        )
        return cx.unchanged(Outcome.UNRESOLVED, reason)
    try:
        rendered = card_message(cx.policy, cx.card, cx.ev, to_state, generation)
    except errors.MessageInvalid as exc:
        return cx.unchanged(Outcome.UNRESOLVED, f"cannot render the card: {exc}")
    msg = rendered.msg
    groups = render.chunk(cx.card["recipients"], cx.policy.max_userids)
    return ([
        NewNotice(
            generation=generation,
            group_index=i,
            userids=userids,
            msg=msg,
            status_value=style.label,
            status_bg=style.color,
        )
        for i, userids in enumerate(groups)
    ], rendered.cut)


def _send_jobs(cx: _Context, count: int) -> list[NewJob]:
    """One send job per new notice; they point at the notices by index since those have no id yet."""
    key = lock_key(cx.ev.source, cx.ev.approval_id)
    return [
        NewJob(kind=JobKind.SEND, lock_key=key, new_notice_index=i, event_id=cx.ev.event_id) for i in range(count)
    ]


def _update_jobs(cx: _Context, to_state: str, style: StatusLook, generation: int) -> list[NewJob]:
    """Turn the status bar of every live card of the current generation; recalled cards have nothing to turn."""
    key = lock_key(cx.ev.source, cx.ev.approval_id)
    payload = {"status": to_state, "status_value": style.label, "status_bg": style.color}
    return [
        NewJob(kind=JobKind.UPDATE, lock_key=key, notice_id=n.id, payload=payload, event_id=cx.ev.event_id)
        for n in cx.notices
        if n.generation == generation and n.state != NoticeState.RECALLED
    ]


def _recall_jobs(cx: _Context, to_state: str, generation: int) -> list[NewJob]:
    """Recall the current generation's cards, or every card ever sent when the approval was deleted. The
    payload carries the revoked style for the worker's fallback when the recall window has passed."""
    key = lock_key(cx.ev.source, cx.ev.approval_id)
    revoked = cx.policy.statuses_for(cx.ev.source).revoked
    payload = {"fallback_status_value": revoked.label, "fallback_status_bg": revoked.color}
    whole_history = to_state == ApprovalState.RECALLED
    return [
        NewJob(kind=JobKind.RECALL, lock_key=key, notice_id=n.id, payload=payload, event_id=cx.ev.event_id)
        for n in cx.notices
        if n.state != NoticeState.RECALLED and (whole_history or n.generation == generation)
    ]


def _applied(
    cx: _Context, verdict: machine.Verdict, generation: int, new_notices: list[NewNotice], jobs: list[NewJob]
) -> Decision:
    """The Decision of a legal move: the approval row in its new state with the notices and jobs it asks for."""
    ev, approval = cx.ev, cx.approval
    row = Approval(
        source=ev.source,
        approval_id=ev.approval_id,
        status=verdict.to_state,
        last_occurred_at=ev.occurred_at,
        generation=generation,
        card=cx.card,
        created_at=approval.created_at if approval else cx.now,
        updated_at=cx.now,
    )
    reason = f"{cx.state} → {verdict.to_state}"
    if verdict.resubmission:
        reason += f" (resubmitted: card generation {generation})"
    return Decision(
        inbox_id=cx.ie.id,
        outcome=Outcome.APPLIED,
        reason=reason,
        from_status=cx.state,
        to_status=verdict.to_state,
        approval=row,
        new_notices=new_notices,
        jobs=jobs,
        journal=cx.journal(Outcome.APPLIED, reason, actions=[a.value for a in verdict.actions], jobs=len(jobs)),
    )
