"""The PostgreSQL store's share of the fleet-wide DingTalk state: the shared token rows and the shared
rate-limit schedule, as a base class of `PostgresStore` (kept apart from its pipeline queries).

Tokens: see bridge.dingtalk.tokens; every statement is one atomic upsert or update (shared_sql), so two
processes racing for the refresh lease cannot both win. Rate slots: `take_rate_slots` is one
statement, one round trip (its BEGIN and COMMIT pipelined with it; a BEGIN/COMMIT waited for would triple its
cost), and not durable (the COMMIT does not wait for the WAL flush: a database crash may move the schedule back
by the last few slots, while the processes fall back to their local limiters anyway): the row lock
serialises the fleet's reservations for one endpoint, and the answer is a delay on the database's clock, so
processes on machines whose clocks disagree still share one schedule (each maps it onto its own clock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import DictRow

from bridge.errors import StorageUnavailable
from bridge.records import SharedToken
from bridge.store import postgres_sql as pq
from bridge.store import shared_sql as ss

__all__ = ["PostgresShared"]

Conn = psycopg.AsyncConnection[DictRow]
_GET, _CLAIM, _SAVE, _RELEASE, _TAKE = map(ss.pg, (ss.GET_TOKEN, ss.CLAIM_TOKEN, ss.SAVE_TOKEN, ss.RELEASE_TOKEN,
                                                    ss.TAKE_SLOTS))


class PostgresShared:
    """Token rows and rate slots, written against the store's `_write` (one transaction) and `_ready` (pool)."""

    async def _write(self, body: Callable[[Conn], Awaitable[Any]]) -> Any:
        raise NotImplementedError  # PostgresStore runs it in one transaction

    def _ready(self) -> psycopg_pool.AsyncConnectionPool[Conn]:
        raise NotImplementedError

    async def get_token(self, key: str) -> SharedToken | None:
        async def run(conn: Conn) -> SharedToken | None:
            rows = await (await conn.execute(_GET, {"key": key})).fetchall()
            return ss.token_row(rows[0]) if rows else None

        found: SharedToken | None = await self._write(run)
        return found

    async def claim_token_refresh(self, key: str, owner: str, seen_version: int, now: datetime,
                                  lease_s: float) -> bool:
        params = ss.claim_params(key, owner, seen_version, now, lease_s)

        async def run(conn: Conn) -> bool:
            return (await conn.execute(_CLAIM, params)).rowcount == 1

        granted: bool = await self._write(run)
        return granted

    async def save_token(self, key: str, owner: str, sealed: bytes, expires_at: datetime) -> int:
        params = ss.save_params(key, owner, sealed, expires_at)

        async def run(conn: Conn) -> int:
            rows = await (await conn.execute(_SAVE, params)).fetchall()
            return int(rows[0]["version"])

        version: int = await self._write(run)
        return version

    async def release_token_refresh(self, key: str, owner: str) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(_RELEASE, {"key": key, "owner": owner})

        await self._write(run)

    async def take_rate_slots(self, key: str, spacing_s: float, count: int) -> tuple[float, float]:
        """Reserve `count` consecutive start slots, `spacing_s` apart, on the fleet's schedule for `key` (an app
        and endpoint); returns (the first slot, the database's now), in seconds on the database's clock (the
        first slot is now when the schedule is idle)."""
        span = max(1, round(spacing_s * 1_000_000)) * max(1, int(count))

        async def run(conn: Conn) -> pq.After:
            cur = await conn.execute(_TAKE, {"key": key, "span": span})

            async def read() -> list[DictRow]:
                return await cur.fetchall()

            return read

        try:
            async with self._ready().connection() as conn:
                rows: list[DictRow] = await pq.pipelined(conn, run, durable=False)
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            raise StorageUnavailable(f"storage unavailable: {exc}") from None
        return int(rows[0]["first_us"]) / 1_000_000, int(rows[0]["now_us"]) / 1_000_000
