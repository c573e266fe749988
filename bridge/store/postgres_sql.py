"""SQL text and transaction bodies of the PostgreSQL store, kept apart from its pool and listener machinery.

`bridge/store/sql/postgres/schema.sql` (numbered migrations) and `queries.sql` (named statements) are loaded
here. Rows map to records with the SQLite store's functions (`bridge.store.sqlite_sql`): both schemas keep
times as integer microseconds and JSON as text, so one mapping serves both and they cannot drift apart.
Each `*_body` function prepares its parameters eagerly (bad input raises before any SQL runs) and returns
the coroutine function run inside one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from bridge.errors import AlreadyDecided
from bridge.records import Decision, Job, NewJob, NewJournal, NoticeChange, Pruned
from bridge.store import sqlite_sql as sq
from bridge.store.sqlite_sql import Migration, load_queries

Conn = AsyncConnection[DictRow]
Body = Callable[[Conn], Awaitable[Any]]
WORK_CHANNEL = "bridge_work"
MIGRATION_LOCK = 0x62726964  # "brid": the advisory lock key held while migrating


def _sql_text(name: str) -> str:
    return resources.files("bridge.store").joinpath("sql", "postgres", name).read_text(encoding="utf-8")


def load_migrations(text: str | None = None) -> tuple[Migration, ...]:
    """The `-- migration: N` blocks of postgres/schema.sql, numbered 1, 2, …; each block is one script
    (PostgreSQL runs a multi-statement script in one call; the store wraps it in a transaction)."""
    parts = re.split(r"^-- migration: (\d+)[ \t]*$", text if text is not None else _sql_text("schema.sql"), flags=re.M)
    migrations: list[Migration] = []
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        version = int(number)
        if version != len(migrations) + 1:
            raise ValueError(f"postgres/schema.sql: migration {version} is out of order")
        migrations.append(Migration(version, (body.strip(),)))
    return tuple(migrations)


MIGRATIONS = load_migrations()
SCHEMA_VERSION = MIGRATIONS[-1].version
Q = load_queries(_sql_text("queries.sql"))


async def fetch(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> list[DictRow]:
    cur = await conn.execute(Q[name], params or {})
    return await cur.fetchall() if cur.description is not None else []


async def execute(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> int:
    """Run a named statement; how many rows it changed."""
    cur = await conn.execute(Q[name], params or {})
    return cur.rowcount


async def execute_many(conn: Conn, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(Q[name], rows)


async def notify(conn: Conn, what: str) -> None:
    """Wake the listening workers when this transaction commits."""
    await fetch(conn, "notify", {"what": what})


async def _insert_jobs(conn: Conn, prepared: Sequence[Mapping[str, Any]]) -> list[int]:
    ids = [int((await fetch(conn, "insert_job", p))[0]["id"]) for p in prepared]
    if ids:
        await notify(conn, "job")
    return ids


def decision_body(decision: Decision, now: datetime, owner: str) -> Body:
    """apply_decision: nothing is written and AlreadyDecided raised when the event is already processed or
    another live process holds the approval's deciding lease (it will decide the event itself), so an event is
    decided by exactly one process. The inbox row is locked first, so two such transactions run one after
    the other and the second sees the first's mark."""
    at = sq.to_us(now)
    upsert = None if decision.approval is None else sq.approval_params(decision.approval)
    notices = [
        dict(generation=n.generation, group_index=n.group_index, userids=sq.dumps(list(n.userids)),
             msg=sq.dumps(dict(n.msg)), status_value=n.status_value, status_bg=n.status_bg)
        for n in decision.new_notices
    ]
    jobs = []
    for job in decision.jobs:
        if job.new_notice_index is not None and not 0 <= job.new_notice_index < len(notices):
            raise ValueError(f"new_notice_index {job.new_notice_index} is outside the decision's new notices")
        jobs.append((job.new_notice_index, sq.job_params(job, now)))
    lines = sq.journal_params(decision.journal, now)
    mark = {"id": decision.inbox_id, "outcome": decision.outcome, "reason": decision.reason, "now": at}

    async def run(conn: Conn) -> list[int]:
        found = await fetch(conn, "inbox_owner", {"id": decision.inbox_id})
        if not found:
            raise LookupError(f"no inbox event {decision.inbox_id}")
        row = found[0]
        owner_of = {"source": row["source"], "approval_id": row["approval_id"]}
        lease = await fetch(conn, "deciding_owner", owner_of)
        if row["processed"]:
            raise AlreadyDecided(f"inbox event {decision.inbox_id} was decided already")
        if lease and lease[0]["owner"] != owner and lease[0]["lease_until"] > sq.to_us(now):
            raise AlreadyDecided(f"inbox event {decision.inbox_id} is being decided by {lease[0]['owner']}")
        await execute(conn, "mark_processed", mark)
        if upsert is not None:
            await execute(conn, "upsert_approval", upsert)
        notice_ids = [int((await fetch(conn, "insert_notice", {**n, **owner_of}))[0]["id"]) for n in notices]
        prepared = []
        for index, params in jobs:
            notice_id = notice_ids[index] if index is not None else params["notice_id"]
            prepared.append({**params, **owner_of, "notice_id": notice_id,
                             "event_id": params["event_id"] or row["event_id"]})
        job_ids = await _insert_jobs(conn, prepared)
        await execute(conn, "insert_audit", dict(
            inbox_id=decision.inbox_id, **owner_of, event_id=row["event_id"], from_status=decision.from_status,
            to_status=decision.to_status, outcome=decision.outcome, reason=decision.reason, at=at,
        ))
        await execute_many(conn, "insert_journal", lines)
        return job_ids

    return run


