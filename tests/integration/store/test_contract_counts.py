"""The Store contract for the overview's counts: every approval per source and status, events waiting per
source, on memory, SQLite and PostgreSQL. Both are reads: asking must not take the decision leases that
`pending_events` takes on PostgreSQL (a console must never hold up the workers)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge import store
from tests.integration.store.test_contract import T0, add, approval, ev

pytestmark = pytest.mark.integration


async def test_approval_counts_count_every_approval_per_source_and_status(st: store.Store) -> None:
    assert await st.approval_counts() == {}
    rows = [("erp", "pending"), ("oa", "approved"), ("erp", "approved"), ("erp", "pending"), ("erp", "pending")]
    for i, (src, status) in enumerate(rows):
        at = T0 + timedelta(minutes=i)
        inbox_id = await add(st, ev(f"A{i}", source=src))
        await st.apply_decision(store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", status,
                                               approval(status, at=at, approval_id=f"A{i}", source=src)), at)
    assert await st.approval_counts() == {("erp", "pending"): 3, ("erp", "approved"): 1, ("oa", "approved"): 1}


async def test_waiting_events_counts_per_source_and_leases_nothing(st: store.Store) -> None:
    assert await st.waiting_events() == {}
    first = await add(st, ev("A", "a1"))
    await add(st, ev("B", "b1", minutes=1))
    await add(st, ev("C", "c1", source="oa"))
    assert await st.waiting_events() == {"erp": 2, "oa": 1}
    # the read took no lease: the decider still gets every event, in order
    assert [p.event.event_id for p in await st.pending_events()] == ["a1", "b1", "c1"]
    await st.apply_decision(store.Decision(first, store.Outcome.STALE, "older", "new", "new", None), T0)
    assert await st.waiting_events() == {"erp": 1, "oa": 1}


async def test_journal_alerts_are_the_newest_alert_lines_since_a_time(st: store.Store) -> None:
    """Failed attempts, dead jobs and orphaned notices of the window, whatever else the journal holds after them."""
    k = store.AlertKind
    early, mid, late = T0, T0 + timedelta(minutes=30), T0 + timedelta(minutes=50)
    await st.append_journal([store.NewJournal(kind=k.DEAD, source="erp", message="before the window")], early)
    await st.append_journal([store.NewJournal(kind=k.RETRY_SCHEDULED, source="erp", data={"code": "90018"}),
                             store.NewJournal(kind="dingtalk.sent", source="erp"),
                             store.NewJournal(kind=k.ORPHANED, source="oa")], mid)
    await st.append_journal([store.NewJournal(kind="event.applied", source="erp")] * 30
                            + [store.NewJournal(kind=k.DEAD, source="oa", data={"code": "40035"})], late)
    since = T0 + timedelta(minutes=10)
    lines = await st.journal_alerts(since, 100)
    assert [(e.kind, e.source, e.at) for e in lines] == [(k.RETRY_SCHEDULED, "erp", mid), (k.ORPHANED, "oa", mid),
                                                          (k.DEAD, "oa", late)]
    assert lines[0].data == {"code": "90018"} and lines[0].id < lines[1].id
    assert [e.kind for e in await st.journal_alerts(since, 2)] == [k.ORPHANED, k.DEAD]  # the newest, oldest first
    assert await st.journal_alerts(since, 0) == []
    assert len(await st.journal_alerts(early, 100)) == 4  # at or after `since`
    assert await st.journal_alerts(late + timedelta(seconds=1), 100) == []


async def test_jobs_of_a_state_newest_first_in_every_state(st: store.Store) -> None:
    inbox_id = await add(st, ev("A"))
    jobs = [store.NewJob(kind=store.JobKind.CHECK, lock_key=None, payload={"i": i}) for i in range(6)]
    ids = await st.apply_decision(store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", "pending",
                                                 approval(approval_id="A"), jobs=jobs), T0)
    claimed = sorted(j.id for j in await st.claim_jobs(T0, 30.0, 10))
    assert claimed == ids
    for job_id in ids[:3]:
        await st.finish_job(job_id, T0)
    await st.bury_job(ids[3], T0, "permanent: 40035")
    await st.bury_job(ids[4], T0, "permanent: 40035")
    assert [j.id for j in await st.list_jobs(store.JobState.DONE)] == ids[2::-1]
    assert [j.id for j in await st.list_jobs(store.JobState.DONE, limit=2)] == [ids[2], ids[1]]
    assert [j.id for j in await st.list_jobs(store.JobState.DEAD)] == [ids[4], ids[3]]
    assert [j.id for j in await st.list_jobs(store.JobState.RUNNING)] == [ids[5]]
    assert await st.list_jobs(store.JobState.PENDING) == [] and await st.list_jobs("no-such-state") == []
