"""The approval state machine: which status moves are legal and what DingTalk work each one means.

An ERP reports statuses (pending, approved, rejected, revoked, deleted) in any order, sometimes twice and
sometimes late. This module is the single place that decides what such a report does to an approval and to
its cards. It is pure: no I/O, no clock, sync callbacks only. The service calls `decide()` and turns the
returned `Verdict` (an outcome plus the DingTalk work as data) into rows and jobs in one transaction.

States (their values are what the store persists):

    new ──submit/approve/reject/revoke──▶ pending | approved | rejected | revoked   (card sent in that colour)
    new ──delete──▶ recalled                       (no card ever existed: nothing to do)
    pending ──approve/reject/revoke──▶ approved | rejected | revoked    (status bar updated, or recalled)
    approved ──revoke──▶ revoked                   (withdrawn after approval)
    rejected | revoked ──submit──▶ pending         (resubmitted: a NEW card, next generation)
    any card state ──delete──▶ recalled            (every card recalled; final)

Events are verbs named after the status that triggers them (`EVENT_FOR`). A repeat of the current status is
a no-op ("unchanged"), an event older than the last applied one is "stale" (checked first), and every move
the machine does not declare is a "conflict" with a reason a person can act on. `f"{ApprovalMachine:md}"`
is the golden transition table in tests/fixtures/transitions.md; `f"{ApprovalMachine:mermaid}"` draws it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from bridge.events import Status
from bridge.records import ApprovalState, Outcome

__all__ = [
    "EVENT_FOR",
    "STATES",
    "TARGET_FOR",
    "Action",
    "ApprovalMachine",
    "Verdict",
    "decide",
    "transitions_markdown",
    "transitions_mermaid",
]


class Action(StrEnum):
    """DingTalk work a transition asks for."""

    SEND = "send"  # send a new card (to every recipient group)
    UPDATE = "update"  # turn the status bar of the current cards
    RECALL = "recall"  # recall cards


# The persisted state values, in document order.
STATES = tuple(ApprovalState)

# The machine event each reported status fires, and the state that status leads to.
EVENT_FOR: dict[Status, str] = {
    Status.PENDING: "submit",
    Status.APPROVED: "approve",
    Status.REJECTED: "reject",
    Status.REVOKED: "revoke",
    Status.DELETED: "delete",
}
TARGET_FOR: dict[Status, ApprovalState] = {
    Status.PENDING: ApprovalState.PENDING,
    Status.APPROVED: ApprovalState.APPROVED,
    Status.REJECTED: ApprovalState.REJECTED,
    Status.REVOKED: ApprovalState.REVOKED,
    Status.DELETED: ApprovalState.RECALLED,
}

# Why a state refuses what it refuses (the conflict reason's second half).
_ONLY: dict[str, str] = {
    ApprovalState.APPROVED: "an approved approval can only be revoked or deleted",
    ApprovalState.REJECTED: "a rejected approval can only be resubmitted (pending) or deleted",
    ApprovalState.REVOKED: "a revoked approval can only be resubmitted (pending) or deleted",
    ApprovalState.RECALLED: "a deleted approval is final (its cards were recalled)",
}


class ApprovalMachine(StateMachine):
    """Approval states and the legal moves between them; each transition records its DingTalk work on the
    model (`_Decision.actions`). Strict base class: an undeclared move raises `TransitionNotAllowed`."""

    new = State("New", initial=True, value=ApprovalState.NEW)
    pending = State("Pending", value=ApprovalState.PENDING)
    approved = State("Approved", value=ApprovalState.APPROVED)
    rejected = State("Rejected", value=ApprovalState.REJECTED)
    revoked = State("Revoked", value=ApprovalState.REVOKED)
    recalled = State("Recalled", final=True, value=ApprovalState.RECALLED)

    submit = (
        new.to(pending, on="send_card")
        | rejected.to(pending, on="resend_card")
        | revoked.to(pending, on="resend_card")
    )
    approve = new.to(approved, on="send_card") | pending.to(approved, on="update_cards")
    reject = new.to(rejected, on="send_card") | pending.to(rejected, on="update_cards")
    revoke = (
        new.to(revoked, on="send_card")
        | pending.to(revoked, cond="recall_on_revoke", on="recall_cards")
        | pending.to(revoked, on="update_cards")
        | approved.to(revoked, cond="recall_on_revoke", on="recall_cards")
        | approved.to(revoked, on="update_cards")
    )
    delete = (
        new.to(recalled)
        | pending.to(recalled, on="recall_cards")
        | approved.to(recalled, on="recall_cards")
        | rejected.to(recalled, on="recall_cards")
        | revoked.to(recalled, on="recall_cards")
    )

    # --- guards and actions (sync: the machine stays on the sync engine) ---------------------------------

    def recall_on_revoke(self, on_revoked: str = "update") -> bool:
        return on_revoked == "recall"

    def send_card(self, model: _Decision) -> None:
        model.actions.append(Action.SEND)

    def resend_card(self, model: _Decision) -> None:
        model.actions.append(Action.SEND)
        model.resubmission = True

    def update_cards(self, model: _Decision) -> None:
        model.actions.append(Action.UPDATE)

    def recall_cards(self, model: _Decision) -> None:
        model.actions.append(Action.RECALL)


@dataclass(eq=False)
class _Decision:
    """The model the machine is bound to for one decision: the state, and the work its callbacks record."""

    state: str
    actions: list[Action] = field(default_factory=list)
    resubmission: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one reported status does to an approval.

    `outcome` is Outcome.APPLIED, UNCHANGED, STALE or CONFLICT. `to_state` equals `from_state`
    unless applied. `actions` is the DingTalk work in order. `reason` explains anything but an applied move.
    `resubmission` is set for rejected/revoked → pending: the service bumps the card generation.
    """

    outcome: str
    from_state: str
    to_state: str
    actions: tuple[Action, ...]
    reason: str | None
    resubmission: bool = False


