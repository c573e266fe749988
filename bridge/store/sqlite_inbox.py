"""The inbox's writes: one event, or a group commit's batch of them, each answered inserted or duplicate.

Split from bridge.store.sqlite_sql because this is the receiver's hot path, worked out for speed: the SQL
itself is in queries.sql with the rest.
"""

from __future__ import annotations

from typing import Any

from bridge.records import AddResult
from bridge.store.sqlite_sql import Q, dumps, fetch
from bridge.store.sqlite_thread import SqlConnection

__all__ = ["insert_many", "insert_one"]


async def insert_one(conn: SqlConnection, params: dict[str, Any]) -> AddResult:
    """One event: insert it, or count it as a duplicate of the stored row."""
    inserted = await fetch(conn, "insert_event", params)
    if inserted:
        return AddResult(inserted=True, inbox_id=inserted[0][0])
    [row] = await fetch(conn, "count_duplicate", {"source": params["source"], "event_id": params["event_id"]})
    return AddResult(inserted=False, inbox_id=row[0])


async def insert_many(conn: SqlConnection, batch: list[dict[str, Any]]) -> list[AddResult]:
    """A group commit's events in a fixed number of statements, whatever the batch size. Inside BEGIN IMMEDIATE
    nobody else inserts, so an id above the previous maximum is a row this batch created: its first
    occurrence inserted it, later ones are duplicates.

    Nearly every batch is all new events: then the rows took the ids above the previous maximum one after
    another, in order (SQLite gives a new row the largest rowid plus one), which the count of rows inserted
    and the last id inserted confirm, and no lookup is needed. Otherwise (a duplicate in the batch) each
    event's id is looked up by its key."""
    [(max_before,)] = await fetch(conn, "max_inbox_id")
    added = (await conn.executemany(Q["insert_events"], batch)).rowcount
    if added == len(batch):
        [(last,)] = await fetch(conn, "last_insert_rowid")
        if last == max_before + added:
            return [AddResult(inserted=True, inbox_id=max_before + 1 + pos) for pos in range(added)]
    keys = dumps([[p["source"], p["event_id"]] for p in batch])
    ids = {row["pos"]: row["id"] for row in await fetch(conn, "inbox_ids_for_keys", {"keys": keys})}
    results: list[AddResult] = []
    seen: set[int] = set()
    for pos in range(len(batch)):
        inbox_id = ids[pos]
        results.append(AddResult(inserted=inbox_id > max_before and inbox_id not in seen, inbox_id=inbox_id))
        seen.add(inbox_id)
    await conn.executemany(Q["count_duplicate_by_id"], [{"id": r.inbox_id} for r in results if not r.inserted])
    return results
