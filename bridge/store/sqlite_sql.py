"""SQL text and row mapping for the SQLite store, kept apart from its connection and writer machinery.

`sql/schema.sql` (numbered migrations) and `sql/queries.sql` (named statements) are loaded here; this module
turns records into parameters and rows back into records (the PostgreSQL store shares these mappings), and
holds the multi-statement transaction bodies. Times: integer µs since the epoch inside, aware UTC outside.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Protocol

from bridge.errors import AlreadyDecided
from bridge.events import ApprovalEvent
from bridge.records import (
    Approval,
    AuditEntry,
    Decision,
    InboxEvent,
    Job,
    JobKind,
    JournalEntry,
    NewJob,
    NewJournal,
    Notice,
    NoticeChange,
)
from bridge.store.sqlite_thread import SqlConnection


class Row(Protocol):  # sqlite3.Row, or the PostgreSQL store's dict rows (same µs times and JSON text)
    def __getitem__(self, key: str, /) -> Any: ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)  # made once: every stored time goes through to_us


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: from version - 1 to `version`, as statements run in one transaction."""

    version: int
    statements: tuple[str, ...]


def _sql_text(name: str) -> str:
    return resources.files("bridge.store").joinpath("sql", name).read_text(encoding="utf-8")


def split_statements(script: str) -> tuple[str, ...]:
    """Split a SQL script into complete statements (sqlite3.complete_statement decides where one ends)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            current = []
    if current and "\n".join(current).strip():
        raise ValueError(f"unterminated SQL statement: {' '.join(current)[:80]!r}")
    return tuple(statements)


def load_migrations(text: str | None = None) -> tuple[Migration, ...]:
    """The `-- migration: N` blocks of schema.sql, checked: numbered 1, 2, … and each sets user_version = N."""
    parts = re.split(r"^-- migration: (\d+)[ \t]*$", text if text is not None else _sql_text("schema.sql"), flags=re.M)
    migrations: list[Migration] = []
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        version = int(number)
        if version != len(migrations) + 1:
            raise ValueError(f"schema.sql: migration {version} is out of order")
        if not re.search(rf"PRAGMA user_version = {version};", body):
            raise ValueError(f"schema.sql: migration {version} must end with PRAGMA user_version = {version};")
        migrations.append(Migration(version, split_statements(body)))
    return tuple(migrations)


def load_queries(text: str | None = None) -> dict[str, str]:
    """The named statements of queries.sql (`-- name: xxx` headers)."""
    parts = re.split(r"^-- name: (\w+)[ \t]*$", text if text is not None else _sql_text("queries.sql"), flags=re.M)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql: {name} is defined twice")
        queries[name] = body.strip()
    return queries


MIGRATIONS = load_migrations()
SCHEMA_VERSION = MIGRATIONS[-1].version
Q = load_queries()


# --- values in and out ------------------------------------------------------------------------------------
def to_us(at: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch; naive datetimes are a programming error."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: bridge stores timezone-aware UTC times only")
    return (at - _EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def opt_us(at: datetime | None) -> int | None:
    return None if at is None else to_us(at)


def opt_dt(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def opt_loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def inbox_row(row: Row) -> InboxEvent:
    return InboxEvent(
        id=row["id"], event=ApprovalEvent.from_json(row["event"]), received_at=from_us(row["received_at"]),
        processed=bool(row["processed"]), outcome=row["outcome"], reason=row["reason"],
        duplicates=row["duplicates"], processed_at=opt_dt(row["processed_at"]),
    )


def approval_row(row: Row) -> Approval:
    return Approval(
        source=row["source"], approval_id=row["approval_id"], status=row["status"],
        last_occurred_at=opt_dt(row["last_occurred_at"]), generation=row["generation"],
        card=json.loads(row["card"]), created_at=from_us(row["created_at"]), updated_at=from_us(row["updated_at"]),
    )


def notice_row(row: Row) -> Notice:
    return Notice(
        id=row["id"], source=row["source"], approval_id=row["approval_id"], generation=row["generation"],
        group_index=row["group_index"], userids=tuple(json.loads(row["userids"])), msg=json.loads(row["msg"]),
        state=row["state"], status_value=row["status_value"], status_bg=row["status_bg"], task_id=row["task_id"],
        sent_at=opt_dt(row["sent_at"]), updated_at=opt_dt(row["updated_at"]),
        recalled_at=opt_dt(row["recalled_at"]), delivery=opt_loads(row["delivery"]), note=row["note"],
        orphaned_at=opt_dt(row["orphaned_at"]), app=row["app"],
    )


def job_row(row: Row) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], source=row["source"], approval_id=row["approval_id"],
        lock_key=row["lock_key"], notice_id=row["notice_id"], payload=json.loads(row["payload"]), state=row["state"],
        attempts=row["attempts"], run_at=from_us(row["run_at"]), created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]), lease_until=opt_dt(row["lease_until"]),
        last_error=row["last_error"], outcome=row["outcome"], event_id=row["event_id"],
    )


def audit_row(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"], inbox_id=row["inbox_id"], source=row["source"], approval_id=row["approval_id"],
        event_id=row["event_id"], from_status=row["from_status"], to_status=row["to_status"],
        outcome=row["outcome"], reason=row["reason"], at=from_us(row["at"]),
    )


def journal_row(row: Row) -> JournalEntry:
    return JournalEntry(
        id=row["id"], at=from_us(row["at"]), kind=row["kind"], source=row["source"],
        approval_id=row["approval_id"], event_id=row["event_id"], job_id=row["job_id"], task_id=row["task_id"],
        message=row["message"], data=json.loads(row["data"]),
    )


def journal_params(entries: Sequence[NewJournal], now: datetime) -> list[dict[str, Any]]:
    at = to_us(now)
    return [
        dict(at=at, kind=e.kind, source=e.source, approval_id=e.approval_id, event_id=e.event_id, job_id=e.job_id,
             task_id=e.task_id, message=e.message, data=dumps(dict(e.data)))
        for e in entries
    ]


def job_params(job: NewJob, now: datetime) -> dict[str, Any]:
    """A NewJob's columns, minus source / approval_id (taken from its event, notice or parent job)."""
    if job.kind not in tuple(JobKind):
        raise ValueError(f"unknown job kind {job.kind!r} (expected one of {', '.join(JobKind)})")
    return dict(kind=job.kind, lock_key=job.lock_key, notice_id=job.notice_id, payload=dumps(dict(job.payload)),
                run_at=to_us(job.run_at or now), now=to_us(now), event_id=job.event_id)


