"""Retention on the SQLite store: the transaction body of `prune` (see `bridge.store.Store.prune`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from bridge.records import Pruned
from bridge.store.sqlite_sql import Q, dumps, fetch, to_us
from bridge.store.sqlite_thread import SqlConnection


def prune_writer(before: datetime, limit: int) -> Callable[[SqlConnection], Awaitable[Pruned]]:
    """The transaction body of `prune`: one small batch of each kind (audit rows go with their inbox rows)."""
    params = {"before": to_us(before), "limit": limit}

    async def run(conn: SqlConnection) -> Pruned:
        journal = (await conn.execute(Q["prune_journal"], params)).rowcount
        ids = dumps([row[0] for row in await fetch(conn, "prune_inbox_ids", params)])
        audit = (await conn.execute(Q["prune_audit_of"], {"ids": ids})).rowcount
        inbox = (await conn.execute(Q["prune_inbox_of"], {"ids": ids})).rowcount
        jobs = (await conn.execute(Q["prune_jobs"], params)).rowcount
        return Pruned(journal=journal, inbox=inbox, audit=audit, jobs=jobs)

    return run
