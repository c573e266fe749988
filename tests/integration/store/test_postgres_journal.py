"""`bridge tail --follow` on PostgreSQL: journal ids come from a sequence and can commit out of order; the
follower (bridge.journal_follow) still prints every line once. The out-of-order commit is made for real: a
second connection takes an id, holds its transaction open while a later id commits, then commits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from bridge.clock import FakeClock
from bridge.journal_follow import JournalFollower
from bridge.records import NewJournal
from bridge.store import postgres_sql as pq
from bridge.store import sqlite_sql as sq
from bridge.store.postgres import PostgresStore
from tests.integration.store.test_contract import T0

pytestmark = pytest.mark.integration


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresStore]:
    st = PostgresStore(pg_url)
    await st.open()
    try:
        yield st
    finally:
        await st.close()


async def held_line(pg_url: str, message: str) -> tuple[psycopg.AsyncConnection[tuple[int]], int]:
    """A journal line inserted in a transaction left open: its id is taken, its row not yet visible."""
    conn: psycopg.AsyncConnection[tuple[int]] = await psycopg.AsyncConnection.connect(pg_url)
    [params] = sq.journal_params([NewJournal(kind="test.held", message=message)], T0)
    row = await (await conn.execute((pq.Q["insert_journal"] + " RETURNING id").encode(), params)).fetchone()
    assert row is not None
    return conn, row[0]


async def test_a_line_that_commits_after_a_later_id_is_still_followed(pg: PostgresStore, pg_url: str) -> None:
    clock = FakeClock()
    follower = JournalFollower(pg, clock, lag_s=10.0)
    slow, slow_id = await held_line(pg_url, "slow")
    try:
        await pg.append_journal([NewJournal(kind="test.fast", message="fast")], T0)
        first = await follower.poll()
        assert [e.message for e in first] == ["fast"]
        fast_id = first[0].id
        assert fast_id > slow_id
        await slow.commit()  # the lower id becomes visible only now
    finally:
        await slow.close()
    assert await pg.journal(fast_id) == []  # reading on from the last printed id would miss it
    assert [(e.id, e.message) for e in await follower.poll()] == [(slow_id, "slow")]
    assert await follower.poll() == []  # each line once


async def test_a_rolled_back_id_is_given_up_after_the_lag(pg: PostgresStore, pg_url: str) -> None:
    clock = FakeClock()
    follower = JournalFollower(pg, clock, lag_s=10.0, page=2)
    lost, _ = await held_line(pg_url, "never")
    await pg.append_journal([NewJournal(kind="test.fast", message=f"line {i}") for i in range(3)], T0)
    await lost.rollback()
    await lost.close()
    assert [e.message for e in await follower.poll()] == ["line 0", "line 1", "line 2"]  # over two pages
    assert follower.low == 0 and len(follower.pending) == 3
    clock.advance(10.0)
    assert await follower.poll() == []
    assert follower.low == max(e.id for e in await pg.journal(0)) and follower.pending == []
    await pg.append_journal([NewJournal(kind="test.fast", message="later")], T0)
    assert [e.message for e in await follower.poll()] == ["later"]
