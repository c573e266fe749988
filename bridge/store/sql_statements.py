"""The writes both SQL stores make as one named statement plus journal lines (a job retried, buried or released,
dead jobs revived, a notice changed, the readiness probe), written once: each store only says how it runs a
`Statement` (SQLite's writer task, PostgreSQL's pipelined or autocommit bodies), so the bookkeeping of a retry
or a release cannot differ between them. A base class of `SQLiteWrites` and `PostgresStore`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge import records as store
from bridge.store import sqlite_sql as sq

__all__ = ["SqlStatementWrites", "Statement"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One named statement (the same name in both stores' queries.sql) with its journal lines. `missing`:
    changing no row raises LookupError(missing) and nothing is written. `wake`: the change makes a job due now
    (PostgreSQL NOTIFYs the other processes)."""

    name: str
    params: Mapping[str, Any]
    journal: Sequence[Mapping[str, Any]] = ()
    missing: str | None = None
    wake: bool = False


class SqlStatementWrites:
    """The one-statement writes of the Store protocol, written once against `_statement`."""

    async def _statement(self, st: Statement) -> int:
        raise NotImplementedError  # each store runs it in its own transaction machinery; rows changed

    async def save_notice(self, change: store.NoticeChange, journal: Sequence[store.NewJournal] = ()) -> None:
        lines = sq.journal_params(journal, sq.notice_change_time(change))
        await self._statement(Statement("update_notice", sq.notice_change_params(change), lines,
                                        missing=f"no notice {change.notice_id}"))

    async def retry_job(
        self, job_id: int, now: datetime, run_at: datetime, error: str, journal: Sequence[store.NewJournal] = ()
    ) -> None:
        params = {"id": job_id, "now": sq.to_us(now), "run_at": sq.to_us(run_at), "error": error}
        await self._statement(Statement("retry_job", params, sq.journal_params(journal, now),
                                        missing=f"no job {job_id}"))

    async def bury_job(self, job_id: int, now: datetime, error: str, journal: Sequence[store.NewJournal] = ()) -> None:
        params = {"id": job_id, "now": sq.to_us(now), "error": error}
        await self._statement(Statement("bury_job", params, sq.journal_params(journal, now),
                                        missing=f"no job {job_id}"))

    async def release_job(self, job_id: int, now: datetime) -> None:
        await self._statement(Statement("release_job", {"id": job_id, "now": sq.to_us(now)}, wake=True))

    async def retry_dead(self, now: datetime, job_id: int | None = None) -> int:
        if job_id is None:
            return await self._statement(Statement("retry_dead_all", {"now": sq.to_us(now)}, wake=True))
        return await self._statement(Statement("retry_dead_one", {"now": sq.to_us(now), "id": job_id}, wake=True))

    async def check_writable(self) -> None:
        await self._statement(Statement("probe", {"at": sq.to_us(datetime.now(UTC))}))
