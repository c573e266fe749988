"""The PostgreSQL store: the Store protocol for several bridge processes sharing one database.

Why it looks the way it does:

- Driver: psycopg 3 with psycopg_pool, chosen by bench/pg_driver.py (faster than asyncpg on bridge's insert
  and claim paths on this machine, and fully typed); figures in docs/performance.md.
- Every write is one transaction on a pooled connection; PostgreSQL itself runs concurrent commits together,
  so there is no writer task here (unlike SQLite's single writer).
- Several processes share the work safely: `pending_events` leases the approvals it returns (table
  `deciding`), and `apply_decision` writes nothing when the event is already processed or another live process
  holds the approval's lease, so an event is decided by exactly one process. Jobs are claimed with
  `FOR UPDATE SKIP LOCKED`, only the head (lowest unfinished id) of each lock_key, so per-approval order holds
  across processes; leases are extended by the worker's heartbeat and expire when a process dies.
- Writes that make work due NOTIFY `bridge_work`; `on_work(callback)` LISTENs on a dedicated connection and
  calls back, so workers in other processes wake at once (their poll interval is the fallback).
- The schema is migrated on open under `pg_advisory_lock`, so two processes starting together never migrate
  at once; versions are recorded in `schema_version`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg.rows import DictRow, dict_row

from bridge import logs
from bridge import records as store  # the records, not the package: open_store imports this module
from bridge.errors import StorageUnavailable
from bridge.events import ApprovalEvent
from bridge.records import JobState
from bridge.store import postgres_decide as pd
from bridge.store import postgres_sql as pq
from bridge.store import recipients_sql as rs
from bridge.store import sqlite_sql as sq
from bridge.store.postgres_shared import PostgresShared
from bridge.store.sql_reads import SqlReads
from bridge.store.sql_reads import of_approval as _of
from bridge.store.sql_statements import SqlStatementWrites, Statement

__all__ = ["PostgresStore"]

log = logs.get_logger(__name__)
T = TypeVar("T")
DECIDE_LEASE_S = 10.0  # a batch of decisions takes well under this; a killed decider's approvals free up after it
_LISTEN_RETRY_S = 1.0



def _safe_url(url: str) -> str:
    """The URL without any password, for logs and errors."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user, host, port, name = (info.get(k, "") for k in ("user", "host", "port", "dbname"))
    return f"postgresql://{user}@{host}:{port or 5432}/{name}"


