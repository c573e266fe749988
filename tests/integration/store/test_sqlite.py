"""What only the SQLite store has: a file that outlives the process, a schema version and migrations, group
commit under concurrency, leases that outlive a crashed worker, and recovery from a storage fault."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from bridge import store
from bridge.errors import StorageUnavailable
from bridge.events import ApprovalEvent, Status
from bridge.store.sqlite import MIGRATIONS, SCHEMA_VERSION, Migration, SQLiteStore
from bridge.store.sqlite_sql import load_migrations, load_queries, split_statements
from tests.integration.store import test_contract as contract

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
KEY = "erp:PO-1"


def ev(i: int = 0, approval_id: str = "PO-1") -> ApprovalEvent:
    return ApprovalEvent(source="erp", event_id=f"e{i}", approval_id=approval_id, status=Status.PENDING,
                         occurred_at=T0 + timedelta(seconds=i), title="采购申请", recipients=("u1",),
                         url="https://erp.example.com/po/1")


def peek(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Look at the file through an independent connection: what another process would see."""
    with contextlib.closing(sqlite3.connect(path)) as con:
        return con.execute(sql, args).fetchall()


@pytest.fixture
def st(sqlite_st: SQLiteStore) -> SQLiteStore:
    """SQLite's own tests: `st` is the SQLite store alone, not the contract suites' three (see conftest)."""
    return sqlite_st


async def with_send_job(s: SQLiteStore) -> int:
    inbox_id = (await s.add_event(ev(), b"{}", T0)).inbox_id
    notice = store.NewNotice(1, 0, ("u1",), {"msgtype": "oa"}, "待审批", "0xFFFF9D46")
    [job_id] = await s.apply_decision(store.Decision(
        inbox_id, store.Outcome.APPLIED, None, "new", "pending", None, [notice],
        [store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=0)]), T0)
    return job_id


# --- durability and schema -------------------------------------------------------------------------------
async def test_an_event_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    first = SQLiteStore(path)
    await first.open()
    added = await first.add_event(ev(), b'{"raw":"\xe9"}', T0)
    assert peek(path, "SELECT raw FROM inbox WHERE id = ?", added.inbox_id) == [(b'{"raw":"\xe9"}',)]  # durable now
    await first.close()
    second = SQLiteStore(path)
    await second.open()
    try:
        stored = await second.get_event("erp", "e0")
        assert stored is not None and stored.id == added.inbox_id and stored.event == ev()
        assert await second.has_card_data("erp", "PO-1")
        assert not (await second.add_event(ev(), b"{}", T0)).inserted
    finally:
        await second.close()


