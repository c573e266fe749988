"""What waits in the SQLite writer's queue, and how several writes share one commit.

Split from bridge.store.sqlite so the writer task there reads as a loop over its queue. Two kinds of item wait:
an `Insert` (one `add_event`: its row's parameters) and an `Op` (any other write: a transaction body). The
writer commits consecutive inserts as one batch (bridge.store.sqlite_inbox) and consecutive ops as one group
(`group_body` below); each caller's future is settled only after the commit that holds its write.

Why ops are grouped: a commit writes every page the transaction changed to the WAL, and a decision changes
pages of six tables and their indexes (approvals, notices, jobs, audit, journal, inbox). Deciders and job
runners work concurrently, so several such writes are usually queued at once; committed one by one, each
wrote the same index and table pages again, and BEGIN / COMMIT with the file checks around them were a
fifth of the deciding process's time. In one group they are written once per commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge import records as store
from bridge.store.sqlite_thread import SqlConnection

__all__ = ["GROUP_MAX", "Insert", "Op", "Outcome", "group_body", "refused", "settle", "storage_fault"]

GROUP_MAX = 64  # ops per group commit: bounds how long one transaction holds the writer
_SAVEPOINT = "SAVEPOINT bridge_op"
_RELEASE = "RELEASE bridge_op"
_ROLLBACK_TO = "ROLLBACK TO bridge_op"


@dataclass(slots=True)
class Insert:
    params: dict[str, Any]
    future: asyncio.Future[store.AddResult]


@dataclass(slots=True)
class Op:
    run: Callable[[SqlConnection], Awaitable[Any]]
    future: asyncio.Future[Any]
    inline: bool


@dataclass(slots=True)
class Outcome:
    """One op's answer inside a group: its value, or the error that undid its writes (and only its)."""

    value: Any = None
    error: BaseException | None = None


def settle(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller gave up (cancelled); the write itself stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def refused(exc: sqlite3.IntegrityError) -> ValueError:
    """A constraint the write broke, as the store reports it to its caller."""
    return ValueError(f"the database refused the write: {exc}")


def storage_fault(exc: BaseException) -> bool:
    """A fault of the database itself (locked, full, I/O, read-only), which the store answers
    StorageUnavailable, as against a broken constraint (`refused`) or a mistake in the SQL."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError)


def _fails_the_group(exc: BaseException) -> bool:
    """A storage fault: SQLite may have ended the transaction, so nothing in the group can be committed. A
    broken constraint or a refusal of the body's own (an event already decided, a row not found) undoes that
    op alone. Cancellation and the like are never swallowed."""
    return storage_fault(exc) or not isinstance(exc, Exception)


def group_body(ops: Sequence[Op]) -> Callable[[SqlConnection], Awaitable[list[Outcome]]]:
    """One transaction body running each op in turn inside its own savepoint: the group behaves as the ops
    committed one after another in queue order (each sees the writes of those before it), except that a
    fault of the database fails the whole group (the caller answers every op StorageUnavailable)."""

    async def run(conn: SqlConnection) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for op in ops:
            await conn.execute(_SAVEPOINT)
            try:
                value = await op.run(conn)
            except BaseException as exc:
                if _fails_the_group(exc):
                    raise
                await conn.execute(_ROLLBACK_TO)
                await conn.execute(_RELEASE)
                outcomes.append(Outcome(error=refused(exc) if isinstance(exc, sqlite3.IntegrityError) else exc))
                continue
            await conn.execute(_RELEASE)
            outcomes.append(Outcome(value=value))
        return outcomes

    return run