class PostgresStore(SqlReads, SqlStatementWrites, PostgresShared):
    """The Store protocol on PostgreSQL. See the module docstring for the design.

    `owner` names this process in deciding leases (host:pid:random). `migrations` is for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 20,
        migrations: Sequence[sq.Migration] | None = None,
        decide_lease_s: float = DECIDE_LEASE_S,
    ) -> None:
        self.url = url
        self._conninfo = psycopg.conninfo.make_conninfo(url, **({"password": password} if password else {}))
        self.pool_size = pool_size
        self.migrations = tuple(migrations if migrations is not None else pq.MIGRATIONS)
        self.decide_lease_s = decide_lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # every connection's application_name: NOTIFY payloads start with it, so the listener skips this
        # process's own notifications (its writers wake its worker directly; see bridge.app)
        self.wake_id = f"bridge:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._conninfo = psycopg.conninfo.make_conninfo(self._conninfo, application_name=self.wake_id)
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._listen_task: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()
        self._adding: dict[tuple[str, str], asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"PostgresStore({_safe_url(self.url)!r})"

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._lifecycle:
            if self._pool is not None:
                return
            await self.migrate()
            pool = psycopg_pool.AsyncConnectionPool(  # min_size: a burst after idling finds connections open
                self._conninfo, min_size=min(4, self.pool_size), max_size=self.pool_size, open=False, timeout=10.0,
                connection_class=psycopg.AsyncConnection[DictRow],
                # prepare_threshold 0: every statement is prepared on its connection's first use, not its sixth.
                # bridge's SQL is a fixed set of named statements (queries.sql), so the server parses and plans
                # each once per connection; with the default (5) a pool of 20 connections stayed unprepared for
                # the first ~100 uses of each statement, and an idle decision paid ~15 parses and plans: its write
                # 2.65 -> 1.79-2.19 ms, the decider's batch read 1.63 -> 1.12-1.37 ms (median of 75, load ~1).
                # Behind a pooler that cannot keep prepared statements this is no different from the default,
                # which prepares too.
                kwargs={"row_factory": dict_row, "autocommit": True, "prepare_threshold": 0},
            )
            try:
                await pool.open(wait=True, timeout=10.0)
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                await pool.close()
                raise StorageUnavailable(f"storage unavailable: cannot open {_safe_url(self.url)}: {exc}") from None
            self._pool = pool
            if self._listeners:
                self._start_listening()

    async def close(self) -> None:
        async with self._lifecycle:
            if self._pool is None:
                return
            if self._listen_task is not None:
                self._listen_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._listen_task
                self._listen_task = None
            with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout, StorageUnavailable):
                await self._write(lambda conn: pq.execute(conn, "release_deciding", {"owner": self.owner}))
            pool, self._pool = self._pool, None
            await pool.close()

    async def _connect(self) -> psycopg.AsyncConnection[DictRow]:
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            raise StorageUnavailable(f"storage unavailable: cannot open {_safe_url(self.url)}: {exc}") from None

    async def migrate(self) -> tuple[int, int]:
        """Bring the schema up to date under an advisory lock; returns (version found, version now)."""
        latest = self.migrations[-1].version if self.migrations else 0
        conn = await self._connect()
        try:
            await pq.fetch(conn, "migration_lock", {"key": pq.MIGRATION_LOCK})
            try:
                await pq.execute(conn, "schema_version_table")
                found = int((await pq.fetch(conn, "schema_version"))[0]["version"])
                if found > latest:
                    raise StorageUnavailable(f"storage unavailable: {_safe_url(self.url)} has schema version "
                                             f"{found}; this bridge knows up to {latest}")
                for migration in self.migrations:
                    if migration.version > found:
                        async with conn.transaction():
                            for statement in migration.statements:
                                await conn.execute(statement.encode())
                            await pq.execute(conn, "record_version", {"version": migration.version})
                if found != latest:
                    log.info("storage.migrated", url=_safe_url(self.url), from_version=found, to_version=latest)
                return found, latest
            finally:
                await pq.fetch(conn, "migration_unlock", {"key": pq.MIGRATION_LOCK})
        except psycopg.Error as exc:
            raise StorageUnavailable(f"storage unavailable: migrating {_safe_url(self.url)}: {exc}") from None
        finally:
            await conn.close()

    # --- waking other processes --------------------------------------------------------------------------
    def on_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any process commits work that is due now (LISTEN bridge_work)."""
        self._listeners.append(callback)
        if self._pool is not None and self._listen_task is None:
            self._start_listening()

    def _start_listening(self) -> None:
        self._listen_task = asyncio.create_task(self._listen(), name="postgres-store-listen")

    async def _listen(self) -> None:
        while True:
            try:
                conn = await self._connect()
                try:
                    await pq.execute(conn, "listen")
                    self._wake_all()  # anything committed while not listening
                    async for note in conn.notifies():
                        if not note.payload.startswith(self.wake_id + " "):
                            self._wake_all()
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            except (psycopg.Error, StorageUnavailable) as exc:
                log.warning("storage.listen_failed", error=str(exc))
            await asyncio.sleep(_LISTEN_RETRY_S)

    def _wake_all(self) -> None:
        for callback in self._listeners:
            callback()

    # --- machinery -------------------------------------------------------------------------------------------
    def _ready(self) -> psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]:
        if self._pool is None:
            raise StorageUnavailable("storage unavailable: the store is not open")
        return self._pool

    async def _write(self, body: pq.Body | pq.Work) -> Any:
        """Run `body` on a pooled connection: in one transaction, pipelined, or alone in autocommit (`pq.Work`)."""
        work = body if isinstance(body, pq.Work) else pq.Work(body)
        pool = self._ready()
        try:
            async with pool.connection() as conn:
                if work.mode is pq.Mode.ALONE:
                    return await work.run(conn)
                if work.mode is pq.Mode.PIPELINED:
                    return await pq.pipelined(conn, work.run, durable=work.durable)
                async with conn.transaction():
                    return await work.run(conn)
        except psycopg.IntegrityError as exc:
            raise ValueError(f"the database refused the write: {exc}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            log.error("storage.write_failed", error=str(exc))
            raise StorageUnavailable(f"storage unavailable: {exc}") from None

    async def _read(self, name: str, params: Mapping[str, Any] | None = None) -> list[DictRow]:
        pool = self._ready()
        try:
            async with pool.connection() as conn:
                return await pq.fetch(conn, name, params)
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            raise StorageUnavailable(f"storage unavailable: {exc}") from None

    # --- receiving -----------------------------------------------------------------------------------------
    async def add_event(self, event: ApprovalEvent, raw: bytes, received_at: datetime) -> store.AddResult:
        params = dict(
            source=event.source, event_id=event.event_id, approval_id=event.approval_id,
            occurred_at=sq.to_us(event.occurred_at), received_at=sq.to_us(received_at), event=event.to_json(),
            raw=bytes(raw), card_data=event.has_card_data,
        )
        key = (event.source, event.event_id)
        lock = self._adding.get(key)
        if lock is None:
            lock = self._adding[key] = asyncio.Lock()
        try:
            async with lock:  # FIFO: of concurrent deliveries in this process, the first one is the insert
                inserted, inbox_id = await self._write(pq.insert_event_body(params))
        finally:
            if not lock.locked() and self._adding.get(key) is lock:
                del self._adding[key]
        return store.AddResult(inserted=inserted, inbox_id=inbox_id)

    async def has_card_data(self, source: str, approval_id: str) -> bool:
        return bool((await self._read("has_card_data", _of(source, approval_id)))[0]["found"])

    # --- deciding ------------------------------------------------------------------------------------------
    async def pending_events(self, limit: int = 100) -> list[store.InboxEvent]:
        return list((await self.pending_batch(limit)).events)

    async def pending_batch(self, limit: int = 100) -> store.Pending:
        pending: store.Pending = await self._write(
            pd.pending_body(self.owner, datetime.now(UTC), self.decide_lease_s, limit))
        return pending

    async def apply_decision(self, decision: store.Decision, now: datetime) -> list[int]:
        ids: list[int] = await self._write(pq.decision_body(decision, now, self.owner))
        return ids

    async def apply_decision_and_claim(self, decision: store.Decision, now: datetime, lease_s: float,
                                       limit: int) -> store.Applied:
        if not pd.one_trip(decision):
            applied: store.Applied = await self._write(pq.decision_body(decision, now, self.owner, (lease_s, limit)))
            return applied
        try:
            done: store.Applied = await self._write(pd.decided_body(decision, now, self.owner, lease_s, limit))
        except psycopg.DatabaseError as exc:
            if exc.sqlstate != pd.REFUSED:
                raise
            raise await self._refusal(decision.inbox_id, now) from None  # bridge_decide claimed nothing, wrote nothing
        return done

    async def _refusal(self, inbox_id: int, now: datetime) -> Exception:
        """Why a decision's claim was refused: AlreadyDecided, or LookupError for no such event."""
        try:
            async with self._ready().connection() as conn:
                return await pq.refused(conn, inbox_id, self.owner, sq.to_us(now))
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            raise StorageUnavailable(f"storage unavailable: {exc}") from None

    # --- delivering ----------------------------------------------------------------------------------------
    async def claim_jobs(self, now: datetime, lease_s: float, limit: int,
                         kinds: Mapping[str, int] | None = None) -> list[store.Job]:
        if limit <= 0:
            return []
        jobs: list[store.Job] = await self._write(pq.claim_body(now, lease_s, limit, kinds))
        return jobs

    async def _statement(self, st: Statement) -> int:
        changed: int = await self._write(pq.statement_body(st.name, st.params, st.journal, missing=st.missing,
                                                           wake=st.wake))
        return changed

    async def extend_leases(self, job_ids: Sequence[int], now: datetime, lease_s: float) -> int:
        if not job_ids:
            return 0
        params = {"ids": list(job_ids), "lease_until": sq.to_us(now + timedelta(seconds=lease_s))}
        changed: int = await self._write(pq.statement_body("extend_leases", params))
        return changed

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
        ids: list[int] = await self._write(pq.finish_body(job_id, now, outcome, notice, new_jobs, journal))
        return ids

    async def add_jobs(
        self, jobs: Sequence[store.NewJob], now: datetime, journal: Sequence[store.NewJournal] = ()
    ) -> list[int]:
        ids: list[int] = await self._write(pq.add_jobs_body(jobs, now, journal))
        return ids

    # --- reading -------------------------------------------------------------------------------------------
    async def prune(self, before: datetime, limit: int) -> store.Pruned:
        pruned: store.Pruned = await self._write(pq.prune_body(before, limit))
        return pruned

    async def append_journal(self, entries: Sequence[store.NewJournal], now: datetime) -> None:
        lines = sq.journal_params(entries, now)
        if lines:
            async def body(conn: pq.Conn) -> None:
                await pq.execute_many(conn, "insert_journal", lines)

            await self._write(body)

    async def job_counts(self, now: datetime) -> store.JobCounts:
        counts = {r["state"]: int(r["n"]) for r in await self._read("job_counts")}
        oldest = (await self._read("oldest_pending"))[0]["oldest"]
        orphaned = int((await self._read("orphaned_count"))[0]["n"])
        return store.JobCounts(
            pending=counts.get(JobState.PENDING, 0), running=counts.get(JobState.RUNNING, 0),
            dead=counts.get(JobState.DEAD, 0), done=counts.get(JobState.DONE, 0),
            oldest_pending_run_at=sq.opt_dt(oldest), orphaned=orphaned,
        )

    async def get_resolutions(self, keys: Sequence[str]) -> dict[str, store.Resolution]:
        rows = await self._read("get_resolutions", {"keys": list(keys)}) if keys else []
        return {r.key: r for r in map(rs.row, rows)}

    async def save_resolutions(self, resolutions: Sequence[store.Resolution]) -> None:
        await self._write(pq.many_body("save_resolution", [rs.params(r) for r in resolutions]))
