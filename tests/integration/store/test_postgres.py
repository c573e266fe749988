"""What only the PostgreSQL store has to prove: migrations under a lock, several stores (processes) sharing one
database — each job claimed once and each approval's jobs in order, each event decided once — and the
LISTEN/NOTIFY wake. The session database is emptied per test (see tests/pg.py)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bridge import store
from bridge.cli import main as cli
from bridge.errors import AlreadyDecided, StorageUnavailable
from bridge.store import postgres_sql as pq
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite_sql import Migration
from tests.integration.store.test_contract import T0, add, approval, ev, notice

pytestmark = pytest.mark.integration


def drop_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"DROP SCHEMA public CASCADE")
        conn.execute(b"CREATE SCHEMA public")


async def test_concurrent_migrations_run_once_under_the_lock(pg_url: str) -> None:
    drop_schema(pg_url)
    stores = [PostgresStore(pg_url) for _ in range(4)]
    results = await asyncio.gather(*(s.migrate() for s in stores))
    assert sorted(results) == [(0, pq.SCHEMA_VERSION)] + [(pq.SCHEMA_VERSION, pq.SCHEMA_VERSION)] * 3
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(b"SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, pq.SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused_and_a_failed_migration_leaves_nothing(pg_url: str) -> None:
    older = PostgresStore(pg_url, migrations=pq.MIGRATIONS[:1])
    newer = PostgresStore(pg_url, migrations=(*pq.MIGRATIONS, Migration(pq.SCHEMA_VERSION + 1, (
        "CREATE TABLE extra (id INTEGER)", "SELECT no_such_function()"))))
    await PostgresStore(pg_url).migrate()
    if pq.SCHEMA_VERSION > 1:
        with pytest.raises(StorageUnavailable, match="has schema version"):
            await older.migrate()
    with pytest.raises(StorageUnavailable, match="no_such_function"):
        await newer.migrate()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(b"SELECT to_regclass('extra')").fetchone() == (None,)


def test_bridge_migrate_command(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drop_schema(pg_url)
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(f'[storage]\nurl = "{pg_url}"\n\n[dingtalk]\napp_key = "k"\napp_secret = "s"\nagent_id = 1\n\n'
                   '[[sources]]\nname = "erp"\nsecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n', encoding="utf-8")
    assert cli.main(["migrate", "--config", str(cfg)]) == 0
    assert "schema up to date (postgres)" in capsys.readouterr().out
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(b"SELECT MAX(version) FROM schema_version").fetchone() == (pq.SCHEMA_VERSION,)


async def _jobs(st: store.Store, approvals: int, per_approval: int) -> None:
    """`approvals` applied decisions, each with `per_approval` send jobs sharing the approval's lock_key."""
    for a in range(approvals):
        inbox_id = await add(st, ev(f"PO-{a}"))
        await st.apply_decision(store.Decision(
            inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
            approval=approval(approval_id=f"PO-{a}"), new_notices=[notice(i) for i in range(per_approval)],
            jobs=[store.NewJob(kind=store.JobKind.SEND, lock_key=f"erp:PO-{a}", new_notice_index=i)
                  for i in range(per_approval)],
        ), T0)


async def test_two_workers_claim_1000_jobs_each_once_in_per_approval_order(pg_url: str) -> None:
    one, two = PostgresStore(pg_url, pool_size=4), PostgresStore(pg_url, pool_size=4)
    await one.open()
    await two.open()
    try:
        await _jobs(one, approvals=200, per_approval=5)
        runs: dict[int, list[str]] = {}
        order: list[tuple[str, int, str]] = []  # (lock_key, job id, event) in the order it happened

        async def worker(name: str, st: PostgresStore) -> None:
            idle = 0
            while idle < 3:
                claimed = await st.claim_jobs(T0, 60.0, 8)
                idle = idle + 1 if not claimed else 0
                for job in claimed:
                    runs.setdefault(job.id, []).append(name)
                    order.append((job.lock_key or "", job.id, "start"))
                for job in claimed:
                    # marked before the finish is sent: the finish commits before another claim can see it, and
                    # that claim's answer may reach this loop before the finish's does (both sockets readable)
                    order.append((job.lock_key or "", job.id, "done"))
                    await st.finish_job(job.id, T0)
                await asyncio.sleep(0)

        await asyncio.gather(worker("one", one), worker("two", two))
        assert len(runs) == 1000 and all(len(by) == 1 for by in runs.values())
        assert {by[0] for by in runs.values()} == {"one", "two"}  # both did real work
        by_key: dict[str, list[tuple[int, str]]] = {}
        for key, job_id, what in order:
            by_key.setdefault(key, []).append((job_id, what))
        for key, steps in by_key.items():
            ids = [job_id for job_id, what in steps if what == "start"]
            assert ids == sorted(ids), f"{key} ran out of order: {ids}"
            for (_, first), (_, second) in itertools.pairwise(steps):
                assert (first, second) != ("start", "start"), f"{key}: two of its jobs ran at once"
        counts = await one.job_counts(T0)
        assert (counts.done, counts.pending, counts.running) == (1000, 0, 0)
    finally:
        await one.close()
        await two.close()


async def test_a_killed_workers_job_comes_back_after_its_lease_and_a_heartbeat_keeps_it(pg_url: str) -> None:
    one, two = PostgresStore(pg_url), PostgresStore(pg_url)
    await one.open()
    await two.open()
    try:
        await _jobs(one, approvals=2, per_approval=1)
        first, second = await one.claim_jobs(T0, 30.0, 10)
        later = T0 + timedelta(seconds=40)
        assert await one.extend_leases([first.id], T0 + timedelta(seconds=20), 30.0) == 1  # the heartbeat
        [back] = await two.claim_jobs(later, 30.0, 10)  # the job without a heartbeat comes back
        assert back.id == second.id and back.attempts == 2
    finally:
        await one.close()
        await two.close()


async def test_an_event_is_decided_by_one_process(pg_url: str) -> None:
    one, two = PostgresStore(pg_url), PostgresStore(pg_url)
    await one.open()
    await two.open()
    try:
        for i in range(3):
            await add(one, ev("PO-1", minutes=i))
        await add(one, ev("PO-2"))
        taken = await one.pending_events()
        assert {e.event.approval_id for e in taken} == {"PO-1", "PO-2"}
        assert await two.pending_events() == []  # both approvals are one's until it is done or dies
        decision = store.Decision(inbox_id=taken[0].id, outcome=store.Outcome.APPLIED, reason=None,
                                  from_status="new", to_status="pending", approval=approval())
        with pytest.raises(AlreadyDecided, match="being decided by"):
            await two.apply_decision(decision, T0)
        assert await one.apply_decision(decision, T0) == []
        await one.close()  # gives its approvals back
        assert [e.id for e in await two.pending_events()] == [e.id for e in taken[1:]]
    finally:
        await one.close()
        await two.close()


async def test_notify_wakes_another_process(pg_url: str) -> None:
    one, two = PostgresStore(pg_url), PostgresStore(pg_url)
    await one.open()
    await two.open()
    woken = asyncio.Event()
    try:
        two.on_work(woken.set)
        await asyncio.wait_for(woken.wait(), timeout=5.0)  # the listener wakes once when its LISTEN is in place
        woken.clear()
        await add(one, ev("PO-9"))
        await asyncio.wait_for(woken.wait(), timeout=5.0)
    finally:
        await one.close()
        await two.close()
