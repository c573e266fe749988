"""The writer connection: whole transactions in one trip to its thread, rolled back there on failure."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.store.sqlite_thread import WriterConnection

pytestmark = pytest.mark.integration
TX = {"begin": "BEGIN IMMEDIATE", "commit": "COMMIT", "rollback": "ROLLBACK"}


@pytest.fixture
async def conn(tmp_path: Path):
    c = await WriterConnection.connect(str(tmp_path / "t.db"), busy_timeout_s=1.0)
    await c.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    yield c
    await c.close()


async def test_transaction_commits_and_returns_the_body_value(conn: WriterConnection) -> None:
    async def body(db) -> int:
        await db.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2)])
        rows = await db.execute_fetchall("SELECT SUM(v) FROM t")
        return rows[0][0]

    assert await conn.transaction(body, **TX) == 3
    assert not conn.in_transaction
    assert [tuple(r) for r in await conn.execute_fetchall("SELECT k, v FROM t ORDER BY k")] == [("a", 1), ("b", 2)]


async def test_a_failing_body_rolls_back_everything(conn: WriterConnection) -> None:
    async def body(db) -> None:
        await db.execute("INSERT INTO t VALUES ('a', 1)")
        await db.execute("INSERT INTO t VALUES ('a', 2)")  # primary key clash

    with pytest.raises(sqlite3.IntegrityError):
        await conn.transaction(body, **TX)
    assert await conn.execute_fetchall("SELECT * FROM t") == []
    assert not conn.in_transaction and not conn.rollback_failed


async def test_a_body_that_really_suspends_is_refused_and_rolled_back(conn: WriterConnection) -> None:
    async def body(db) -> None:
        await db.execute("INSERT INTO t VALUES ('a', 1)")
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other"):
        await conn.transaction(body, **TX)
    assert await conn.execute_fetchall("SELECT * FROM t") == []
