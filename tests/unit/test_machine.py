"""Tests for bridge.machine: every (state, status) pair, staleness, revocation policy, the golden table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statemachine import StateMachine
from statemachine.exceptions import TransitionNotAllowed

from bridge import machine, store
from bridge.events import Status
from bridge.machine import Action, ApprovalMachine, Verdict, decide

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

SEND, UPDATE, RECALL = (Action.SEND,), (Action.UPDATE,), (Action.RECALL,)
A, U, C = store.Outcome.APPLIED, store.Outcome.UNCHANGED, store.Outcome.CONFLICT
P, OK, NO, RV, DEL = Status.PENDING, Status.APPROVED, Status.REJECTED, Status.REVOKED, Status.DELETED

# (state, status) -> (outcome, to_state, actions, resubmission), with on_revoked="update". All 30 pairs.
GRID: dict[tuple[str, Status], tuple[str, str, tuple[Action, ...], bool]] = {
    ("new", P): (A, "pending", SEND, False),
    ("new", OK): (A, "approved", SEND, False),
    ("new", NO): (A, "rejected", SEND, False),
    ("new", RV): (A, "revoked", SEND, False),
    ("new", DEL): (A, "recalled", (), False),
    ("pending", P): (U, "pending", (), False),
    ("pending", OK): (A, "approved", UPDATE, False),
    ("pending", NO): (A, "rejected", UPDATE, False),
    ("pending", RV): (A, "revoked", UPDATE, False),
    ("pending", DEL): (A, "recalled", RECALL, False),
    ("approved", P): (C, "approved", (), False),
    ("approved", OK): (U, "approved", (), False),
    ("approved", NO): (C, "approved", (), False),
    ("approved", RV): (A, "revoked", UPDATE, False),
    ("approved", DEL): (A, "recalled", RECALL, False),
    ("rejected", P): (A, "pending", SEND, True),
    ("rejected", OK): (C, "rejected", (), False),
    ("rejected", NO): (U, "rejected", (), False),
    ("rejected", RV): (C, "rejected", (), False),
    ("rejected", DEL): (A, "recalled", RECALL, False),
    ("revoked", P): (A, "pending", SEND, True),
    ("revoked", OK): (C, "revoked", (), False),
    ("revoked", NO): (C, "revoked", (), False),
    ("revoked", RV): (U, "revoked", (), False),
    ("revoked", DEL): (A, "recalled", RECALL, False),
    ("recalled", P): (C, "recalled", (), False),
    ("recalled", OK): (C, "recalled", (), False),
    ("recalled", NO): (C, "recalled", (), False),
    ("recalled", RV): (C, "recalled", (), False),
    ("recalled", DEL): (U, "recalled", (), False),
}


def test_grid_covers_every_state_and_status() -> None:
    assert set(GRID) == {(s, st) for s in machine.STATES for st in Status}
    assert len(GRID) == 30


@pytest.mark.parametrize(("state", "status"), list(GRID), ids=[f"{s}-{st.value}" for s, st in GRID])
def test_every_state_status_pair(state: str, status: Status) -> None:
    outcome, to_state, actions, resubmission = GRID[state, status]
    verdict = decide(state, status, occurred_at=T0 + timedelta(seconds=1), last_occurred_at=T0)
    assert verdict.outcome == outcome
    assert verdict.from_state == state
    assert verdict.to_state == to_state
    assert verdict.actions == actions
    assert verdict.resubmission is resubmission
    if outcome == store.Outcome.APPLIED:
        assert verdict.reason is None
    else:
        assert verdict.reason and state in verdict.reason


def test_conflict_reason_names_the_move_and_what_is_allowed() -> None:
    verdict = decide("approved", Status.REJECTED, occurred_at=T0, last_occurred_at=None)
    assert verdict.reason == (
        "approved → rejected is not allowed: an approved approval can only be revoked or deleted"
    )
    assert "resubmitted" in (decide("rejected", Status.APPROVED, occurred_at=T0, last_occurred_at=None).reason or "")
    assert "final" in (decide("recalled", Status.PENDING, occurred_at=T0, last_occurred_at=None).reason or "")


def test_unchanged_reason_says_it_is_a_repeat() -> None:
    verdict = decide("approved", Status.APPROVED, occurred_at=T0, last_occurred_at=T0)
    assert verdict.reason == "a repeated approved: the approval is already approved"


@pytest.mark.parametrize(("state", "to_state"), [("pending", "revoked"), ("approved", "revoked")])
def test_on_revoked_recall_recalls_instead_of_updating(state: str, to_state: str) -> None:
    verdict = decide(state, Status.REVOKED, occurred_at=T0, last_occurred_at=None, on_revoked="recall")
    assert (verdict.outcome, verdict.to_state, verdict.actions) == (store.Outcome.APPLIED, to_state, RECALL)
    # and the default policy is a grey status bar, not a recall
    assert decide(state, Status.REVOKED, occurred_at=T0, last_occurred_at=None).actions == UPDATE


def test_on_revoked_recall_does_not_change_other_moves() -> None:
    for (state, status), (outcome, to_state, actions, _) in GRID.items():
        if status is Status.REVOKED and state in ("pending", "approved"):
            continue
        verdict = decide(state, status, occurred_at=T0, last_occurred_at=None, on_revoked="recall")
        assert (verdict.outcome, verdict.to_state, verdict.actions) == (outcome, to_state, actions), (state, status)


def test_revoked_straight_from_new_sends_a_grey_card_even_with_recall_policy() -> None:
    verdict = decide("new", Status.REVOKED, occurred_at=T0, last_occurred_at=None, on_revoked="recall")
    assert verdict.actions == SEND and verdict.to_state == "revoked"


def test_older_event_is_stale_and_changes_nothing() -> None:
    verdict = decide("pending", Status.APPROVED, occurred_at=T0 - timedelta(microseconds=1), last_occurred_at=T0)
    assert verdict == Verdict(store.Outcome.STALE, "pending", "pending", (), verdict.reason)
    assert verdict.reason and "older" in verdict.reason and T0.isoformat() in verdict.reason


def test_equal_timestamp_is_not_stale() -> None:
    verdict = decide("pending", Status.APPROVED, occurred_at=T0, last_occurred_at=T0)
    assert verdict.outcome == store.Outcome.APPLIED and verdict.to_state == "approved"


def test_staleness_is_checked_before_legality_and_repeats() -> None:
    older = T0 - timedelta(hours=1)
    # illegal on its own (approved → pending), but it is old: stale, not a conflict
    assert decide("approved", Status.PENDING, occurred_at=older, last_occurred_at=T0).outcome == store.Outcome.STALE
    # a repeat that is also old is stale too
    assert decide("approved", Status.APPROVED, occurred_at=older, last_occurred_at=T0).outcome == store.Outcome.STALE


def test_no_previous_event_is_never_stale() -> None:
    verdict = decide("new", Status.PENDING, occurred_at=datetime(2000, 1, 1, tzinfo=UTC), last_occurred_at=None)
    assert verdict.outcome == store.Outcome.APPLIED


def test_resubmission_flag_only_on_rejected_or_revoked_to_pending() -> None:
    flagged = {
        (state, status)
        for state in machine.STATES
        for status in Status
        if decide(state, status, occurred_at=T0, last_occurred_at=None).resubmission
    }
    assert flagged == {("rejected", Status.PENDING), ("revoked", Status.PENDING)}


def test_status_given_as_plain_string_is_accepted() -> None:
    verdict = decide("pending", "approved", occurred_at=T0, last_occurred_at=None)  # type: ignore[arg-type]
    assert verdict.to_state == "approved"


def test_unknown_state_status_or_policy_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown approval state"):
        decide("archived", Status.APPROVED, occurred_at=T0, last_occurred_at=None)
    with pytest.raises(ValueError):
        decide("pending", "closed", occurred_at=T0, last_occurred_at=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_revoked"):
        decide("pending", Status.REVOKED, occurred_at=T0, last_occurred_at=None, on_revoked="ignore")


def test_machine_is_strict_and_persists_state_values() -> None:
    assert issubclass(ApprovalMachine, StateMachine)
    assert ApprovalMachine.allow_event_without_transition is False
    assert ApprovalMachine.catch_errors_as_events is False
    assert [s.value for s in ApprovalMachine.states] == list(machine.STATES)

    class Row:
        state = "approved"
        actions: list[Action]
        resubmission = False

    row = Row()
    row.actions = []
    sm = ApprovalMachine(model=row, state_field="state")
    with pytest.raises(TransitionNotAllowed):
        sm.send("reject")
    assert row.state == "approved" and row.actions == []
    sm.send("revoke", on_revoked="update")
    assert row.state == "revoked" and row.actions == [Action.UPDATE]


def test_every_status_maps_to_a_declared_event_and_state() -> None:
    events = {e.id for e in ApprovalMachine.events}
    assert set(machine.EVENT_FOR.values()) == events
    assert set(machine.TARGET_FOR.values()) <= set(machine.STATES)


def test_golden_transition_table() -> None:
    assert machine.transitions_markdown() == (FIXTURES / "transitions.md").read_text(encoding="utf-8")


def test_mermaid_diagram_draws_every_move() -> None:
    diagram = machine.transitions_mermaid()
    assert diagram.startswith("stateDiagram-v2")
    for line in (
        "[*] --> new",
        "recalled --> [*]",
        "new --> recalled : Delete",
        "approved --> revoked : Revoke",
        "rejected --> pending : Submit",
        "revoked --> pending : Submit",
    ):
        assert line in diagram
    assert "approved --> rejected" not in diagram and "recalled --> pending" not in diagram


_STATUSES = st.sampled_from(list(Status))


@given(st.lists(st.tuples(_STATUSES, st.integers(min_value=-5, max_value=5)), max_size=12), st.booleans())
def test_replaying_any_sequence_keeps_the_invariants(steps: list[tuple[Status, int]], recall: bool) -> None:
    """Feed decisions back as the service does: state and last time move only when applied."""
    state, last = "new", None
    for status, offset in steps:
        at = T0 + timedelta(minutes=offset)
        verdict = decide(state, status, occurred_at=at, last_occurred_at=last,
                         on_revoked="recall" if recall else "update")
        assert verdict.from_state == state
        if verdict.outcome != store.Outcome.APPLIED:
            assert verdict.to_state == state and verdict.actions == ()
            continue
        assert verdict.to_state == machine.TARGET_FOR[status]
        if state == "recalled":
            pytest.fail("an event moved an approval out of recalled")
        if Action.SEND in verdict.actions:
            assert verdict.to_state != "recalled"
        state, last = verdict.to_state, at
