"""SQL of the fleet-wide DingTalk state, for both SQL stores: the shared token rows (table `tokens`) and, on
PostgreSQL only, the shared rate-limit schedule (table `rate_slots`).

Kept apart from the stores' main queries: these statements serve bridge.dingtalk.tokens and
bridge.dingtalk.fleetlimit, not the approval pipeline. Statements are written once with SQLite's `:name`
parameters; `pg()` turns them into psycopg's `%(name)s`. Times are integer microseconds, as everywhere.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from bridge.records import SharedToken
from bridge.store.sqlite_sql import Row, opt_dt, to_us

__all__ = ["CLAIM_TOKEN", "GET_TOKEN", "RELEASE_TOKEN", "SAVE_TOKEN", "TAKE_SLOTS", "claim_params", "pg",
           "save_params", "token_row"]

GET_TOKEN = "SELECT key, version, sealed, expires_at, lease_owner, lease_until FROM tokens WHERE key = :key"

# The claim is one statement, so two processes racing for it cannot both win: the row is created with the
# lease, or its lease is taken only if nobody saved a newer token since the caller looked (version) and no
# other owner's lease is still running.
CLAIM_TOKEN = """
INSERT INTO tokens (key, version, lease_owner, lease_until) VALUES (:key, 0, :owner, :lease_until)
ON CONFLICT (key) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
WHERE tokens.version <= :seen
  AND (tokens.lease_owner IS NULL OR tokens.lease_owner = :owner OR tokens.lease_until <= :now)
"""

SAVE_TOKEN = """
INSERT INTO tokens (key, version, sealed, expires_at) VALUES (:key, 1, :sealed, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    version = tokens.version + 1, sealed = excluded.sealed, expires_at = excluded.expires_at,
    lease_owner = CASE WHEN tokens.lease_owner = :owner THEN NULL ELSE tokens.lease_owner END,
    lease_until = CASE WHEN tokens.lease_owner = :owner THEN NULL ELSE tokens.lease_until END
RETURNING version
"""

RELEASE_TOKEN = "UPDATE tokens SET lease_owner = NULL, lease_until = NULL WHERE key = :key AND lease_owner = :owner"

# PostgreSQL only. Reserve `span` µs of consecutive start slots on the database's clock (so the processes'
# clocks never need to agree) and answer the first slot and the database's now: a GCRA schedule, one row lock.
TAKE_SLOTS = """
INSERT INTO rate_slots AS r (key, next_at, touched_at)
SELECT :key, n.us + :span, n.us FROM (SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT) AS us) n
ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(r.next_at, excluded.touched_at) + :span,
                                touched_at = excluded.touched_at
RETURNING r.next_at - :span AS first_us, r.touched_at AS now_us
"""


def pg(sql: str) -> bytes:
    """A statement with `:name` parameters in psycopg's `%(name)s` style (no statement here uses `::`)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql).encode()


def token_row(row: Row) -> SharedToken:
    sealed = row["sealed"]
    return SharedToken(key=row["key"], version=int(row["version"]), sealed=None if sealed is None else bytes(sealed),
                       expires_at=opt_dt(row["expires_at"]), lease_owner=row["lease_owner"],
                       lease_until=opt_dt(row["lease_until"]))


def claim_params(key: str, owner: str, seen_version: int, now: datetime, lease_s: float) -> dict[str, Any]:
    return {"key": key, "owner": owner, "seen": int(seen_version), "now": to_us(now),
            "lease_until": to_us(now + timedelta(seconds=lease_s))}


def save_params(key: str, owner: str, sealed: bytes, expires_at: datetime) -> dict[str, Any]:
    return {"key": key, "owner": owner, "sealed": bytes(sealed), "expires_at": to_us(expires_at)}
