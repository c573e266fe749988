"""The reads both SQL stores share: the same named queries (sql/queries.sql and sql/postgres/queries.sql name
them alike), the same row mapping (bridge.store.sqlite_sql: both schemas keep times as integer microseconds and
JSON as text), so SQLite and PostgreSQL cannot drift apart. A base class of `SQLiteReads` and `PostgresStore`;
each defines `_read`, which runs a named statement and turns a database fault into StorageUnavailable. Rows are
read by column name (sqlite3.Row and psycopg's dict rows both allow it). What differs stays with each store:
pending_events (PostgreSQL leases what it returns), job_counts and parameters that are arrays in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge import records as store
from bridge.records import JobState
from bridge.store import sqlite_sql as sq

__all__ = ["SqlReads", "of_approval"]


def of_approval(source: str, approval_id: str) -> dict[str, str]:
    """The parameters of every per-approval query."""
    return {"source": source, "approval_id": approval_id}


class SqlReads:
    """The plain row lookups of the Store protocol, written once against `_read`."""

    async def _read(self, name: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        raise NotImplementedError  # each store runs it on its own connections

    async def get_approval(self, source: str, approval_id: str) -> store.Approval | None:
        rows = await self._read("get_approval", of_approval(source, approval_id))
        return sq.approval_row(rows[0]) if rows else None

    async def notices_for(self, source: str, approval_id: str) -> list[store.Notice]:
        return [sq.notice_row(r) for r in await self._read("notices_for", of_approval(source, approval_id))]

    async def get_job(self, job_id: int) -> store.Job | None:
        rows = await self._read("get_job", {"id": job_id})
        return sq.job_row(rows[0]) if rows else None

    async def list_jobs(self, state: str | None = None, limit: int = 100) -> list[store.Job]:
        if state is None:
            rows = await self._read("list_jobs", {"limit": limit})
        elif state in tuple(JobState):  # one statement per state (see list_pending_jobs in sql/queries.sql)
            rows = await self._read(f"list_{state}_jobs", {"limit": limit})
        else:
            rows = []  # no job is in a state that does not exist
        return [sq.job_row(r) for r in rows]

    async def jobs_for(self, source: str, approval_id: str) -> list[store.Job]:
        return [sq.job_row(r) for r in await self._read("jobs_for", of_approval(source, approval_id))]

    async def list_approvals(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[store.Approval]:
        params = {"status": status, "source": source, "since": sq.opt_us(since), "limit": limit}
        return [sq.approval_row(r) for r in await self._read("list_approvals", params)]

    async def events_for(self, source: str, approval_id: str) -> list[store.InboxEvent]:
        return [sq.inbox_row(r) for r in await self._read("events_for", of_approval(source, approval_id))]

    async def audit_for(self, source: str, approval_id: str) -> list[store.AuditEntry]:
        return [sq.audit_row(r) for r in await self._read("audit_for", of_approval(source, approval_id))]

    async def get_event(self, source: str, event_id: str) -> store.InboxEvent | None:
        rows = await self._read("get_event", {"source": source, "event_id": event_id})
        return sq.inbox_row(rows[0]) if rows else None

    async def journal(
        self, after_id: int = 0, *, source: str | None = None, limit: int = 500
    ) -> list[store.JournalEntry]:
        if source is None:
            rows = await self._read("journal", {"after_id": after_id, "limit": limit})
        else:
            rows = await self._read("journal_for_source", {"after_id": after_id, "source": source, "limit": limit})
        return [sq.journal_row(r) for r in rows]

    async def journal_tail(self, n: int, *, source: str | None = None) -> list[store.JournalEntry]:
        if n <= 0:
            return []
        if source is None:
            rows = await self._read("journal_tail", {"limit": n})
        else:
            rows = await self._read("journal_tail_for_source", {"source": source, "limit": n})
        return [sq.journal_row(r) for r in rows]

    async def journal_alerts(self, since: datetime, limit: int) -> list[store.JournalEntry]:
        if limit <= 0:
            return []
        rows = await self._read("journal_alerts", {"since": sq.to_us(since), "limit": limit})
        return [sq.journal_row(r) for r in rows]

    async def approval_counts(self) -> dict[tuple[str, str], int]:
        return {(r["source"], r["status"]): int(r["n"]) for r in await self._read("approval_counts")}

    async def waiting_events(self) -> dict[str, int]:
        return {r["source"]: int(r["n"]) for r in await self._read("waiting_events")}
