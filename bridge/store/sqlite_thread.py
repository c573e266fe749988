"""The SQLite writer connection: one sqlite3 connection on one dedicated thread, whole transactions per hop.

Why not aiosqlite for the writer: aiosqlite sends every statement to its thread separately, and each answer
has to wait for the event loop to come round again. A decision is about ten statements (approval, notices,
jobs, audit, journal, inbox), so under webhook load every transaction held the single writer for ten loop
iterations, and webhooks queued behind it. Here `transaction(run)` runs BEGIN, the body and COMMIT on the
writer thread in one hop: the body is the same `async def run(conn)` the store's SQL module writes for any
connection, driven to completion synchronously against a facade whose methods never suspend.

Reads stay on aiosqlite (a separate connection; WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from queue import SimpleQueue
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any]


class Changed(Protocol):
    """What the transaction bodies read from a cursor: how many rows a statement changed."""

    @property
    def rowcount(self) -> int: ...


class SqlConnection(Protocol):
    """The statement methods the store's SQL (`bridge.store.sqlite_sql`) runs on: an aiosqlite connection
    (reads, migrations), the writer connection below and its in-transaction facade all have them."""

    def execute(self, sql: str, params: Params = ..., /) -> Awaitable[Changed]: ...
    def executemany(self, sql: str, seq: Iterable[Params], /) -> Awaitable[Changed]: ...
    def execute_fetchall(self, sql: str, params: Params = ..., /) -> Awaitable[Iterable[sqlite3.Row]]: ...
    @property
    def in_transaction(self) -> bool: ...


class _Immediate:
    """The statement methods of an aiosqlite connection, executed at once on the calling (writer) thread."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    async def executemany(self, sql: str, seq: Iterable[Params]) -> sqlite3.Cursor:
        return self._db.executemany(sql, seq)

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction


def _drive(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never really suspends to its end, synchronously."""
    coro = awaitable.__await__()
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a writer transaction body awaited something other than the connection")


class _Thread:
    """One thread that runs the calls handed to it in order, each answered on the caller's event loop.

    Why not a ThreadPoolExecutor: `run_in_executor` builds a concurrent Future (a Condition and an RLock), takes
    the pool's locks and semaphore and chains two futures with callbacks for every call; under webhook load that
    hand-off was ~7% of the event loop's samples (one per group commit). Here a call is one SimpleQueue put and
    one `call_soon_threadsafe` back. A call still runs to its end once started (as in a pool); one whose caller
    gave up (cancelled) before it started is skipped."""

    def __init__(self, name: str) -> None:
        self._calls: SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((future, fn, args))
        return await future

    def stop(self) -> None:
        self._calls.put(None)  # after the calls already queued

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, fn, args = item
            if future.cancelled():
                continue
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the caller, whatever it is
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                future.get_loop().call_soon_threadsafe(_answer, future, result, error)


def _answer(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WriterConnection:
    """A sqlite3 connection confined to its own thread, with the aiosqlite-style methods the store uses."""

    def __init__(self, thread: _Thread, db: sqlite3.Connection) -> None:
        self._thread = thread
        self._db = db
        self._facade = _Immediate(db)
        self.rollback_failed = False

    @classmethod
    async def connect(cls, path: str, *, busy_timeout_s: float, uri: bool = False) -> WriterConnection:
        thread = _Thread("bridge-sqlite-writer")

        def open_db() -> sqlite3.Connection:
            db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s, check_same_thread=False, uri=uri)
            db.row_factory = sqlite3.Row
            return db

        try:
            db = await thread.call(open_db)
        except BaseException:
            thread.stop()
            raise
        return cls(thread, db)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._thread.call(fn, *args)

    async def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return await self._call(self._db.execute, sql, params)

    async def executemany(self, sql: str, seq: Iterable[Params]) -> sqlite3.Cursor:
        return await self._call(self._db.executemany, sql, list(seq))

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._call(lambda: self._db.execute(sql, params).fetchall())

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    async def transaction(
        self, run: Callable[[SqlConnection], Awaitable[T]], *, begin: str, commit: str, rollback: str,
        inline: bool = False,
    ) -> T:
        """BEGIN, `run(conn)`, COMMIT in one trip to the writer thread; on any failure, roll back there too
        (`rollback_failed` tells the caller the connection should be replaced).

        `inline` runs the same transaction on the calling thread instead, for a short one that cannot wait
        on the disk (no fsync at commit, no checkpoint): the hand-off to the thread and back, and the GIL
        passed to and fro while the thread works, cost more than the insert itself. The caller must be the
        only user of the connection at that moment (the store's writer task is)."""

        def body() -> T:
            self._db.execute(begin)
            try:
                value = _drive(run(self._facade))
                self._db.execute(commit)
                return value
            except BaseException:
                if self._db.in_transaction:
                    try:
                        self._db.execute(rollback)
                    except sqlite3.Error:
                        self.rollback_failed = True
                raise

        return body() if inline else await self._call(body)

    async def close(self) -> None:
        try:
            await self._call(self._db.close)
        finally:
            self._thread.stop()
