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
from bridge.store.sql_reads import SqlReads, of_approval

__all__ = ["SQLiteReads", "of_approval"]


class SQLiteReads(SqlReads):
    """The read half of the Store protocol: the shared lookups (SqlReads) and SQLite's own."""

    async def _read(self, name: str, params: Mapping[str, Any] | None = None) -> list[sqlite3.Row]:
        raise NotImplementedError  # SQLiteStore runs it on its reader connection

    async def pending_events(self, limit: int = 100) -> list[store.InboxEvent]:
        return [sq.inbox_row(r) for r in await self._read("pending_events", {"limit": limit})]

    async def pending_batch(self, limit: int = 100) -> store.Pending:
        """The events, then their approvals and those approvals' notices, in three reads whatever the batch's
        size. Each read is a trip to the reader's thread and back; one `get_approval` and one `notices_for` per
        approval (`read_pending`, what the memory store does) made a batch of 200 approvals 401 trips, and
        those hand-offs cost the deciding process more than the queries."""
        events = [sq.inbox_row(r) for r in await self._read("pending_events", {"limit": limit})]
        if not events:
            return store.Pending(events=(), approvals={}, notices={})
        keys = sq.dumps(list(dict.fromkeys((ie.event.source, ie.event.approval_id) for ie in events)))
        approvals = {(a.source, a.approval_id): a
                     for a in map(sq.approval_row, await self._read("approvals_for_keys", {"keys": keys}))}
        grouped: dict[tuple[str, str], list[store.Notice]] = {key: [] for key in approvals}
        for notice in map(sq.notice_row, await self._read("notices_for_keys", {"keys": keys})):
            grouped[(notice.source, notice.approval_id)].append(notice)
        return store.Pending(events=tuple(events), approvals=approvals,
                             notices={key: tuple(found) for key, found in grouped.items()})

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