def finish_body(
    job_id: int, now: datetime, outcome: str, notice: NoticeChange | None, new_jobs: Sequence[NewJob],
    journal: Sequence[NewJournal],
) -> Body:
    finish = {"id": job_id, "outcome": outcome, "now": sq.to_us(now)}
    change = None if notice is None else sq.notice_change_params(notice)
    jobs = [sq.job_params(job, now) for job in sq.no_new_notices(new_jobs)]
    lines = sq.journal_params(journal, now)

    async def run(conn: Conn) -> list[int]:
        finished = await fetch(conn, "finish_job", finish)
        if not finished:
            raise LookupError(f"no job {job_id}")
        parent = finished[0]
        if change is not None and await execute(conn, "update_notice", change) == 0:
            raise LookupError(f"no notice {change['id']}")
        owner = {"source": parent["source"], "approval_id": parent["approval_id"]}
        job_ids = await _insert_jobs(conn, [{**p, **owner, "event_id": p["event_id"] or parent["event_id"]}
                                            for p in jobs])
        await notify(conn, "done")  # the job's successor in its key may be claimable now
        await execute_many(conn, "insert_journal", lines)
        return job_ids

    return run


def add_jobs_body(new_jobs: Sequence[NewJob], now: datetime, journal: Sequence[NewJournal]) -> Body:
    jobs = []
    for job in sq.no_new_notices(new_jobs):
        if job.notice_id is None:
            raise ValueError("add_jobs needs a notice_id on every job (it names the approval)")
        jobs.append(sq.job_params(job, now))
    lines = sq.journal_params(journal, now)

    async def run(conn: Conn) -> list[int]:
        prepared = []
        for params in jobs:
            owner = await fetch(conn, "notice_owner", {"id": params["notice_id"]})
            if not owner:
                raise LookupError(f"no notice {params['notice_id']}")
            prepared.append({**params, "source": owner[0]["source"], "approval_id": owner[0]["approval_id"]})
        job_ids = await _insert_jobs(conn, prepared)
        await execute_many(conn, "insert_journal", lines)
        return job_ids

    return run


def statement_body(
    name: str, params: Mapping[str, Any], journal: Sequence[Mapping[str, Any]] = (), *, missing: str | None = None,
    wake: bool = False,
) -> Body:
    """One named statement plus journal lines; how many rows it changed. With `missing`, changing no row
    raises LookupError(missing) and the transaction rolls back. `wake`: the change makes work due now."""

    async def run(conn: Conn) -> int:
        changed = await execute(conn, name, params)
        if missing is not None and changed == 0:
            raise LookupError(missing)
        await execute_many(conn, "insert_journal", journal)
        if wake and changed:
            await notify(conn, "job")
        return changed

    return run


def many_body(name: str, rows: Sequence[Mapping[str, Any]]) -> Body:
    """One named statement for each of `rows`, in one transaction."""
    async def run(conn: Conn) -> None:
        await execute_many(conn, name, rows)

    return run


def claim_body(now: datetime, lease_s: float, limit: int) -> Body:
    params = {"now": sq.to_us(now), "lease_until": sq.to_us(now + timedelta(seconds=lease_s)), "limit": limit}

    async def run(conn: Conn) -> list[Job]:
        claimed = [sq.job_row(r) for r in await fetch(conn, "claim_jobs", params)]
        return sorted(claimed, key=lambda j: (j.run_at, j.id))

    return run


def pending_body(owner: str, now: datetime, lease_s: float, limit: int) -> Body:
    """pending_events: give back this owner's previous approvals, take the next ones nobody live is deciding,
    and return their unprocessed events."""
    params = {"owner": owner, "now": sq.to_us(now), "lease_until": sq.to_us(now + timedelta(seconds=lease_s)),
              "limit": limit}

    async def run(conn: Conn) -> list[Any]:
        await execute(conn, "release_deciding", {"owner": owner})
        if not await fetch(conn, "claim_deciding", params):
            return []
        return [sq.inbox_row(r) for r in await fetch(conn, "pending_events_of_owner", params)]

    return run


def insert_event_body(params: Mapping[str, Any]) -> Body:
    async def run(conn: Conn) -> tuple[bool, int]:
        inserted = await fetch(conn, "insert_event", params)
        if inserted:
            await notify(conn, "event")
            return True, int(inserted[0]["id"])
        [row] = await fetch(conn, "count_duplicate", {"source": params["source"], "event_id": params["event_id"]})
        return False, int(row["id"])

    return run


def prune_body(before: datetime, limit: int) -> Body:
    """prune: one small batch of each kind (audit rows go with their inbox rows)."""
    params = {"before": sq.to_us(before), "limit": limit}

    async def run(conn: Conn) -> Pruned:
        journal = await execute(conn, "prune_journal", params)
        ids = [int(r["id"]) for r in await fetch(conn, "prune_inbox_ids", params)]
        audit = await execute(conn, "prune_audit_of", {"ids": ids})
        inbox = await execute(conn, "prune_inbox_of", {"ids": ids})
        jobs = await execute(conn, "prune_jobs", params)
        return Pruned(journal=journal, inbox=inbox, audit=audit, jobs=jobs)

    return run
