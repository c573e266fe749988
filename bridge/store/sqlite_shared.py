"""The SQLite store's share of the fleet-wide DingTalk state: the shared token rows (the Store protocol's
`get_token` / `claim_token_refresh` / `save_token` / `release_token_refresh`).

With SQLite one process serves, so nothing else races for the lease; the rows still matter: the token
survives a restart (no gettoken on every start) and the contract suite holds all three stores to one
behaviour. Everything goes through the writer (`_write`): these calls happen once per token lifetime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from bridge.records import SharedToken
from bridge.store import shared_sql as ss
from bridge.store.sqlite_thread import SqlConnection

__all__ = ["SQLiteShared"]

T = TypeVar("T")


class SQLiteShared:
    """Token rows on SQLite, written once against the store's `_write`."""

    async def _write(self, run: Callable[[SqlConnection], Awaitable[T]], *, inline: bool = True) -> T:
        raise NotImplementedError  # SQLiteStore queues it for its writer task

    async def get_token(self, key: str) -> SharedToken | None:
        async def run(conn: SqlConnection) -> SharedToken | None:
            rows = list(await conn.execute_fetchall(ss.GET_TOKEN, {"key": key}))
            return ss.token_row(rows[0]) if rows else None

        return await self._write(run)

    async def claim_token_refresh(self, key: str, owner: str, seen_version: int, now: datetime,
                                  lease_s: float) -> bool:
        params = ss.claim_params(key, owner, seen_version, now, lease_s)

        async def run(conn: SqlConnection) -> bool:
            return (await conn.execute(ss.CLAIM_TOKEN, params)).rowcount == 1

        return await self._write(run)

    async def save_token(self, key: str, owner: str, sealed: bytes, expires_at: datetime) -> int:
        params = ss.save_params(key, owner, sealed, expires_at)

        async def run(conn: SqlConnection) -> int:
            return int(next(iter(await conn.execute_fetchall(ss.SAVE_TOKEN, params)))[0])

        return await self._write(run)

    async def release_token_refresh(self, key: str, owner: str) -> None:
        async def run(conn: SqlConnection) -> None:
            await conn.execute(ss.RELEASE_TOKEN, {"key": key, "owner": owner})

        await self._write(run)
