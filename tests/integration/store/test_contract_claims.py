"""The Store contract, continued: decisions claimed atomically, the journal's tail, retention, orphaned notices.

Run against every store, like test_contract.py (whose helpers it shares; the `st` fixture is in conftest.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bridge import store
from bridge.errors import AlreadyDecided
from bridge.events import Status
from tests.integration.store.test_contract import KEY, T0, add, approval, ev, later_job, notice, send_setup

pytestmark = pytest.mark.integration


def first_decision(inbox_id: int) -> store.Decision:
    return store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
        approval=approval(), new_notices=[notice()],
        jobs=[store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=0)],
        journal=[store.NewJournal(kind="event.applied", source="erp", approval_id="PO-1")],
    )


# --- decisions are claimed ---------------------------------------------------------------------------------
async def test_two_deciders_racing_on_one_event_make_one_decision(st: store.Store) -> None:
    inbox_id = await add(st, ev())
    results = await asyncio.gather(*(st.apply_decision(first_decision(inbox_id), T0) for _ in range(2)),
                                   return_exceptions=True)
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, AlreadyDecided) for r in results) == 1
    assert len(await st.jobs_for("erp", "PO-1")) == 1 and len(await st.notices_for("erp", "PO-1")) == 1
    assert len(await st.audit_for("erp", "PO-1")) == 1 and len(await st.journal()) == 1


async def test_a_decided_event_is_not_decided_again_and_nothing_changes(st: store.Store) -> None:
    inbox_id, _ = await send_setup(st)
    before = (await st.get_approval("erp", "PO-1"), await st.jobs_for("erp", "PO-1"), await st.journal())
    stale = store.Decision(inbox_id, store.Outcome.APPLIED, "again", "pending", "approved",
                           approval("approved", at=T0 + timedelta(minutes=1)), [notice()],
                           [store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=0)],
                           [store.NewJournal(kind="event.applied")])
    with pytest.raises(AlreadyDecided):
        await st.apply_decision(stale, T0 + timedelta(minutes=1))
    after = (await st.get_approval("erp", "PO-1"), await st.jobs_for("erp", "PO-1"), await st.journal())
    assert after == before and len(await st.notices_for("erp", "PO-1")) == 1
    [event] = await st.events_for("erp", "PO-1")
    assert event.reason is None  # the first decision's mark stands


# --- the journal's tail ------------------------------------------------------------------------------------
async def test_journal_tail_is_the_last_n_lines_oldest_first(st: store.Store) -> None:
    await st.append_journal([store.NewJournal(kind=f"k{i}", source="erp" if i % 2 else "oa") for i in range(6)], T0)
    assert [e.kind for e in await st.journal_tail(3)] == ["k3", "k4", "k5"]
    assert [e.kind for e in await st.journal_tail(2, source="erp")] == ["k3", "k5"]
    assert [e.kind for e in await st.journal_tail(100, source="oa")] == ["k0", "k2", "k4"]
    assert await st.journal_tail(0) == []


# --- retention ---------------------------------------------------------------------------------------------
async def test_prune_deletes_old_finished_rows_in_batches_and_keeps_live_ones(st: store.Store) -> None:
    for i in range(3):  # three decided approvals, each with a done send job
        _, [job] = await send_setup(st, approval_id=f"PO-{i}")
        await st.claim_jobs(T0, 30.0, 10)
        await st.finish_job(job, T0)
    open_inbox = await add(st, ev("PO-9", status=Status.APPROVED))  # not yet decided: kept however old
    _, [dead] = await send_setup(st, approval_id="PO-8")
    await st.claim_jobs(T0, 30.0, 10)
    await st.bury_job(dead, T0, "x")  # dead: an operator must see it, kept
    await st.append_journal([store.NewJournal(kind="old")] * 3, T0)
    await st.append_journal([store.NewJournal(kind="new")], T0 + timedelta(days=40))
    cutoff = T0 + timedelta(days=10)

    first = await st.prune(cutoff, 2)
    assert (first.journal, first.inbox, first.audit, first.jobs) == (2, 2, 2, 2)
    total = first.total
    while (batch := await st.prune(cutoff, 2)).total:
        total += batch.total
    assert total == 3 + 4 * 2 + 3  # journal 3, inbox 4 and audit 4 (PO-0..2, PO-8), done jobs 3
    assert [e.kind for e in await st.journal()] == ["new"]
    assert [e.id for e in await st.pending_events()] == [open_inbox]
    assert [j.id for j in await st.list_jobs()] == [dead]
    assert await st.get_approval("erp", "PO-0") is not None and len(await st.notices_for("erp", "PO-0")) == 1
    assert await st.events_for("erp", "PO-0") == [] and await st.audit_for("erp", "PO-0") == []
    await add(st, ev("PO-7"))  # ids go on; a new event after pruning is stored as usual
    assert (await st.prune(cutoff, 0)).total == 0


# --- orphaned notices --------------------------------------------------------------------------------------
async def test_a_notice_is_marked_orphaned_counted_and_cleared(st: store.Store) -> None:
    await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    await st.save_notice(store.NoticeChange(notice_id=n.id, note="filtered", orphaned_at=T0))
    [n] = await st.notices_for("erp", "PO-1")
    assert n.orphaned_at == T0 and (await st.job_counts(T0)).orphaned == 1
    await st.save_notice(store.NoticeChange(notice_id=n.id, task_id=7))  # other changes leave it set
    [n] = await st.notices_for("erp", "PO-1")
    assert n.orphaned_at == T0 and n.task_id == 7
    await st.add_jobs([later_job(store.JobKind.UPDATE, n.id)], T0)
    await st.save_notice(store.NoticeChange(notice_id=n.id, task_id=8, clear_orphaned=True))
    [n] = await st.notices_for("erp", "PO-1")
    assert n.orphaned_at is None and n.task_id == 8 and (await st.job_counts(T0)).orphaned == 0


# --- the app that sent a notice ----------------------------------------------------------------------------
async def test_a_notice_keeps_the_app_that_sent_it(st: store.Store) -> None:
    """Stored at the send, kept by every later change, so updates and recalls go back to that app."""
    await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    assert n.app is None  # not sent yet (and every notice stored before apps were)
    [job] = await st.claim_jobs(T0, 60.0, 1)
    await st.finish_job(job.id, T0, notice=store.NoticeChange(notice_id=n.id, state=store.NoticeState.SENT,
                                                              task_id=7, sent_at=T0, app="hr"))
    [n] = await st.notices_for("erp", "PO-1")
    assert (n.app, n.task_id) == ("hr", 7)
    await st.save_notice(store.NoticeChange(notice_id=n.id, status_value="已同意", updated_at=T0))
    [n] = await st.notices_for("erp", "PO-1")
    assert n.app == "hr" and n.status_value == "已同意"


# --- the claim fair by kind --------------------------------------------------------------------------------
def update_behind(approval_id: str) -> store.NewJob:
    return store.NewJob(kind=store.JobKind.UPDATE, lock_key=f"erp:{approval_id}", new_notice_index=0,
                        payload={"status": "approved"})


async def test_a_claim_by_kind_takes_each_kind_up_to_its_number_and_keeps_each_approvals_order(
        st: store.Store) -> None:
    for i in range(3):  # three sent cards, each with an update due behind its (done) send
        await send_setup(st, approval_id=f"U-{i}", extra_jobs=(update_behind(f"U-{i}"),))
    for job in await st.claim_jobs(T0, 30.0, 10):
        await st.finish_job(job.id, T0)
    _, [b_send, b_update] = await send_setup(st, approval_id="B", extra_jobs=(update_behind("B"),))
    sends = [(await send_setup(st, approval_id=f"S-{i}"))[1][0] for i in range(4)]

    first = await st.claim_jobs(T0, 30.0, 10, {store.JobKind.SEND: 2, store.JobKind.UPDATE: 10})
    assert [j.kind for j in first].count(store.JobKind.SEND) == 2
    assert {j.id for j in first if j.kind == store.JobKind.SEND} == {b_send, sends[0]}  # the oldest sends
    assert sorted(j.approval_id for j in first if j.kind == store.JobKind.UPDATE) == ["U-0", "U-1", "U-2"]
    assert [(j.run_at, j.id) for j in first] == sorted((j.run_at, j.id) for j in first)
    assert all(j.state == store.JobState.RUNNING and j.attempts == 1 for j in first)
    for job in first:
        if job.kind == store.JobKind.UPDATE:
            await st.finish_job(job.id, T0)
    # B's update waits for B's send (running), however much room updates have; a kind not named is not claimed
    assert await st.claim_jobs(T0, 30.0, 10, {store.JobKind.UPDATE: 10, store.JobKind.CHECK: 10}) == []
    assert [j.id for j in await st.claim_jobs(T0, 30.0, 1, {store.JobKind.SEND: 5})] == [sends[1]]  # `limit` too
    assert await st.claim_jobs(T0, 30.0, 10, {store.JobKind.SEND: 0}) == []
    # a lease that passed makes its job claimable by kind again, oldest first
    [again] = await st.claim_jobs(T0 + timedelta(seconds=31), 30.0, 10, {store.JobKind.SEND: 1})
    assert (again.id, again.attempts) == (b_send, 2)
    await st.finish_job(b_send, T0 + timedelta(seconds=32))
    [behind] = await st.claim_jobs(T0 + timedelta(seconds=32), 30.0, 10, {store.JobKind.UPDATE: 1})
    assert behind.id == b_update
