"""The SQLite store's write side: every change that is one statement or one transaction body.

Split from bridge.store.sqlite so its machinery (connections, the single writer task, group commit of
`add_event`, faults and reconnects) reads apart from what each write does. Every method here hands a
transaction body (built in bridge.store.sqlite_sql) to `_write`, which the store defines: the writer task
runs it as its own `BEGIN IMMEDIATE … COMMIT` and answers StorageUnavailable when the file cannot take it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from bridge import records as store
from bridge.store import claim_sql as cs
from bridge.store import recipients_sql as rs
from bridge.store import sqlite_sql as sq
from bridge.store.sql_statements import SqlStatementWrites, Statement
from bridge.store.sqlite_retention import prune_writer
from bridge.store.sqlite_thread import SqlConnection

__all__ = ["SQLiteWrites"]

T = TypeVar("T")


class SQLiteWrites(SqlStatementWrites):
    """The write half of the Store protocol (besides `add_event`, which the writer batches), written once
    against `_write`."""

    async def _write(self, run: Callable[[SqlConnection], Awaitable[T]], *, inline: bool = True) -> T:
        raise NotImplementedError  # SQLiteStore queues it for its writer task

    async def apply_decision(self, decision: store.Decision, now: datetime) -> list[int]:
        return await self._write(sq.decision_writer(decision, now))

    async def apply_decision_and_claim(self, decision: store.Decision, now: datetime, lease_s: float,
                                       limit: int) -> store.Applied:
        decide = sq.decision_writer(decision, now)
        claim = {"now": sq.to_us(now), "lease_until": sq.to_us(now + timedelta(seconds=lease_s)), "limit": limit}

        async def run(conn: SqlConnection) -> store.Applied:
            job_ids = await decide(conn)
            [owner] = await sq.fetch(conn, "inbox_owner", {"id": decision.inbox_id})
            of = {"source": owner["source"], "approval_id": owner["approval_id"]}
            rows = await sq.fetch(conn, "claim_jobs_of", {**claim, **of}) if limit > 0 else []
            claimed = sorted(map(sq.job_row, rows), key=lambda j: (j.run_at, j.id))
            notices = {n.id: n for n in map(sq.notice_row, await sq.fetch(conn, "notices_for", of))}
            return store.Applied(job_ids=tuple(job_ids), claimed=tuple(claimed), notices=notices)

        return await self._write(run)

    async def claim_jobs(self, now: datetime, lease_s: float, limit: int,
                         kinds: Mapping[str, int] | None = None) -> list[store.Job]:
        if limit <= 0:
            return []
        if kinds is None:
            return await self._write(sq.claim_writer(now, lease_s, limit))
        params = {"now": sq.to_us(now), "lease_until": sq.to_us(now + timedelta(seconds=lease_s)), "limit": limit,
                  **cs.kind_limits(kinds)}

        async def run(conn: SqlConnection) -> list[store.Job]:  # the claim by kind (bridge.store.claim_sql)
            rows = await conn.execute_fetchall(cs.SQLITE_CLAIM_BY_KIND, params)
            return sorted(map(sq.job_row, rows), key=lambda j: (j.run_at, j.id))

        return await self._write(run)

    async def finish_job(
        self,
        job_id: int,
        now: datetime,
        *,
        outcome: str = "ok",
        notice: store.NoticeChange | None = None,
        new_jobs: Sequence[store.NewJob] = (),
        journal: Sequence[store.NewJournal] = (),
    ) -> list[int]:
        return await self._write(sq.finish_writer(job_id, now, outcome, notice, new_jobs, journal))

    async def _statement(self, st: Statement) -> int:
        return await self._write(sq.statement_writer(st.name, st.params, st.journal, missing=st.missing))

    async def extend_leases(self, job_ids: Sequence[int], now: datetime, lease_s: float) -> int:
        if not job_ids:
            return 0
        params = {"ids": sq.dumps(list(job_ids)), "lease_until": sq.to_us(now + timedelta(seconds=lease_s))}
        return await self._write(sq.statement_writer("extend_leases", params))

    async def add_jobs(
        self, jobs: Sequence[store.NewJob], now: datetime, journal: Sequence[store.NewJournal] = ()
    ) -> list[int]:
        return await self._write(sq.add_jobs_writer(jobs, now, journal))

    async def append_journal(self, entries: Sequence[store.NewJournal], now: datetime) -> None:
        lines = sq.journal_params(entries, now)
        if lines:
            await self._write(sq.journal_writer(lines))

    async def prune(self, before: datetime, limit: int) -> store.Pruned:
        if limit < 1:
            return store.Pruned()
        return await self._write(prune_writer(before, limit), inline=False)  # may delete many rows: not on the loop

    async def save_resolutions(self, resolutions: Sequence[store.Resolution]) -> None:
        rows = [rs.params(r) for r in resolutions]  # a naive time raises here, before anything is written
        if rows:
            async def run(conn: SqlConnection) -> None:
                await conn.executemany(sq.Q["save_resolution"], rows)

            await self._write(run)
