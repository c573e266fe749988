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
