"""The SQLite store: bridge's durable memory in one embedded file (aiosqlite, WAL).

Why it looks the way it does:

- SQLite has one writer at a time, and tasks sharing an aiosqlite connection share one transaction (a
  rollback in one task discards another task's insert). So every write goes through ONE writer task that
  owns the writer connection and runs each request as its own `BEGIN IMMEDIATE … COMMIT`.
- A webhook is acknowledged only after its event is committed, and one commit per request would cap
  throughput at the disk's commit rate. The writer therefore drains every `add_event` waiting in its queue
  into one transaction (group commit); each caller's future resolves after that commit. Other writes queued
  together (decisions, finished jobs, claims) share one commit the same way, each in its own savepoint
  (bridge.store.sqlite_queue).
- Reads use a second, query-only connection: under WAL readers never wait for the writer.
- A failed write (read-only file, full disk, lock held too long) rolls back, answers every caller in the
  batch with `StorageUnavailable`, and reconnects on the next write, so the store recovers by itself.
- All SQL lives in `bridge/sql/` (schema.sql: numbered migrations; queries.sql: named statements);
  `bridge.sqlite_sql` loads it, maps rows to records and holds the transaction bodies. This module is the
  machinery: connections, the writer task, errors; the plain reads and writes are its two base classes,
  `sqlite_reads.SQLiteReads` and `sqlite_writes.SQLiteWrites`. Times are integer microseconds since the epoch in the
  file and aware UTC datetimes outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bridge import logs
from bridge import records as store  # the records, not the package: open_store imports this module
from bridge.errors import StorageUnavailable
from bridge.events import ApprovalEvent
from bridge.store import sqlite_inbox as inbox
from bridge.store import sqlite_sql as sq
from bridge.store.sqlite_files import FileGuard, ProcessLock
from bridge.store.sqlite_queue import GROUP_MAX, Insert, Op, group_body, refused, settle, storage_fault
from bridge.store.sqlite_reads import SQLiteReads, of_approval
from bridge.store.sqlite_shared import SQLiteShared
from bridge.store.sqlite_sql import MIGRATIONS, SCHEMA_VERSION, Migration
from bridge.store.sqlite_thread import SqlConnection, WriterConnection
from bridge.store.sqlite_writes import SQLiteWrites

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SYNCHRONOUS", "Migration", "SQLiteStore"]

log = logs.get_logger(__name__)

T = TypeVar("T")
# A connection the store opened and must close: the aiosqlite reader or the writer thread's connection.
OpenConnection = aiosqlite.Connection | WriterConnection
SYNCHRONOUS = ("normal", "full")
_CARD_CACHE_MAX = 10_000  # recent approvals known to have card data (positives never go stale: rows stay)




def _fail_all(futures: list[asyncio.Future[Any]], exc: Exception) -> None:
    """A shared commit failed: logged once, and every caller in it answered StorageUnavailable."""
    message = str(exc) if isinstance(exc, StorageUnavailable) else f"storage unavailable: {exc}"
    log.error("storage.write_failed", error=message, requests=len(futures))
    for future in futures:
        settle(future, error=StorageUnavailable(message))


class SQLiteStore(SQLiteReads, SQLiteWrites, SQLiteShared):
    """The Store protocol on one SQLite file. See the module docstring for the design.

    `commits` counts committed write transactions; with group commit it grows far slower than the number
    of `add_event` calls under concurrency. `migrations` is for tests of the migration machinery.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "normal",
        batch_max: int = 256,
        busy_timeout_s: float = 5.0,
        migrations: Sequence[Migration] | None = None,
        exclusive: bool = False,
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.path = Path(path)
        self.synchronous = synchronous
        self.batch_max = batch_max
        self.busy_timeout_s = busy_timeout_s
        self.migrations = tuple(migrations if migrations is not None else MIGRATIONS)
        self.commits = 0
        self._writer: OpenConnection | None = None
        self._reader: OpenConnection | None = None
        self._reconnect = False
        self._queue: asyncio.Queue[Insert | Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lifecycle = asyncio.Lock()
        self._card_cache: set[tuple[str, str]] = set()
        self._guard = FileGuard(self.path)
        self._lock = ProcessLock(self.path) if exclusive else None  # `bridge serve`: one server per database

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._lifecycle:
            if self._task is not None:
                return
            if self._lock is not None:
                self._lock.acquire()  # StorageInUse: another server has it
            created = not self.path.exists()
            try:
                writer = await self._connect()
                try:
                    await self._migrate(writer)
                    reader = await self._connect(read_only=True)
                except BaseException:
                    await writer.close()
                    raise
            except sqlite3.Error as exc:
                if self._lock is not None:
                    self._lock.release()
                raise StorageUnavailable(f"storage unavailable: cannot open {self.path}: {exc}") from None
            if created:  # said out loud: a missing database may be a mistake (wrong path, a deleted file)
                log.warning("storage.created", path=str(self.path),
                            message="no database at this path: created a new, empty one")
            self._guard.arm()
            self._writer, self._reader, self._reconnect, self._closing = writer, reader, False, False
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run_writer(), name="sqlite-store-writer")

    async def close(self) -> None:
        async with self._lifecycle:
            if self._task is None:
                return
            self._closing = True
            self._queue.put_nowait(None)  # after everything already queued: those writes still commit
            try:
                await self._task
            finally:
                self._task = None
                if self._guard.safe_to_close():
                    for conn in (self._writer, self._reader):
                        if conn is not None:
                            with contextlib.suppress(Exception):
                                await conn.close()
                    self._guard.release()
                else:  # closing would write the immutable -shm map: SIGBUS. The process exit closes them.
                    log.error("storage.close_skipped", path=str(self.path),
                              reason="a database file is immutable; connections left to the process exit")
                self._writer = self._reader = None
                if self._lock is not None:
                    self._lock.release()

    async def _connect(self, *, read_only: bool = False, create: bool = True) -> OpenConnection:
        """A connection; with create=False (reconnecting) a missing file is an error, never a new database."""
        conn: OpenConnection
        target = str(self.path) if create else f"{self.path.resolve().as_uri()}?mode=rw"
        if read_only:
            conn = await aiosqlite.connect(target, isolation_level=None, timeout=self.busy_timeout_s,
                                           uri=not create)
            conn.row_factory = sqlite3.Row
        else:
            conn = await WriterConnection.connect(target, busy_timeout_s=self.busy_timeout_s, uri=not create)
        try:
            await conn.execute(sq.Q["mmap_off"])  # never map the database file itself (SIGBUS on a bad file)
            if not read_only:
                await conn.execute(sq.Q["journal_mode_wal"])
            await conn.execute(sq.Q[f"synchronous_{self.synchronous}"])
            await conn.execute(sq.Q["foreign_keys_on"])
            if read_only:
                await conn.execute(sq.Q["query_only_on"])
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _migrate(self, conn: OpenConnection) -> None:
        latest = self.migrations[-1].version if self.migrations else 0
        found = (await sq.fetch(conn, "user_version"))[0][0]
        if found > latest:
            raise StorageUnavailable(
                f"storage unavailable: {self.path} has schema version {found}; this bridge knows up to {latest}"
            )
        if found == latest:
            return
        await conn.execute(sq.Q["begin"])
        try:
            found = (await sq.fetch(conn, "user_version"))[0][0]  # another process may have migrated meanwhile
            for migration in self.migrations:
                if migration.version > found:
                    for statement in migration.statements:
                        await conn.execute(statement)
            await conn.execute(sq.Q["commit"])
        except BaseException:
            if conn.in_transaction:
                await conn.execute(sq.Q["rollback"])
            raise
        log.info("storage.migrated", path=str(self.path), from_version=found, to_version=latest)

    # --- the writer ------------------------------------------------------------------------------------------
    @property
    def _inline(self) -> bool:
        """Whether transactions run on the event loop instead of the writer thread. They do when a commit does
        not wait for the disk: with synchronous = normal a WAL commit writes its frames into the page cache
        and fsyncs only at SQLite's automatic checkpoint (every ~1,000 pages, ~4 MB). Then a transaction costs
        less than handing it to the thread and back, and the GIL passed to and fro while the thread works
        (figures in docs/performance.md); the checkpoint's fsync is the one wait on the loop. With synchronous
        = full every commit fsyncs, which must not stop the loop."""
        return self.synchronous == "normal"

    def _check_open(self) -> None:
        if self._task is None or self._closing or self._task.done():
            raise StorageUnavailable("storage unavailable: the store is not open")

    async def _write(self, run: Callable[[SqlConnection], Awaitable[T]], *, inline: bool = True) -> T:
        """Run `run` on the writer connection inside its own transaction, after the writes queued before it.
        `inline`: on the event loop when commits do not wait for the disk (see `_inline`); False for a
        transaction that may be long whatever the mode (retention's deletes)."""
        self._check_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Op(run, future, inline))
        return await future

    async def _run_writer(self) -> None:
        held: deque[Insert | Op | None] = deque()
        while True:
            item = held.popleft() if held else await self._queue.get()
            if item is None:
                return
            if isinstance(item, Op):
                ops = [item]
                while item.inline and len(ops) < GROUP_MAX and not self._queue.empty():
                    nxt = self._queue.get_nowait()
                    if not isinstance(nxt, Op) or not nxt.inline:
                        held.append(nxt)
                        break
                    ops.append(nxt)
                await (self._commit_op(item) if len(ops) == 1 else self._commit_ops(ops))
            else:
                batch = [item]
                if self._queue.empty():  # let this loop turn's other requests queue theirs: one commit for all
                    await asyncio.sleep(0)
                while len(batch) < self.batch_max and not self._queue.empty():
                    nxt = self._queue.get_nowait()
                    if not isinstance(nxt, Insert):
                        held.append(nxt)
                        break
                    batch.append(nxt)
                await self._commit_inserts(batch)

    async def _writable(self) -> OpenConnection:
        if self._writer is None or self._reconnect:
            await self._reopen()
        assert self._writer is not None
        return self._writer

    async def _reopen(self) -> None:
        """Start both connections afresh after a failure. Both, because SQLite shares a file's shared-memory
        index among a process's connections: a reader opened while the file was read-only would keep a new
        writer read-only too."""
        self._guard.check()  # a lost or immutable file is never reopened (closing would touch the -shm map)
        for conn in (self._writer, self._reader):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._writer = self._reader = None
        try:
            self._writer = await self._connect(create=False)
            self._reconnect = False
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._reader = await self._connect(read_only=True, create=False)
            self._guard.rearm_sidecars()

    async def _transaction(self, run: Callable[[SqlConnection], Awaitable[T]], *, inline: bool = False) -> T:
        writer: WriterConnection | None = None
        self._guard.check()
        try:
            conn = await self._writable()
            assert isinstance(conn, WriterConnection)
            writer = conn
            result = await writer.transaction(run, begin=sq.Q["begin"], commit=sq.Q["commit"],
                                              rollback=sq.Q["rollback"], inline=inline)
        except BaseException as exc:
            if writer is not None and writer.rollback_failed:
                self._reconnect = True
            if isinstance(exc, sqlite3.IntegrityError):
                raise refused(exc) from None
            if storage_fault(exc):
                self._reconnect = True  # a read-only file may be writable again after a fresh open
                raise StorageUnavailable(f"storage unavailable: {exc}") from None
            raise
        self.commits += 1
        self._guard.check()  # committed into a file that is no longer the database: the callers must retry
        return result

    async def _commit_op(self, op: Op) -> None:
        try:
            result = await self._transaction(op.run, inline=op.inline and self._inline)
        except StorageUnavailable as exc:
            log.error("storage.write_failed", error=str(exc), requests=1)
            settle(op.future, error=exc)
        except Exception as exc:
            settle(op.future, error=exc)
        else:
            settle(op.future, result)

    async def _commit_ops(self, ops: list[Op]) -> None:
        """Several queued writes in one transaction (bridge.store.sqlite_queue): one commit, one pair of file
        checks; an op whose body refuses is undone alone, a fault of the database fails them all."""
        try:
            outcomes = await self._transaction(group_body(ops), inline=self._inline)
        except Exception as exc:
            _fail_all([op.future for op in ops], exc)
            return
        for op, outcome in zip(ops, outcomes, strict=True):
            settle(op.future, outcome.value, outcome.error)

    async def _commit_inserts(self, batch: list[Insert]) -> None:
        async def run(conn: SqlConnection) -> list[store.AddResult]:
            if len(batch) == 1:
                return [await inbox.insert_one(conn, batch[0].params)]
            return await inbox.insert_many(conn, [insert.params for insert in batch])

        try:
            results = await self._transaction(run, inline=self._inline)
        except Exception as exc:
            _fail_all([insert.future for insert in batch], exc)
            return
        for insert, result in zip(batch, results, strict=True):
            settle(insert.future, result)

    # --- reads ---------------------------------------------------------------------------------------------
    async def _read(self, name: str, params: Mapping[str, Any] | None = None) -> list[sqlite3.Row]:
        if self._reader is None:  # not open, or reconnecting after a fault
            raise StorageUnavailable("storage unavailable: the store is not open")
        self._guard.check()
        try:
            return await sq.fetch(self._reader, name, params)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's "Connection closed" mid-reconnect
            raise StorageUnavailable(f"storage unavailable: {exc}") from None

    # --- receiving -----------------------------------------------------------------------------------------
    async def add_event(self, event: ApprovalEvent, raw: bytes, received_at: datetime) -> store.AddResult:
        params = dict(
            source=event.source, event_id=event.event_id, approval_id=event.approval_id,
            occurred_at=sq.to_us(event.occurred_at), received_at=sq.to_us(received_at), event=event.to_json(),
            raw=bytes(raw), card_data=int(event.has_card_data),
        )
        self._check_open()
        future: asyncio.Future[store.AddResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Insert(params, future))
        result = await future
        if result.inserted and event.has_card_data:
            self._remember_card(event.source, event.approval_id)
        return result

    def _remember_card(self, source: str, approval_id: str) -> None:
        if len(self._card_cache) >= _CARD_CACHE_MAX:
            self._card_cache.clear()
        self._card_cache.add((source, approval_id))

    async def has_card_data(self, source: str, approval_id: str) -> bool:
        if (source, approval_id) in self._card_cache:
            return True
        found = bool((await self._read("has_card_data", of_approval(source, approval_id)))[0][0])
        if found:
            self._remember_card(source, approval_id)
        return found

    # --- deciding ------------------------------------------------------------------------------------------
    # --- delivering ----------------------------------------------------------------------------------------
    def on_work(self, callback: Callable[[], None]) -> None:
        """One process only (a second is refused): its own worker is woken directly."""