def notice_change_params(change: NoticeChange) -> dict[str, Any]:
    return dict(
        id=change.notice_id, state=change.state, task_id=change.task_id, status_value=change.status_value,
        status_bg=change.status_bg, sent_at=opt_us(change.sent_at), updated_at=opt_us(change.updated_at),
        recalled_at=opt_us(change.recalled_at),
        delivery=None if change.delivery is None else dumps(dict(change.delivery)), note=change.note,
        orphaned_at=opt_us(change.orphaned_at), clear_orphaned=int(change.clear_orphaned), app=change.app,
    )


def approval_params(a: Approval) -> dict[str, Any]:
    return dict(source=a.source, approval_id=a.approval_id, status=a.status,
                last_occurred_at=opt_us(a.last_occurred_at), generation=a.generation, card=dumps(dict(a.card)),
                created_at=to_us(a.created_at), updated_at=to_us(a.updated_at))


def no_new_notices(jobs: Sequence[NewJob]) -> Sequence[NewJob]:
    """Jobs created outside a decision cannot refer to a notice by `new_notice_index`."""
    if any(job.new_notice_index is not None for job in jobs):
        raise ValueError("new_notice_index refers to a decision's new notices; use notice_id here")
    return jobs


def notice_change_time(change: NoticeChange) -> datetime:
    """When a notice change happened, for its journal lines (save_notice has no `now`)."""
    return change.updated_at or change.sent_at or change.recalled_at or datetime.now(UTC)


async def fetch(conn: SqlConnection, name: str, params: Mapping[str, Any] | None = None) -> list[sqlite3.Row]:
    """Run the named query and fetch every row."""
    return list(await conn.execute_fetchall(Q[name], params or {}))


async def _insert_jobs(conn: SqlConnection, prepared: Sequence[dict[str, Any]]) -> list[int]:
    return [(await fetch(conn, "insert_job", p))[0][0] for p in prepared]


def decision_writer(decision: Decision, now: datetime) -> Callable[[SqlConnection], Awaitable[list[int]]]:
    """The transaction body of `apply_decision` (parameters are prepared now, so bad input raises here)."""
    at = to_us(now)
    approval = decision.approval
    upsert = None if approval is None else approval_params(approval)
    notices = [
        dict(generation=n.generation, group_index=n.group_index, userids=dumps(list(n.userids)),
             msg=dumps(dict(n.msg)), status_value=n.status_value, status_bg=n.status_bg)
        for n in decision.new_notices
    ]
    jobs = []
    for job in decision.jobs:
        if job.new_notice_index is not None and not 0 <= job.new_notice_index < len(notices):
            raise ValueError(f"new_notice_index {job.new_notice_index} is outside the decision's new notices")
        jobs.append((job.new_notice_index, job_params(job, now)))
    lines = journal_params(decision.journal, now)
    mark = {"id": decision.inbox_id, "outcome": decision.outcome, "reason": decision.reason, "now": at}

    async def run(conn: SqlConnection) -> list[int]:
        marked = await fetch(conn, "mark_processed", mark)
        if not marked:
            if await fetch(conn, "inbox_exists", {"id": decision.inbox_id}):
                raise AlreadyDecided(f"inbox event {decision.inbox_id} was decided already")
            raise LookupError(f"no inbox event {decision.inbox_id}")
        owner = {"source": marked[0]["source"], "approval_id": marked[0]["approval_id"]}
        event_id = marked[0]["event_id"]
        if upsert is not None:
            await conn.execute(Q["upsert_approval"], upsert)
        notice_ids = [(await fetch(conn, "insert_notice", {**n, **owner}))[0][0] for n in notices]
        prepared = []
        for index, params in jobs:
            notice_id = notice_ids[index] if index is not None else params["notice_id"]
            prepared.append({**params, **owner, "notice_id": notice_id, "event_id": params["event_id"] or event_id})
        job_ids = await _insert_jobs(conn, prepared)
        await conn.execute(Q["insert_audit"], dict(
            inbox_id=decision.inbox_id, **owner, event_id=event_id, from_status=decision.from_status,
            to_status=decision.to_status, outcome=decision.outcome, reason=decision.reason, at=at,
        ))
        await conn.executemany(Q["insert_journal"], lines)
        return job_ids

    return run


