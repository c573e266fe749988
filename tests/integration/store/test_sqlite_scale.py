"""The SQLite store's reads that must not grow with the tables: job counts kept by triggers (migration 6),
and retention that looks only at the oldest rows instead of filtering whole tables."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.store.claim_sql import SQLITE_CLAIM_BY_KIND, kind_limits
from bridge.store.sqlite import MIGRATIONS, SQLiteStore
from bridge.store.sqlite_sql import Q, to_us

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
STATES = ("pending", "running", "done", "dead")


def sql(path: Path, script: str, *args: object) -> list[tuple[object, ...]]:
    """Another writer on the same file (the triggers hold for every writer, not only the store's)."""
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        return con.execute(script, args).fetchall()


def add_jobs(path: Path, states: list[str], at: datetime = T0) -> None:
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executemany(
            "INSERT INTO jobs (kind, source, approval_id, payload, state, run_at, created_at, updated_at)"
            " VALUES ('send', 'erp', 'PO-1', '{}', ?, ?, ?, ?)",
            [(s, to_us(at), to_us(at), to_us(at)) for s in states])


def counted(path: Path) -> dict[str, int]:
    return {s: n for s, n in sql(path, "SELECT state, COUNT(*) FROM jobs GROUP BY state")}  # type: ignore[misc]


@pytest.fixture
def st(sqlite_st: SQLiteStore) -> SQLiteStore:
    """SQLite's own tests: `st` is the SQLite store alone, not the contract suites' three (see conftest)."""
    return sqlite_st


async def test_job_counts_follow_every_insert_state_change_and_delete(st: SQLiteStore) -> None:
    add_jobs(st.path, ["pending"] * 5 + ["dead"] * 2)
    claimed = await st.claim_jobs(T0 + timedelta(seconds=1), 60, 3)
    await st.finish_job(claimed[0].id, T0 + timedelta(seconds=2), outcome="ok")
    await st.bury_job(claimed[1].id, T0 + timedelta(seconds=2), "permanent")
    await st.retry_job(claimed[2].id, T0 + timedelta(seconds=2), T0 + timedelta(seconds=9), "transient")
    sql(st.path, "UPDATE jobs SET state = state")  # no change of state: no change of count
    sql(st.path, "DELETE FROM jobs WHERE id = (SELECT MIN(id) FROM jobs WHERE state = 'dead')")
    counts = await st.job_counts(T0)
    assert counted(st.path) == {"pending": 3, "done": 1, "dead": 2}
    assert (counts.pending, counts.running, counts.done, counts.dead) == (3, 0, 1, 2)


async def test_migration_6_counts_the_jobs_already_there(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    old = SQLiteStore(path, migrations=MIGRATIONS[:5])
    await old.open()
    await old.close()
    add_jobs(path, ["done"] * 4 + ["pending"] + ["running"] * 2)
    new = SQLiteStore(path)
    await new.open()
    try:
        counts = await new.job_counts(T0)
    finally:
        await new.close()
    assert (counts.pending, counts.running, counts.done, counts.dead) == (1, 2, 4, 0)
    assert sql(path, "SELECT state, n FROM job_totals ORDER BY state") == sorted(
        [("pending", 1), ("running", 2), ("done", 4), ("dead", 0)])


async def test_retention_deletes_old_rows_oldest_first_and_keeps_new_ones(st: SQLiteStore) -> None:
    old, new = T0, T0 + timedelta(days=40)
    add_jobs(st.path, ["done"] * 7, at=old)
    add_jobs(st.path, ["done"] * 3, at=new)
    with contextlib.closing(sqlite3.connect(st.path)) as con, con:
        con.executemany("INSERT INTO journal (at, kind) VALUES (?, 'x')",
                        [(to_us(old),)] * 7 + [(to_us(new),)] * 3)
    before = T0 + timedelta(days=10)
    looks = []
    while (pruned := await st.prune(before, 3)).total:
        looks.append((pruned.journal, pruned.jobs))
    assert looks == [(3, 3), (3, 3), (1, 1)]  # batch by batch, then nothing: the new rows stop the walk
    assert sql(st.path, "SELECT COUNT(*) FROM journal WHERE at = ?", to_us(new)) == [(3,)]
    assert sql(st.path, "SELECT COUNT(*) FROM journal") == [(3,)]
    assert counted(st.path) == {"done": 3}
    assert (await st.job_counts(T0)).done == 3


async def test_a_retention_look_costs_the_same_however_many_rows_are_young(st: SQLiteStore) -> None:
    """Counted in SQLite's virtual machine steps (not time, so load cannot change it): with 20,000 young
    journal lines and done jobs, a look reads about :limit rows of each, not every row."""
    young = T0 + timedelta(days=40)
    add_jobs(st.path, ["done"] * 20_000, at=young)
    with contextlib.closing(sqlite3.connect(st.path)) as con, con:
        con.executemany("INSERT INTO journal (at, kind) VALUES (?, 'x')", [(to_us(young),)] * 20_000)
        con.executemany(
            "INSERT INTO inbox (source, event_id, approval_id, occurred_at, received_at, event, raw, processed,"
            " processed_at) VALUES ('erp', ?, 'PO-1', 0, 0, '{}', x'', 1, ?)",
            [(f"e{i}", to_us(young)) for i in range(20_000)])
    con = sqlite3.connect(st.path)
    try:
        for name in ("prune_journal", "prune_inbox_ids", "prune_jobs"):
            steps = 0

            def step() -> int:
                nonlocal steps
                steps += 1
                return 0

            con.set_progress_handler(step, 1)
            con.execute(Q[name], {"before": to_us(T0), "limit": 50}).fetchall()
            con.set_progress_handler(None, 1)
            con.rollback()
            assert steps < 5_000, (name, steps)  # a walk over 20,000 rows takes well over 100,000 steps
    finally:
        con.close()


def vm_steps(path: Path, name: str, params: dict[str, object]) -> int:
    """SQLite virtual-machine steps of one named query (not time: load cannot change it)."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    with contextlib.closing(sqlite3.connect(path)) as con:
        con.set_progress_handler(step, 1)
        con.execute(Q[name], params).fetchall()
    return steps


async def test_the_newest_jobs_of_a_state_cost_the_same_however_many_the_state_holds(st: SQLiteStore) -> None:
    """`bridge jobs --state S` (migration 8): 20,000 done and 20,000 dead jobs, the newest 100 of either state
    are read from an index's end; sorting all of a state's rows takes several steps per row."""
    add_jobs(st.path, ["done"] * 20_000 + ["dead"] * 20_000 + ["pending"] * 5)
    assert vm_steps(st.path, "list_done_jobs", {"limit": 100}) < 5_000
    assert vm_steps(st.path, "list_dead_jobs", {"limit": 100}) < 5_000
    assert [j.state for j in await st.list_jobs("pending")] == ["pending"] * 5
    assert len(await st.list_jobs("dead", 100)) == 100 and len(await st.list_jobs("done", 100)) == 100


async def test_the_last_hours_alerts_are_read_without_the_other_journal_lines(st: SQLiteStore) -> None:
    """Store.journal_alerts through the partial index journal_alerts: 20,000 ordinary lines in the hour cost no
    steps, only the 50 alert lines among them do."""
    with contextlib.closing(sqlite3.connect(st.path)) as con, con:
        con.executemany("INSERT INTO journal (at, kind) VALUES (?, ?)",
                        [(to_us(T0), "job.dead" if i % 400 == 0 else "event.applied") for i in range(20_000)])
    assert vm_steps(st.path, "journal_alerts", {"since": to_us(T0 - timedelta(hours=1)), "limit": 5000}) < 5_000
    assert len(await st.journal_alerts(T0 - timedelta(hours=1), 5000)) == 50


async def test_a_claim_by_kind_finds_the_few_due_updates_behind_a_backlog_of_sends(st: SQLiteStore) -> None:
    """The claim fair by kind (migration 9, bridge.store.claim_sql): with 20,000 due sends older than 5 due
    updates, a claim of 2 sends and 5 updates reads about those rows, not the backlog."""
    add_jobs(st.path, ["pending"] * 20_000)
    with contextlib.closing(sqlite3.connect(st.path)) as con, con:
        con.executemany(
            "INSERT INTO jobs (kind, source, approval_id, payload, state, run_at, created_at, updated_at)"
            " VALUES ('update', 'erp', ?, '{}', 'pending', ?, ?, ?)",
            [(f"U-{i}", to_us(T0 + timedelta(seconds=1)), to_us(T0), to_us(T0)) for i in range(5)])
    params = {"now": to_us(T0 + timedelta(seconds=2)), "lease_until": to_us(T0 + timedelta(seconds=32)),
              "limit": 16, **kind_limits({"send": 2, "update": 16, "check": 16, "recall": 16})}
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    with contextlib.closing(sqlite3.connect(st.path)) as con:
        con.set_progress_handler(step, 1)
        claimed = con.execute(SQLITE_CLAIM_BY_KIND, params).fetchall()
        con.rollback()
    assert len(claimed) == 7 and steps < 5_000, steps  # a walk over 20,000 rows takes well over 100,000 steps
