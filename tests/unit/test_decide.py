"""The pure decision: no store, no clock; `now` and the policy are arguments."""

from __future__ import annotations

from datetime import timedelta

from bridge import decide
from bridge.config import CardConfig, StatusesConfig
from bridge.events import Status
from bridge.records import Approval, InboxEvent, JobKind, Notice, NoticeState, Outcome
from tests.unit.helpers import T0, event


def policy(max_userids: int = 5) -> decide.Policy:
    return decide.Policy(statuses=StatusesConfig(), card=CardConfig(), max_userids=max_userids)


def inbox(ev, id: int = 1) -> InboxEvent:
    return InboxEvent(id=id, event=ev, received_at=T0)


def test_first_event_decides_the_same_twice_and_stamps_the_given_now() -> None:
    ie = inbox(event(Status.PENDING, n=7))
    now = T0 + timedelta(hours=3)
    first = decide.decide(ie, None, [], policy(), now)
    assert first == decide.decide(ie, None, [], policy(), now)
    assert first.outcome == Outcome.APPLIED and first.to_status == "pending"
    assert first.approval is not None and first.approval.created_at == now and first.approval.updated_at == now
    assert [len(n.userids) for n in first.new_notices] == [5, 2]
    assert [(j.kind, j.new_notice_index) for j in first.jobs] == [(JobKind.SEND, 0), (JobKind.SEND, 1)]


def test_policy_max_userids_sets_the_group_size() -> None:
    d = decide.decide(inbox(event(Status.PENDING, n=7)), None, [], policy(max_userids=3), T0)
    assert [len(n.userids) for n in d.new_notices] == [3, 3, 1]


def approval(status: str) -> Approval:
    card = {"title": "采购申请 PO-1", "recipients": ["u1"], "url": "https://erp.example.com/po/1"}
    return Approval("erp", "PO-1", status, T0, 1, card, T0, T0)


def notice(id: int, state: str, generation: int = 1) -> Notice:
    return Notice(id, "erp", "PO-1", generation, 0, ("u1",), {}, state)


def test_update_skips_recalled_cards_and_recall_on_delete_takes_every_generation() -> None:
    notices = [notice(1, NoticeState.SENT), notice(2, NoticeState.RECALLED), notice(3, NoticeState.SENT, 0)]
    up = decide.decide(inbox(event(Status.APPROVED, minutes=5, card=False)), approval("pending"), notices,
                       policy(), T0)
    assert [(j.kind, j.notice_id) for j in up.jobs] == [(JobKind.UPDATE, 1)]
    gone = decide.decide(inbox(event(Status.DELETED, minutes=5, card=False)), approval("approved"), notices,
                         policy(), T0)
    assert [(j.kind, j.notice_id) for j in gone.jobs] == [(JobKind.RECALL, 1), (JobKind.RECALL, 3)]
    assert gone.jobs[0].payload == {"fallback_status_value": "已撤销", "fallback_status_bg": "0xFF858E99"}


def test_missing_card_fields_are_unresolved_and_change_nothing() -> None:
    d = decide.decide(inbox(event(Status.PENDING, card=False)), None, [], policy(), T0)
    assert d.outcome == Outcome.UNRESOLVED and d.approval is None and not d.jobs
    assert "no title, recipients, url" in (d.reason or "")
