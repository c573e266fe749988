"""The SQLite writer commits writes queued together as one transaction (bridge.store.sqlite_queue): they must
behave exactly as if committed one after another, except for sharing the commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bridge import store
from bridge.errors import AlreadyDecided, StorageUnavailable
from bridge.store.sqlite import SQLiteStore
from bridge.store.sqlite_queue import GROUP_MAX
from bridge.store.sqlite_thread import SqlConnection
from tests.integration.store.test_contract import T0, add, approval, ev, notice
from tests.integration.store.test_sqlite import peek

pytestmark = pytest.mark.integration


@pytest.fixture
def st(sqlite_st: SQLiteStore) -> SQLiteStore:
    return sqlite_st


def first_decision(inbox_id: int, approval_id: str) -> store.Decision:
    return store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
        approval=approval(approval_id=approval_id), new_notices=[notice(0)],
        jobs=[store.NewJob(kind=store.JobKind.SEND, lock_key=f"erp:{approval_id}", new_notice_index=0)],
        journal=[store.NewJournal(kind="event.applied", source="erp", approval_id=approval_id)],
    )


async def test_concurrent_decisions_share_commits_and_each_gets_its_own_jobs(st: SQLiteStore) -> None:
    inbox_ids = [await add(st, ev(f"PO-{i}")) for i in range(40)]
    before = st.commits
    job_ids = await asyncio.gather(*(st.apply_decision(first_decision(inbox_id, f"PO-{i}"), T0)
                                     for i, inbox_id in enumerate(inbox_ids)))
    assert st.commits - before < 10  # 40 transactions' worth of writes, a few commits
    assert len({j for ids in job_ids for j in ids}) == 40
    for i, [job_id] in enumerate(job_ids):  # every caller's job belongs to its own approval
        job = await st.get_job(job_id)
        assert job is not None and job.approval_id == f"PO-{i}"
    assert peek(st.path, "SELECT COUNT(*) FROM notices") == [(40,)]
    assert peek(st.path, "SELECT COUNT(*) FROM inbox WHERE processed = 1") == [(40,)]


async def test_an_op_that_refuses_is_undone_alone_and_the_rest_of_its_group_commits(st: SQLiteStore) -> None:
    ids = [await add(st, ev(f"PO-{i}")) for i in range(3)]
    await st.apply_decision(first_decision(ids[1], "PO-1"), T0)  # decided already: deciding again refuses
    bad_fk = store.Decision(  # a job on a notice that does not exist: the FOREIGN KEY refuses it mid-body
        inbox_id=ids[2], outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
        approval=approval(approval_id="PO-2"), new_notices=[notice(0)],
        jobs=[store.NewJob(kind=store.JobKind.UPDATE, lock_key="erp:PO-2", notice_id=987654)])
    before = st.commits
    results = await asyncio.gather(
        st.apply_decision(first_decision(ids[0], "PO-0"), T0),
        st.apply_decision(first_decision(ids[1], "PO-1"), T0),
        st.apply_decision(bad_fk, T0),
        st.apply_decision(first_decision(424242, "PO-9"), T0),
        return_exceptions=True)
    assert st.commits - before == 1  # one group
    ok, again, fk, missing = results
    assert isinstance(ok, list) and len(ok) == 1
    assert isinstance(again, AlreadyDecided)
    assert isinstance(fk, ValueError) and "FOREIGN KEY" in str(fk)
    assert isinstance(missing, LookupError)
    # what the refused ops wrote before refusing is gone; the others' writes stand
    assert await st.get_approval("erp", "PO-2") is None
    assert peek(st.path, "SELECT approval_id FROM notices ORDER BY id") == [("PO-1",), ("PO-0",)]
    assert peek(st.path, "SELECT approval_id FROM inbox WHERE processed = 1 ORDER BY id") == [("PO-0",), ("PO-1",)]


async def test_a_fault_of_the_database_fails_the_whole_group_and_the_writer_goes_on(st: SQLiteStore) -> None:
    inbox_id = await add(st, ev("PO-0"))

    async def faulty(conn: SqlConnection) -> None:
        await conn.execute("INSERT INTO journal (kind, at, data) VALUES ('x', 0, '{}')")
        raise sqlite3.OperationalError("disk I/O error")

    results = await asyncio.gather(st.apply_decision(first_decision(inbox_id, "PO-0"), T0), st._write(faulty),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageUnavailable) and "disk I/O error" in str(r) for r in results)
    assert peek(st.path, "SELECT COUNT(*) FROM notices") == [(0,)]  # the decision before it is not committed
    assert peek(st.path, "SELECT COUNT(*) FROM journal") == [(0,)]
    assert len(await st.apply_decision(first_decision(inbox_id, "PO-0"), T0)) == 1  # retried: it goes through


async def test_a_group_is_bounded_and_later_writes_follow_in_order(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "bridge.db")
    await s.open()
    try:
        order: list[int] = []

        def writer(i: int) -> Callable[[SqlConnection], Awaitable[int]]:
            async def run(conn: SqlConnection) -> int:
                order.append(i)
                return i
            return run

        before = s.commits
        n = GROUP_MAX * 2 + 5
        assert await asyncio.gather(*(s._write(writer(i)) for i in range(n))) == list(range(n))
        assert order == list(range(n))  # queue order, across groups
        assert s.commits - before == 3
    finally:
        await s.close()
