"""The Store contract: `apply_decision_and_claim`, a decision and the claim of its approval's due jobs in one write.

Run against every store, like test_contract.py (whose helpers it shares; the `st` fixture is in conftest.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bridge import store
from bridge.errors import AlreadyDecided
from bridge.records import JobState
from tests.integration.store.test_contract import KEY, T0, add, approval, ev, notice, send_setup

pytestmark = pytest.mark.integration

LEASE_S = 30.0


def two_groups(inbox_id: int) -> store.Decision:
    """The first event of PO-1: two notices (two groups of recipients), one send job each, in one key."""
    return store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
        approval=approval(), new_notices=[notice(0), notice(1, userids=("u3",))],
        jobs=[store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=i) for i in range(2)],
        journal=[store.NewJournal(kind="event.applied", source="erp", approval_id="PO-1")],
    )


async def test_the_new_head_job_is_claimed_with_its_notices_and_the_rest_waits(st: store.Store) -> None:
    inbox_id = await add(st, ev())
    applied = await st.apply_decision_and_claim(two_groups(inbox_id), T0, LEASE_S, 5)
    first, second = applied.job_ids
    [claimed] = applied.claimed  # the second send is behind the first in its key
    assert claimed.id == first and claimed.state == JobState.RUNNING and claimed.attempts == 1
    assert claimed.lease_until == T0 + timedelta(seconds=LEASE_S)
    assert claimed.notice_id in applied.notices
    assert [n.userids for n in applied.notices.values()] == [("u1", "u2"), ("u3",)]
    assert applied.notices == {n.id: n for n in await st.notices_for("erp", "PO-1")}
    assert await st.claim_jobs(T0, LEASE_S, 10) == []  # the head is leased; its successor waits for it
    await st.finish_job(first, T0)
    assert [j.id for j in await st.claim_jobs(T0, LEASE_S, 10)] == [second]
    [event] = await st.events_for("erp", "PO-1")
    assert event.processed and len(await st.audit_for("erp", "PO-1")) == 1 and len(await st.journal()) == 1


async def test_a_limit_of_zero_claims_nothing_and_claim_jobs_finds_the_job(st: store.Store) -> None:
    inbox_id = await add(st, ev())
    applied = await st.apply_decision_and_claim(two_groups(inbox_id), T0, LEASE_S, 0)
    assert applied.claimed == () and len(applied.job_ids) == 2 and len(applied.notices) == 2
    assert [j.id for j in await st.claim_jobs(T0, LEASE_S, 10)] == [applied.job_ids[0]]


async def test_only_the_decisions_approval_is_claimed_and_only_due_jobs(st: store.Store) -> None:
    _, [other] = await send_setup(st, approval_id="PO-2")  # another approval's due send
    inbox_id = await add(st, ev())
    later = store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
        approval=approval(), new_notices=[notice()],
        jobs=[store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=0,
                           run_at=T0 + timedelta(minutes=1))],
    )
    applied = await st.apply_decision_and_claim(later, T0, LEASE_S, 5)
    assert applied.claimed == ()  # not due yet, and PO-2's job is not this approval's
    assert [j.id for j in await st.claim_jobs(T0, LEASE_S, 10)] == [other]


async def test_a_decided_event_claims_nothing_and_changes_nothing(st: store.Store) -> None:
    inbox_id, [job] = await send_setup(st)
    before = (await st.jobs_for("erp", "PO-1"), await st.journal())
    with pytest.raises(AlreadyDecided):
        await st.apply_decision_and_claim(two_groups(inbox_id), T0, LEASE_S, 5)
    assert (await st.jobs_for("erp", "PO-1"), await st.journal()) == before
    assert [j.id for j in await st.claim_jobs(T0, LEASE_S, 10)] == [job]  # still pending: nothing was claimed


async def test_two_deciders_racing_make_one_decision_and_one_claim(st: store.Store) -> None:
    inbox_id = await add(st, ev())
    results = await asyncio.gather(*(st.apply_decision_and_claim(two_groups(inbox_id), T0, LEASE_S, 5)
                                     for _ in range(2)), return_exceptions=True)
    won = [r for r in results if isinstance(r, store.Applied)]
    assert len(won) == 1 and sum(isinstance(r, AlreadyDecided) for r in results) == 1
    assert len(won[0].claimed) == 1 and len(await st.jobs_for("erp", "PO-1")) == 2


# --- pending_batch: the events with their approvals and notices ----------------------------------------------
async def test_pending_batch_brings_each_approvals_row_and_notices(st: store.Store) -> None:
    await send_setup(st)  # PO-1 decided: its approval and one notice
    later = await add(st, ev(minutes=1))
    new = await add(st, ev("PO-2"))
    batch = await st.pending_batch()
    assert [e.id for e in batch.events] == [later, new]
    assert batch.approvals == {("erp", "PO-1"): await st.get_approval("erp", "PO-1")}  # PO-2 is new: absent
    assert batch.notices == {("erp", "PO-1"): tuple(await st.notices_for("erp", "PO-1"))}
    assert len(batch.notices["erp", "PO-1"]) == 1
    assert [e.id for e in await st.pending_events()] == [later, new]


async def test_pending_batch_keeps_each_approvals_notices_apart_and_in_order(st: store.Store) -> None:
    """Several approvals in one batch, each with its own notices (read for the whole batch at once on SQLite),
    and two events of one approval: every approval gets exactly its notices, in id order, and only once."""
    for approval_id, groups in (("PO-2", 3), ("PO-1", 2), ("PO-3", 1)):
        await send_setup(st, approval_id=approval_id, groups=groups)
    pending = [await add(st, ev(approval_id, minutes=m))
               for approval_id in ("PO-3", "PO-1", "PO-2") for m in (1, 2)]
    batch = await st.pending_batch()
    assert sorted(e.id for e in batch.events) == sorted(pending)
    assert set(batch.approvals) == set(batch.notices) == {("erp", "PO-1"), ("erp", "PO-2"), ("erp", "PO-3")}
    for (source, approval_id), notices in batch.notices.items():
        assert notices == tuple(await st.notices_for(source, approval_id))
        assert batch.approvals[source, approval_id] == await st.get_approval(source, approval_id)
    assert [len(batch.notices["erp", a]) for a in ("PO-1", "PO-2", "PO-3")] == [2, 3, 1]


async def test_pending_batch_of_nothing(st: store.Store) -> None:
    batch = await st.pending_batch()
    assert batch.events == () and batch.approvals == {} and batch.notices == {}


async def test_an_update_on_an_existing_card_is_claimed_with_its_notice(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    await st.claim_jobs(T0, LEASE_S, 10)
    await st.finish_job(send, T0)
    [card] = await st.notices_for("erp", "PO-1")
    inbox_id = await add(st, ev(event_id="approved-1", minutes=1))
    applied = await st.apply_decision_and_claim(store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason="pending → approved", from_status="pending",
        to_status="approved", approval=approval("approved", at=T0 + timedelta(minutes=1)),
        jobs=[store.NewJob(kind=store.JobKind.UPDATE, lock_key=KEY, notice_id=card.id, payload={"status": "approved"},
                           event_id="approved-1")],
    ), T0, LEASE_S, 5)
    [update] = applied.claimed
    assert (update.kind, update.notice_id, update.event_id, update.source) == ("update", card.id, "approved-1", "erp")
    assert applied.notices[card.id] == card
    [audit_first, audit] = await st.audit_for("erp", "PO-1")
    assert (audit.event_id, audit.from_status, audit.to_status) == ("approved-1", "pending", "approved")


async def test_deciding_an_event_that_does_not_exist_is_a_lookup_error(st: store.Store) -> None:
    with pytest.raises(LookupError):
        await st.apply_decision_and_claim(two_groups(424242), T0, LEASE_S, 5)
    assert await st.list_approvals() == []
