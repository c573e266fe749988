"""The `st` fixture of the Store contract suites: each test runs against the in-memory store, the SQLite store
(a real file) and the PostgreSQL store (the session's database, emptied per test; skipped with a reason, or
failed under BRIDGE_REQUIRE_REAL=1, when PostgreSQL is unreachable). `sqlite_st` is the SQLite store alone,
for the tests of what only SQLite has (test_sqlite*.py name it `st` for themselves)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge import store
from bridge.store.memory import MemoryStore
from bridge.store.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def st(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[store.Store]:
    s: store.Store
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")  # skips first when PostgreSQL is absent
        from bridge.store.postgres import PostgresStore  # psycopg is an optional extra

        s = PostgresStore(url)
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "bridge.db")
    else:
        s = MemoryStore()
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def sqlite_st(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "bridge.db")
    await s.open()
    yield s
    await s.close()
