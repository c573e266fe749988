"""The SQLite store's read side: every query that only reads, as a base class of `SQLiteStore`.

Split from bridge.store.sqlite so its machinery (connections, the one writer task, group commit, faults)
reads apart from the plain row lookups. Every method here goes through `_read`, which the store defines:
it runs a named statement from sql/queries.sql on the query-only connection (under WAL readers never wait
for the writer) and turns a database fault into StorageUnavailable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge import records as store
from bridge.records import JobState
from bridge.store import recipients_sql as rs
from bridge.store import sqlite_sql as sq

__all__ = ["SQLiteReads", "of_approval"]

def of_approval(source: str, approval_id: str) -> dict[str, str]:
    """The parameters of every per-approval query."""
    return {"source": source, "approval_id": approval_id}


class SQLiteReads:
    """The read half of the Store protocol, written once against `_read`."""

    async def _read(self, name: str, params: Mapping[str, Any] | None = None) -> list[sqlite3.Row]:
        raise NotImplementedError  # SQLiteStore runs it on its reader connection

    async def pending_events(self, limit: int = 100) -> list[store.InboxEvent]:
        return [sq.inbox_row(r) for r in await self._read("pending_events", {"limit": limit})]

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
            return [sq.job_row(r) for r in await self._read("list_jobs", {"limit": limit})]
        return [sq.job_row(r) for r in await self._read("list_jobs_in_state", {"state": state, "limit": limit})]

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
        if source is None:
            rows = await self._read("journal_tail", {"limit": max(n, 0)})
        else:
            rows = await self._read("journal_tail_for_source", {"source": source, "limit": max(n, 0)})
        return [sq.journal_row(r) for r in rows]

    async def job_counts(self, now: datetime) -> store.JobCounts:
        counts = {r["state"]: r["n"] for r in await self._read("job_counts")}
        oldest = (await self._read("oldest_pending"))[0][0]
        orphaned = (await self._read("orphaned_count"))[0][0]
        return store.JobCounts(
            pending=counts.get(JobState.PENDING, 0), running=counts.get(JobState.RUNNING, 0),
            dead=counts.get(JobState.DEAD, 0),
            done=counts.get(JobState.DONE, 0), oldest_pending_run_at=sq.opt_dt(oldest), orphaned=orphaned,
        )

    async def get_resolutions(self, keys: Sequence[str]) -> dict[str, store.Resolution]:
        rows = await self._read("get_resolutions", {"keys": sq.dumps(list(keys))}) if keys else []
        return {r.key: r for r in map(rs.row, rows)}
