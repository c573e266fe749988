"""Shared test set-up.

aioresponses 0.7.9 builds `aiohttp.ClientResponse` without the `stream_writer` argument that aiohttp 3.14
requires, so every mocked request fails with a TypeError. This shim supplies it; on older aiohttp it does
nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from unittest.mock import Mock

import aiohttp
import aioresponses.core as _aioresponses_core
import pytest

from bridge.clock import FakeClock
from tests.pg import PgDatabase

if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:

    class _CompatClientResponse(aiohttp.ClientResponse):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            kwargs.setdefault("stream_writer", Mock(output_size=0))
            super().__init__(*args, **kwargs)

    _aioresponses_core.ClientResponse = _CompatClientResponse  # type: ignore[misc]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    """The session's PostgreSQL database (created lazily by `.get()`, dropped at the end)."""
    db = PgDatabase()
    yield db
    db.drop()


@pytest.fixture
def pg_url(pg_database: PgDatabase) -> str:
    """A PostgreSQL URL whose bridge tables are empty (skips when PostgreSQL is unreachable)."""
    url = pg_database.get()
    pg_database.reset()
    return url