def decide(
    state: str,
    status: Status,
    *,
    occurred_at: datetime,
    last_occurred_at: datetime | None,
    on_revoked: str = "update",
) -> Verdict:
    """Decide what `status`, reported at `occurred_at`, does to an approval currently in `state`.

    Checked in this order: stale (older than `last_occurred_at`; equal times are not stale), unchanged (a
    repeat of the current status), then legality by running the machine. `on_revoked` is the card config's
    choice for revocations of a live card: "update" (grey status bar) or "recall" (cards recalled).
    Raises ValueError for a state, status or on_revoked bridge does not know (a programming or storage error).
    """
    if state not in STATES:
        raise ValueError(f"unknown approval state {state!r} (expected one of {', '.join(STATES)})")
    if on_revoked not in ("update", "recall"):
        raise ValueError(f'on_revoked must be "update" or "recall", got {on_revoked!r}')
    status = Status(status)
    target = TARGET_FOR[status]
    if last_occurred_at is not None and occurred_at < last_occurred_at:
        reason = (
            f"{status.value} at {occurred_at.isoformat()} is older than the last applied event "
            f"({last_occurred_at.isoformat()}); the approval stays {state}"
        )
        return Verdict(Outcome.STALE, state, state, (), reason)
    if target == state:
        reason = f"a repeated {status.value}: the approval is already {state}"
        return Verdict(Outcome.UNCHANGED, state, state, (), reason)
    return _run(state, status, on_revoked == "recall")


@functools.cache
def _run(state: str, status: Status, recall_on_revoke: bool) -> Verdict:
    """Fire the status's event on a machine bound to `state`. Cached: the answer depends on these three
    values only, and building a machine costs far more than a dict lookup (60 combinations in all)."""
    model = _Decision(state)
    sm = ApprovalMachine(model=model, state_field="state")
    try:
        sm.send(EVENT_FOR[status], on_revoked="recall" if recall_on_revoke else "update")
    except TransitionNotAllowed:
        target = TARGET_FOR[status]
        reason = f"{state} → {target} is not allowed: {_ONLY.get(state, f'{state} cannot move to {target}')}"
        return Verdict(Outcome.CONFLICT, state, state, (), reason)
    return Verdict(Outcome.APPLIED, state, model.state, tuple(model.actions), None, model.resubmission)


def transitions_markdown() -> str:
    """The transition table as Markdown (the golden file tests/fixtures/transitions.md)."""
    return f"{ApprovalMachine:md}"


def transitions_mermaid() -> str:
    """The state diagram as a Mermaid `stateDiagram-v2` (the README's diagram)."""
    return f"{ApprovalMachine:mermaid}"
