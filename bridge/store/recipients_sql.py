"""Rows of the `recipients` table (resolved mobile:/unionid: recipients) as records, for both SQL stores.

Both schemas keep times as integer microseconds, so one mapping serves SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from bridge.records import Resolution
from bridge.store.sqlite_sql import Row, from_us, to_us

__all__ = ["params", "row"]


def row(r: Row) -> Resolution:
    return Resolution(key=r["key"], userid=r["userid"], error=r["error"], resolved_at=from_us(r["resolved_at"]),
                      expires_at=from_us(r["expires_at"]))


def params(r: Resolution) -> dict[str, Any]:
    """The statement parameters of a resolution (a naive time raises here, before any SQL runs)."""
    return dict(key=r.key, userid=r.userid, error=r.error, resolved_at=to_us(r.resolved_at),
                expires_at=to_us(r.expires_at))
