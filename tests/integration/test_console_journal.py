"""The console's live journal (`/console/journal.json`) follows the journal as `bridge tail --follow` does
(bridge.journal_follow): on PostgreSQL a line that commits after a later id is still sent, once. The follower's
state travels in a cursor, so each request may be answered by any replica; the cursor is checked like any input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.console.pages import JOURNAL_FIRST, JOURNAL_PAGE
from bridge.journal_follow import MAX_PENDING, BadCursor, JournalFollower
from bridge.records import NewJournal
from bridge.store.memory import MemoryStore
from tests.integration.store.test_postgres_journal import held_line
from tests.integration.test_admin import AUTH, Harness, make_harness

pytestmark = pytest.mark.integration


async def follow(h: Harness, cursor: str | None = None) -> dict[str, Any]:
    path = "/console/journal.json" + (f"?cursor={cursor}" if cursor is not None else "")
    resp = await h.http.get(path, headers=AUTH)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


@pytest.fixture
async def pg_harness(pg_url: str) -> AsyncIterator[Harness]:
    from bridge.store.postgres import PostgresStore

    async with make_harness(st=PostgresStore(pg_url)) as h:
        yield h


async def test_a_line_that_commits_after_a_later_id_still_reaches_the_console(pg_harness: Harness,
                                                                              pg_url: str) -> None:
    h = pg_harness
    await h.store.append_journal([NewJournal(kind="test.before", message="before")], h.clock.now())
    slow, slow_id = await held_line(pg_url, "slow")
    try:
        await h.store.append_journal([NewJournal(kind="test.fast", message="fast")], h.clock.now())
        first = await follow(h)
        assert [line["message"] for line in first["lines"]] == ["before", "fast"]
        fast_id = first["lines"][-1]["id"]
        assert fast_id > slow_id and first["last"] == fast_id
        await slow.commit()  # the lower id is visible only now
    finally:
        await slow.close()
    resp = await h.http.get(f"/console/journal.json?after={fast_id}", headers=AUTH)
    assert (await resp.json())["lines"] == []  # reading on from the last id shown would miss it
    second = await follow(h, first["cursor"])
    assert [(line["id"], line["message"]) for line in second["lines"]] == [(slow_id, "slow")]
    third = await follow(h, second["cursor"])
    assert third["lines"] == []  # each line once
    h.clock.advance(10.0)  # past the lag: everything shown is final, the cursor shrinks to its mark
    fourth = await follow(h, third["cursor"])
    assert fourth["lines"] == [] and fourth["cursor"] == str(fast_id)
    await h.store.append_journal([NewJournal(kind="test.later", message="later")], h.clock.now())
    assert [line["message"] for line in (await follow(h, fourth["cursor"]))["lines"]] == ["later"]


async def test_the_console_opens_with_the_last_lines_then_pages_a_burst() -> None:
    async with make_harness() as h:
        await h.store.append_journal([NewJournal(kind="test.old", message=f"old {i}") for i in range(150)],
                                     h.clock.now())
        first = await follow(h)
        assert len(first["lines"]) == JOURNAL_FIRST and first["lines"][0]["message"] == "old 50"
        assert first["more"] is False
        await h.store.append_journal([NewJournal(kind="test.burst", message=f"new {i}")
                                      for i in range(2 * JOURNAL_PAGE + 50)], h.clock.now())
        got, cursor, answers = [], first["cursor"], []
        while True:
            data = await follow(h, cursor)
            got += [line["message"] for line in data["lines"]]
            answers.append((len(data["lines"]), data["more"]))
            cursor = data["cursor"]
            if not data["more"]:
                break
        assert answers == [(JOURNAL_PAGE, True), (JOURNAL_PAGE, True), (50, False)]
        assert got == [f"new {i}" for i in range(2 * JOURNAL_PAGE + 50)]
        assert len(cursor) < 60  # runs of ids, not a list of them


@pytest.mark.parametrize("cursor", ["x", "5~abc", "5~1.0:3", "5~1.0:9-7", f"0~1.0:1-{MAX_PENDING + 1}", "5~"])
async def test_a_bad_cursor_is_a_400_naming_it(cursor: str) -> None:
    async with make_harness() as h:
        resp = await h.http.get("/console/journal.json", params={"cursor": cursor}, headers=AUTH)
        answer = await resp.json()
        assert resp.status == 400 and answer["error"] == "bad_request" and "'cursor'" in answer["message"]


async def test_a_cursor_resumes_the_follower_it_came_from() -> None:
    st, clock = MemoryStore(), FakeClock()
    await st.append_journal([NewJournal(kind="k", message=str(i)) for i in range(5)], clock.now())
    follower = JournalFollower(st, clock, timer=clock.monotonic)
    assert len(await follower.poll(limit=3)) == 3 and follower.more
    again = JournalFollower.resume(st, clock, follower.cursor(), timer=clock.monotonic)
    assert (again.low, again.pending) == (0, [1, 2, 3])
    assert [e.message for e in await again.poll()] == ["3", "4"] and not again.more
    clock.advance(10.0)
    assert await again.poll() == [] and again.cursor() == "5"
    with pytest.raises(BadCursor):
        JournalFollower.resume(st, clock, "5~1.0:2", timer=clock.monotonic)  # an id below its own mark


class CountingReader:
    """A store whose `journal` reads are counted, row by row."""

    def __init__(self, st: MemoryStore) -> None:
        self.st, self.rows = st, 0

    async def journal(self, after_id: int = 0, *, source: str | None = None, limit: int = 500) -> list[Any]:
        found = await self.st.journal(after_id, source=source, limit=limit)
        self.rows += len(found)
        return found


async def test_a_poll_rereads_only_from_a_hole() -> None:
    """Without a hole below the newest printed id, a poll reads only the new lines; with one (an id not yet
    visible), it reads again from the hole, so a late commit there is still found."""
    st, clock = MemoryStore(), FakeClock()
    await st.append_journal([NewJournal(kind="k")] * 300, clock.now())
    reader = CountingReader(st)
    follower = JournalFollower(reader, clock)
    assert len(await follower.poll()) == 300 and reader.rows == 300
    await st.append_journal([NewJournal(kind="k")] * 5, clock.now())
    reader.rows = 0
    assert len(await follower.poll()) == 5 and reader.rows == 5  # not the 300 printed within the lag
    late = st.journal_entries.pop(100)  # id 101 "not yet committed": a hole below printed ids
    again = JournalFollower(reader, clock)
    assert len(await again.poll()) == 304
    st.journal_entries.insert(100, late)  # it commits
    reader.rows = 0
    assert [e.id for e in await again.poll()] == [late.id] and reader.rows == 205  # from the hole on
    reader.rows = 0
    assert await again.poll() == [] and reader.rows == 0