async def test_schema_version_wal_and_tables(st: SQLiteStore) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) == 9
    assert peek(st.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert peek(st.path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in peek(st.path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"inbox", "approvals", "notices", "jobs", "audit", "journal", "recipients", "job_totals"} <= tables


async def test_open_and_close_are_idempotent_and_writes_after_close_fail(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "bridge.db")
    await s.open()
    await s.open()
    await s.close()
    await s.close()
    with pytest.raises(StorageUnavailable, match="not open"):
        await s.add_event(ev(), b"{}", T0)
    with pytest.raises(StorageUnavailable, match="not open"):
        await s.get_event("erp", "e0")
    await s.open()  # a closed store can be opened again
    assert (await s.add_event(ev(), b"{}", T0)).inserted
    await s.close()


async def test_migrations_run_in_order_from_the_stored_version(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    v1 = SQLiteStore(path)
    await v1.open()
    await v1.add_event(ev(), b"{}", T0)
    await v1.close()
    nxt = SCHEMA_VERSION + 1
    two = Migration(nxt, ("ALTER TABLE inbox ADD COLUMN tag TEXT", f"PRAGMA user_version = {nxt}"))
    v2 = SQLiteStore(path, migrations=(*MIGRATIONS, two))
    await v2.open()
    await v2.close()
    assert peek(path, "PRAGMA user_version") == [(nxt,)]
    assert peek(path, "SELECT event_id, tag FROM inbox") == [("e0", None)]
    with pytest.raises(StorageUnavailable, match=f"schema version {nxt}"):
        await SQLiteStore(path).open()  # an older bridge refuses a newer file


async def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    v1 = SQLiteStore(path)
    await v1.open()
    await v1.close()
    nxt = SCHEMA_VERSION + 1
    broken = Migration(nxt, ("ALTER TABLE inbox ADD COLUMN tag TEXT", "CREATE TABLE inbox (x)",
                             f"PRAGMA user_version = {nxt}"))
    with pytest.raises(StorageUnavailable, match="already exists"):
        await SQLiteStore(path, migrations=(*MIGRATIONS, broken)).open()
    assert peek(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "tag" not in {row[1] for row in peek(path, "PRAGMA table_info(inbox)")}
    again = SQLiteStore(path)
    await again.open()
    await again.close()


def test_sql_files_are_checked_when_loaded() -> None:
    assert split_statements("INSERT INTO t VALUES ('a;b');\n-- c;\nSELECT 1;\n") == (
        "INSERT INTO t VALUES ('a;b');", "SELECT 1;")
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 1")
    with pytest.raises(ValueError, match="out of order"):
        load_migrations("-- migration: 2\nPRAGMA user_version = 2;\n")
    with pytest.raises(ValueError, match="must end with"):
        load_migrations("-- migration: 1\nCREATE TABLE t (x);\n")
    with pytest.raises(ValueError, match="twice"):
        load_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    assert load_queries("-- name: a\nSELECT 1\n\n-- name: b\nSELECT 2\n") == {"a": "SELECT 1", "b": "SELECT 2"}


def test_constructor_validates_its_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="off")
    with pytest.raises(ValueError, match="batch_max"):
        SQLiteStore(tmp_path / "x.db", batch_max=0)


# --- group commit ----------------------------------------------------------------------------------------
async def test_concurrent_events_share_commits(st: SQLiteStore) -> None:
    before = st.commits
    results = await asyncio.gather(*(st.add_event(ev(i), b"{}", T0) for i in range(500)))
    assert all(r.inserted for r in results) and len({r.inbox_id for r in results}) == 500
    assert st.commits - before <= 10  # 500 durable inserts, a handful of commits
    assert peek(st.path, "SELECT COUNT(*) FROM inbox") == [(500,)]  # every caller's row is committed


async def test_batch_max_bounds_a_group_commit(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "bridge.db", synchronous="full", batch_max=10)
    await s.open()
    try:
        await asyncio.gather(*(s.add_event(ev(i), b"{}", T0) for i in range(100)))
        assert s.commits >= 10
        assert len(await s.events_for("erp", "PO-1")) == 100
    finally:
        await s.close()


async def test_other_writes_interleave_with_batches(st: SQLiteStore) -> None:
    job_id = await with_send_job(st)
    writes = [st.add_event(ev(i), b"{}", T0) for i in range(1, 50)]
    claims = [st.claim_jobs(T0, 30.0, 1) for _ in range(5)]
    results = await asyncio.gather(*writes, *claims, st.check_writable())
    claimed = [job.id for batch in results[49:54] for job in batch]  # type: ignore[union-attr]
    assert claimed == [job_id]  # exactly one of the concurrent claims got it
    assert len(await st.events_for("erp", "PO-1")) == 50


async def test_each_caller_gets_its_own_rows_id_new_or_duplicate(st: SQLiteStore) -> None:
    """Group commit answers from the batch's row count when every event is new, and by looking each key up
    when one is not: both must hand every caller the id its event has in the file."""
    first = await asyncio.gather(*(st.add_event(ev(i), b"{}", T0) for i in range(40)))  # all new
    assert all(r.inserted for r in first)
    again = await asyncio.gather(*(st.add_event(ev(i), b"{}", T0) for i in (45, 3, 46, 45, 7, 47)))
    assert [r.inserted for r in again] == [True, False, True, False, False, True]
    stored = dict(peek(st.path, "SELECT event_id, id FROM inbox"))
    for i, r in zip([*range(40), 45, 3, 46, 45, 7, 47], [*first, *again], strict=True):
        assert r.inbox_id == stored[f"e{i}"]
    assert dict(peek(st.path, "SELECT event_id, duplicates FROM inbox WHERE duplicates > 0")) == {
        "e3": 1, "e7": 1, "e45": 1}


async def test_a_pending_batch_is_three_reads_however_many_approvals_it_holds(
    st: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read is a trip to the reader thread: the batch's approvals and notices are read for all at once."""
    for i in range(30):
        await contract.send_setup(st, approval_id=f"PO-{i}")  # decided: its approval row and one notice
        await st.add_event(contract.ev(f"PO-{i}", minutes=1), b"{}", T0)
    reads: list[str] = []
    real = st._read

    async def counted(name: str, params: dict[str, object] | None = None) -> list[sqlite3.Row]:
        reads.append(name)
        return await real(name, params)

    monkeypatch.setattr(st, "_read", counted)
    batch = await st.pending_batch(limit=100)
    assert len(batch.events) == 30 and len(batch.approvals) == 30
    assert all(len(n) == 1 for n in batch.notices.values())
    assert reads == ["pending_events", "approvals_for_keys", "notices_for_keys"]


async def test_transactions_run_on_the_loop_unless_they_may_wait_on_the_disk(tmp_path: Path) -> None:
    """synchronous = normal: a commit only writes WAL frames, so transactions run on the event loop's thread
    (no hand-off); retention's prune, and every transaction under synchronous = full (an fsync per commit),
    run on the writer thread so the loop never waits for the disk."""
    loop_thread = threading.get_ident()

    async def where(_conn: object) -> int:
        return threading.get_ident()

    for mode, expected in (("normal", True), ("full", False)):
        s = SQLiteStore(tmp_path / f"{mode}.db", synchronous=mode)
        await s.open()
        try:
            assert (await s._write(where) == loop_thread) is expected
            assert await s._write(where, inline=False) != loop_thread
            assert (await s.add_event(ev(), b"{}", T0)).inserted
        finally:
            await s.close()


async def test_close_commits_what_is_already_queued(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    s = SQLiteStore(path)
    await s.open()
    tasks = [asyncio.create_task(s.add_event(ev(i), b"{}", T0)) for i in range(100)]
    await asyncio.sleep(0)  # every task has queued its write
    await s.close()
    assert all(r.inserted for r in await asyncio.gather(*tasks))
    assert peek(path, "SELECT COUNT(*) FROM inbox") == [(100,)]


async def test_a_cancelled_caller_does_not_stop_the_writer(st: SQLiteStore) -> None:
    task = asyncio.create_task(st.add_event(ev(1), b"{}", T0))
    await asyncio.sleep(0)
    task.cancel()
    assert (await st.add_event(ev(2), b"{}", T0)).inserted
    assert {e.event.event_id for e in await st.events_for("erp", "PO-1")} == {"e1", "e2"}  # queued writes stand


# --- leases ----------------------------------------------------------------------------------------------
async def test_a_crashed_workers_lease_runs_out_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    before = SQLiteStore(path)
    await before.open()
    job_id = await with_send_job(before)
    [claimed] = await before.claim_jobs(T0, 30.0, 10)
    await before.close()  # the process dies with the job running
    after = SQLiteStore(path)
    await after.open()
    try:
        assert await after.claim_jobs(T0 + timedelta(seconds=29), 30.0, 10) == []
        [again] = await after.claim_jobs(T0 + timedelta(seconds=30), 30.0, 10)
        assert (claimed.id, again.id, again.attempts) == (job_id, job_id, 2)
    finally:
        await after.close()


async def test_claims_skip_a_long_blocked_key_quickly(st: SQLiteStore) -> None:
    head = await with_send_job(st)
    [n] = await st.notices_for("erp", "PO-1")
    blocked = [store.NewJob(kind=store.JobKind.UPDATE, lock_key=KEY, notice_id=n.id) for _ in range(5000)]
    free = [store.NewJob(kind=store.JobKind.CHECK, lock_key=None, notice_id=n.id) for _ in range(3)]
    ids = await st.add_jobs(blocked + free, T0)
    await st.claim_jobs(T0, 30.0, 1)
    await st.bury_job(head, T0, "dead head")
    claimed = await st.claim_jobs(T0, 30.0, 10)
    assert [j.id for j in claimed] == ids[-3:]


# --- faults ----------------------------------------------------------------------------------------------
async def test_a_held_lock_is_storage_unavailable_and_the_store_recovers(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    s = SQLiteStore(path, busy_timeout_s=0.05)
    await s.open()
    job_id = await with_send_job(s)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with structlog.testing.capture_logs() as logs:
            results = await asyncio.gather(*(s.add_event(ev(i), b"{}", T0) for i in range(1, 21)),
                                           return_exceptions=True)
        assert all(isinstance(r, StorageUnavailable) and "locked" in str(r) for r in results), results
        assert any(entry["event"] == "storage.write_failed" for entry in logs)
        with pytest.raises(StorageUnavailable, match="storage unavailable"):
            await s.check_writable()
        with pytest.raises(StorageUnavailable):
            await s.claim_jobs(T0, 30.0, 10)
        assert len(await s.events_for("erp", "PO-1")) == 1  # reads still work
        blocker.execute("ROLLBACK")
        await s.check_writable()
        assert (await s.add_event(ev(1), b"{}", T0)).inserted  # nothing of the failed batch was stored
        assert [j.id for j in await s.claim_jobs(T0, 30.0, 10)] == [job_id]
    finally:
        blocker.close()
        await s.close()


async def test_a_failed_decision_rolls_back_completely(st: SQLiteStore) -> None:
    inbox_id = (await st.add_event(ev(), b"{}", T0)).inbox_id
    approval = store.Approval("erp", "PO-1", "pending", T0, 1, {}, T0, T0)
    bad = store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", "pending", approval,
                         [store.NewNotice(1, 0, ("u1",), {}, None, None)],
                         [store.NewJob(kind=store.JobKind.UPDATE, lock_key=KEY, notice_id=12345)])
    with pytest.raises(ValueError, match="FOREIGN KEY"):
        await st.apply_decision(bad, T0)
    assert peek(st.path, "SELECT COUNT(*) FROM notices") == [(0,)]
    assert await st.get_approval("erp", "PO-1") is None and len(await st.pending_events()) == 1
    await st.check_writable()  # and the writer is fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; the held-lock test covers the fault")
async def test_a_read_only_file_is_storage_unavailable_until_writable(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "bridge.db"
    fresh = folder / "fresh.db"
    s = SQLiteStore(path)
    await s.open()
    await s.add_event(ev(), b"{}", T0)
    other = SQLiteStore(fresh)
    await other.open()
    await other.close()  # a clean close removes fresh.db's WAL files
    folder.chmod(0o555)
    await s.close()  # the directory is read-only: bridge.db's WAL files stay behind
    for f in folder.iterdir():
        f.chmod(0o444)
    ro = SQLiteStore(path)
    try:
        with pytest.raises(StorageUnavailable, match="readonly"):
            await SQLiteStore(fresh).open()  # WAL mode cannot even start
        await ro.open()
        with pytest.raises(StorageUnavailable, match="readonly"):
            await ro.add_event(ev(1), b"{}", T0)
        with pytest.raises(StorageUnavailable, match="readonly"):
            await ro.check_writable()
        assert (await ro.get_event("erp", "e0")) is not None  # reads still work
    finally:
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o644)
    try:
        assert (await ro.add_event(ev(1), b"{}", T0)).inserted  # the same store recovers by itself
    finally:
        await ro.close()