def finish_writer(
    job_id: int,
    now: datetime,
    outcome: str,
    notice: NoticeChange | None,
    new_jobs: Sequence[NewJob],
    journal: Sequence[NewJournal],
) -> Callable[[SqlConnection], Awaitable[list[int]]]:
    """The transaction body of `finish_job`: new jobs inherit the finished job's approval and event."""
    finish = {"id": job_id, "outcome": outcome, "now": to_us(now)}
    change = None if notice is None else notice_change_params(notice)
    jobs = [job_params(job, now) for job in no_new_notices(new_jobs)]
    lines = journal_params(journal, now)

    async def run(conn: SqlConnection) -> list[int]:
        finished = await fetch(conn, "finish_job", finish)
        if not finished:
            raise LookupError(f"no job {job_id}")
        parent = finished[0]
        if change is not None and (await conn.execute(Q["update_notice"], change)).rowcount == 0:
            raise LookupError(f"no notice {change['id']}")
        owner = {"source": parent["source"], "approval_id": parent["approval_id"]}
        job_ids = await _insert_jobs(conn, [{**p, **owner, "event_id": p["event_id"] or parent["event_id"]}
                                            for p in jobs])
        await conn.executemany(Q["insert_journal"], lines)
        return job_ids

    return run


def add_jobs_writer(
    new_jobs: Sequence[NewJob], now: datetime, journal: Sequence[NewJournal]
) -> Callable[[SqlConnection], Awaitable[list[int]]]:
    """The transaction body of `add_jobs`: each job names its notice, whose approval it belongs to."""
    jobs = []
    for job in no_new_notices(new_jobs):
        if job.notice_id is None:
            raise ValueError("add_jobs needs a notice_id on every job (it names the approval)")
        jobs.append(job_params(job, now))
    lines = journal_params(journal, now)

    async def run(conn: SqlConnection) -> list[int]:
        prepared = []
        for params in jobs:
            owner = await fetch(conn, "notice_owner", {"id": params["notice_id"]})
            if not owner:
                raise LookupError(f"no notice {params['notice_id']}")
            prepared.append({**params, "source": owner[0]["source"], "approval_id": owner[0]["approval_id"]})
        job_ids = await _insert_jobs(conn, prepared)
        await conn.executemany(Q["insert_journal"], lines)
        return job_ids

    return run


def statement_writer(
    name: str, params: Mapping[str, Any], journal: Sequence[Mapping[str, Any]] = (), *, missing: str | None = None
) -> Callable[[SqlConnection], Awaitable[int]]:
    """A transaction of one named statement plus journal lines; returns how many rows it changed. With
    `missing`, changing no row raises LookupError(missing) and the transaction rolls back."""

    async def run(conn: SqlConnection) -> int:
        changed = (await conn.execute(Q[name], params)).rowcount
        if missing is not None and changed == 0:
            raise LookupError(missing)
        await conn.executemany(Q["insert_journal"], journal)
        return changed

    return run


def journal_writer(journal: Sequence[Mapping[str, Any]]) -> Callable[[SqlConnection], Awaitable[None]]:
    async def run(conn: SqlConnection) -> None:
        await conn.executemany(Q["insert_journal"], journal)

    return run


def claim_writer(now: datetime, lease_s: float, limit: int) -> Callable[[SqlConnection], Awaitable[list[Job]]]:
    params = {"now": to_us(now), "lease_until": to_us(now + timedelta(seconds=lease_s)), "limit": limit}

    async def run(conn: SqlConnection) -> list[Job]:
        claimed = [job_row(r) for r in await fetch(conn, "claim_jobs", params)]
        return sorted(claimed, key=lambda j: (j.run_at, j.id))  # RETURNING has no order of its own

    return run


