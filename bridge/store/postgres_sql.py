"""SQL text and transaction bodies of the PostgreSQL store, kept apart from its pool and listener machinery.

`bridge/store/sql/postgres/schema.sql` (numbered migrations) and `queries.sql` (named statements) are loaded
here. Rows map to records with the SQLite store's functions (`bridge.store.sqlite_sql`): both schemas keep
times as integer microseconds and JSON as text, so one mapping serves both and they cannot drift apart.
Each `*_body` function prepares its parameters eagerly (bad input raises before any SQL runs) and returns
the coroutine function run inside one transaction.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, Error
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow

from bridge.errors import AlreadyDecided
from bridge.records import Applied, Decision, Job, NewJob, NewJournal, NoticeChange, Pruned
from bridge.store import claim_sql as cs
from bridge.store import sqlite_sql as sq
from bridge.store.sqlite_sql import Migration, load_queries

Conn = AsyncConnection[DictRow]
Body = Callable[[Conn], Awaitable[Any]]
After = Callable[[], Awaitable[Any]]  # what a PIPELINED body answers once its transaction has committed
WORK_CHANNEL = "bridge_work"
NOT_DURABLE = b"SET LOCAL synchronous_commit TO off"  # after BEGIN in a `durable=False` transaction
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


class Mode(StrEnum):
    """How the store runs a body (see `Work`)."""

    TRANSACTION = "transaction"  # one transaction; each statement waits for its answer
    PIPELINED = "pipelined"  # one transaction in pipeline mode: statements go out without waiting for answers
    ALONE = "alone"  # one statement in autocommit: no BEGIN, no COMMIT, one round trip


@dataclass(frozen=True, slots=True)
class Work:
    """A body and how to run it. Round trips, not commits, are what a PostgreSQL write costs on the idle path
    (docs/performance.md), so each write says how few it needs. A PIPELINED body runs between a queued BEGIN
    and COMMIT (the store's `_pipelined`) and answers an `After`, read once the COMMIT's sync has brought every
    result back, so the last statements, the COMMIT and the reading of their answers share one round trip. In
    such bodies only a fetched row says what happened (a row count is not there until the results are read):
    the statements they test RETURN a row, and everything that does not depend on an answer is queued before
    the one fetch that waits.

    `durable=False` (PIPELINED only) commits with synchronous_commit off: the COMMIT returns before its WAL is
    flushed to disk. On an idle machine a flush (fdatasync) costs ~1–3 ms, most of what a write's round trip
    costs, and the idle 202 → DingTalk path had four of them. Only writes whose loss in a database crash
    (never in a bridge crash: the row is committed and visible at once) repeats work bridge already repeats
    after a kill -9 use it: leases (deciding, jobs), rate slots and the decision, all re-derived from the
    inbox row that `add_event` committed durably before the 202. The WAL is one sequence, so the next durable
    commit of any process (a finished job, a new event) flushes every earlier one too."""

    run: Body
    mode: Mode = Mode.TRANSACTION
    durable: bool = True  # False: the COMMIT does not wait for the WAL flush (see `Work`'s note and NOT_DURABLE)


async def pipelined(conn: Conn, run: Body, *, durable: bool = True) -> Any:
    """One transaction in pipeline mode with BEGIN and COMMIT queued like any statement (psycopg's
    transaction() would wait for each), so it costs the body's fetches plus one sync; the body's `After`
    reads the answers that sync brought. On any failure the transaction is rolled back. Not `durable`: the
    COMMIT does not wait for the WAL flush (see `Work`)."""
    try:
        async with conn.pipeline():
            await conn.execute(b"BEGIN")
            if not durable:
                await conn.execute(NOT_DURABLE)
            after: After = await run(conn)
            await conn.execute(b"COMMIT")
    except BaseException:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(Error):
                await conn.rollback()
        raise
    return await after()


async def fetch(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> list[DictRow]:
    """Run a named statement that returns rows and wait for them."""
    cur = await conn.execute(Q[name], params or {})
    return await cur.fetchall()


async def send(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> AsyncCursor[DictRow]:
    """Queue a named statement (in pipeline mode nothing is waited for); its cursor, to fetch from later."""
    return await conn.execute(Q[name], params or {})


async def execute(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> int:
    """Run a named statement; how many rows it changed (outside pipeline mode)."""
    cur = await conn.execute(Q[name], params or {})
    return cur.rowcount


async def execute_many(conn: Conn, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(Q[name], rows)


async def notify(conn: Conn, what: str) -> None:
    """Wake the listening workers when this transaction commits (queued, nothing waited for)."""
    await send(conn, "notify", {"what": what})


async def _ids(cursors: Sequence[AsyncCursor[DictRow]]) -> list[int]:
    return [int(row["id"]) for cur in cursors for row in await cur.fetchall()]


def ids_after(cursors: Sequence[AsyncCursor[DictRow]]) -> After:
    """The ids the cursors' inserts returned, read after the commit."""
    async def read() -> list[int]:
        return await _ids(cursors)

    return read


def value_after(value: Any) -> After:
    """A result known before the commit."""
    async def read() -> Any:
        return value

    return read


async def _send_jobs(conn: Conn, prepared: Sequence[Mapping[str, Any]]) -> list[AsyncCursor[DictRow]]:
    """Queue the job inserts (in order: ids keep each approval's order) and, if any, the NOTIFY."""
    cursors = [await send(conn, "insert_job", p) for p in prepared]
    if cursors:
        await notify(conn, "job")
    return cursors


async def refused(conn: Conn, inbox_id: int, owner: str, now_us: int) -> Exception:
    """Why claim_decision marked nothing: LookupError for no such event, else AlreadyDecided."""
    found = await fetch(conn, "decision_refused", {"id": inbox_id})
    if not found:
        return LookupError(f"no inbox event {inbox_id}")
    row = found[0]
    if not row["processed"] and row["owner"] not in (None, owner) and row["lease_until"] > now_us:
        return AlreadyDecided(f"inbox event {inbox_id} is being decided by {row['owner']}")
    return AlreadyDecided(f"inbox event {inbox_id} was decided already")


def decision_body(decision: Decision, now: datetime, owner: str, claim: tuple[float, int] | None = None) -> Work:
    """apply_decision in two round trips (pipelined): (1) the claim, the approval upsert and the notices,
    then (2) the jobs, NOTIFY, audit, journal and COMMIT. Nothing is written and AlreadyDecided raised when
    the event is already processed or another live process holds the approval's deciding lease (it will
    decide the event itself), so an event is decided by exactly one process (see claim_decision). With `claim`
    (lease_s, limit), round trip 2 also claims the approval's due jobs and reads its notices: the answer is an
    `Applied`, else the job ids."""
    at = sq.to_us(now)
    leased = None if claim is None else {"now": at, "lease_until": sq.to_us(now + timedelta(seconds=claim[0])),
                                         "limit": claim[1]}
    upsert = None if decision.approval is None else sq.approval_params(decision.approval)
    notices = [
        dict(inbox_id=decision.inbox_id, generation=n.generation, group_index=n.group_index,
             userids=sq.dumps(list(n.userids)), msg=sq.dumps(dict(n.msg)), status_value=n.status_value,
             status_bg=n.status_bg)
        for n in decision.new_notices
    ]
    jobs = []
    for job in decision.jobs:
        if job.new_notice_index is not None and not 0 <= job.new_notice_index < len(notices):
            raise ValueError(f"new_notice_index {job.new_notice_index} is outside the decision's new notices")
        jobs.append((job.new_notice_index, sq.job_params(job, now)))
    lines = sq.journal_params(decision.journal, now)
    mark = {"id": decision.inbox_id, "outcome": decision.outcome, "reason": decision.reason, "now": at,
            "owner": owner}

    async def run(conn: Conn) -> After:
        claim = await send(conn, "claim_decision", mark)
        if upsert is not None:
            await send(conn, "upsert_approval", upsert)
        notice_cursors = [await send(conn, "insert_notice", n) for n in notices]
        claimed = await claim.fetchall()  # round trip 1
        if not claimed:
            raise await refused(conn, decision.inbox_id, owner, at)
        row = claimed[0]
        owner_of = {"source": row["source"], "approval_id": row["approval_id"]}
        notice_ids = await _ids(notice_cursors)
        prepared = []
        for index, params in jobs:
            notice_id = notice_ids[index] if index is not None else params["notice_id"]
            prepared.append({**params, **owner_of, "notice_id": notice_id,
                             "event_id": params["event_id"] or row["event_id"]})
        job_cursors = await _send_jobs(conn, prepared)
        await send(conn, "insert_audit", dict(
            inbox_id=decision.inbox_id, **owner_of, event_id=row["event_id"], from_status=decision.from_status,
            to_status=decision.to_status, outcome=decision.outcome, reason=decision.reason, at=at,
        ))
        await execute_many(conn, "insert_journal", lines)
        if leased is None:
            return ids_after(job_cursors)  # round trip 2: these, the COMMIT and their answers
        taking = await send(conn, "claim_jobs_of", {**leased, **owner_of}) if leased["limit"] > 0 else None
        reading = await send(conn, "notices_for", owner_of)

        async def applied() -> Applied:
            jobs = [] if taking is None else [sq.job_row(r) for r in await taking.fetchall()]
            return Applied(job_ids=tuple(await _ids(job_cursors)),
                           claimed=tuple(sorted(jobs, key=lambda j: (j.run_at, j.id))),
                           notices={n.id: n for n in map(sq.notice_row, await reading.fetchall())})

        return applied

    # not durable: a decision lost in a database crash is made again from its inbox row, which stays unprocessed;
    # a send it led to is repeated, as for any send whose result was not committed (kill -9)
    return Work(run, Mode.PIPELINED, durable=False)


def finish_body(
    job_id: int, now: datetime, outcome: str, notice: NoticeChange | None, new_jobs: Sequence[NewJob],
    journal: Sequence[NewJournal],
) -> Work:
    """finish_job, pipelined: the finish, the notice change, NOTIFY and journal lines go out together; new jobs
    (which need the finished job's approval) follow its answer."""
    finish = {"id": job_id, "outcome": outcome, "now": sq.to_us(now)}
    change = None if notice is None else sq.notice_change_params(notice)
    jobs = [sq.job_params(job, now) for job in sq.no_new_notices(new_jobs)]
    lines = sq.journal_params(journal, now)

    async def run(conn: Conn) -> After:
        finished = await send(conn, "finish_job", finish)
        changed = None if change is None else await send(conn, "update_notice", change)
        await notify(conn, "done")  # the job's successor in its key may be claimable now
        await execute_many(conn, "insert_journal", lines)
        parents = await finished.fetchall()
        if not parents:
            raise LookupError(f"no job {job_id}")
        if changed is not None and change is not None and not await changed.fetchall():
            raise LookupError(f"no notice {change['id']}")
        parent = parents[0]
        owner = {"source": parent["source"], "approval_id": parent["approval_id"]}
        return ids_after(await _send_jobs(conn, [
            {**p, **owner, "event_id": p["event_id"] or parent["event_id"]} for p in jobs]))

    return Work(run, Mode.PIPELINED)


def add_jobs_body(new_jobs: Sequence[NewJob], now: datetime, journal: Sequence[NewJournal]) -> Work:
    jobs = []
    for job in sq.no_new_notices(new_jobs):
        if job.notice_id is None:
            raise ValueError("add_jobs needs a notice_id on every job (it names the approval)")
        jobs.append(sq.job_params(job, now))
    lines = sq.journal_params(journal, now)

    async def run(conn: Conn) -> After:
        owners = [await send(conn, "notice_owner", {"id": params["notice_id"]}) for params in jobs]
        prepared = []
        for params, cur in zip(jobs, owners, strict=True):
            found = await cur.fetchall()
            if not found:
                raise LookupError(f"no notice {params['notice_id']}")
            prepared.append({**params, "source": found[0]["source"], "approval_id": found[0]["approval_id"]})
        job_cursors = await _send_jobs(conn, prepared)
        await execute_many(conn, "insert_journal", lines)
        return ids_after(job_cursors)

    return Work(run, Mode.PIPELINED)


def statement_body(
    name: str, params: Mapping[str, Any], journal: Sequence[Mapping[str, Any]] = (), *, missing: str | None = None,
    wake: bool = False,
) -> Work:
    """One named statement plus journal lines; how many rows it changed. With `missing` (the statement must
    RETURN the rows it changes), changing no row raises LookupError(missing) and the transaction rolls back.
    `wake`: the change makes work due now. A lone statement runs in autocommit (one round trip)."""
    if missing is not None:
        async def checked(conn: Conn) -> After:
            cur = await send(conn, name, params)
            await execute_many(conn, "insert_journal", journal)
            rows = await cur.fetchall()
            if not rows:
                raise LookupError(missing)
            return value_after(len(rows))

        return Work(checked, Mode.PIPELINED)

    async def run(conn: Conn) -> int:
        changed = await execute(conn, name, params)
        await execute_many(conn, "insert_journal", journal)
        if wake and changed:
            await notify(conn, "job")
        return changed

    return Work(run, Mode.ALONE if not journal and not wake else Mode.TRANSACTION)


def many_body(name: str, rows: Sequence[Mapping[str, Any]]) -> Work:
    """One named statement for each of `rows`, in one transaction."""
    async def run(conn: Conn) -> None:
        await execute_many(conn, name, rows)

    return Work(run)


def claim_body(now: datetime, lease_s: float, limit: int, kinds: Mapping[str, int] | None = None) -> Work:
    """claim_jobs (by kind: bridge.store.claim_sql): one statement, one round trip (pipelined with BEGIN and COMMIT).
    Not durable: a lease lost in a database crash gives the job back, and it runs again as after a kill -9."""
    params = {"now": sq.to_us(now), "lease_until": sq.to_us(now + timedelta(seconds=lease_s)), "limit": limit,
              **({} if kinds is None else cs.kind_limits(kinds))}

    async def run(conn: Conn) -> After:
        cur = await conn.execute(Q["claim_jobs"] if kinds is None else cs.PG_CLAIM_BY_KIND, params)

        async def read() -> list[Job]:
            return sorted(map(sq.job_row, await cur.fetchall()), key=lambda j: (j.run_at, j.id))

        return read

    return Work(run, Mode.PIPELINED, durable=False)


def insert_event_body(params: Mapping[str, Any]) -> Work:
    """add_event: one statement (insert and NOTIFY) in autocommit; a duplicate takes a second one."""
    async def run(conn: Conn) -> tuple[bool, int]:
        inserted = await fetch(conn, "insert_event", params)
        if inserted:
            return True, int(inserted[0]["id"])
        [row] = await fetch(conn, "count_duplicate", {"source": params["source"], "event_id": params["event_id"]})
        return False, int(row["id"])

    return Work(run, Mode.ALONE)


def prune_body(before: datetime, limit: int) -> Work:
    """prune: one small batch of each kind (audit rows go with their inbox rows)."""
    params = {"before": sq.to_us(before), "limit": limit}

    async def run(conn: Conn) -> Pruned:
        journal = await execute(conn, "prune_journal", params)
        ids = [int(r["id"]) for r in await fetch(conn, "prune_inbox_ids", params)]
        audit = await execute(conn, "prune_audit_of", {"ids": ids})
        inbox = await execute(conn, "prune_inbox_of", {"ids": ids})
        jobs = await execute(conn, "prune_jobs", params)
        return Pruned(journal=journal, inbox=inbox, audit=audit, jobs=jobs)

    return Work(run)
