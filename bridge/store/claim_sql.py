"""The claim fair by kind (`Store.claim_jobs` with `kinds`) in SQL, for SQLite and PostgreSQL.

The same rules as `claim_jobs` (due, pending or lease passed, head of its key), with one branch per job kind, each
limited to its kind's number (`n_<kind>`, 0 for a kind not asked for) and walking the index `jobs_kind_due`
(kind, ..., run_at, id) in order, so a backlog of 100k sends costs the send branch its few rows and the update
branch nothing: a claim reads about as many rows as it takes. The branches' rows are merged oldest first and cut
to `limit`. The kinds are the fixed `JobKind` values, written into the text; the numbers are parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.records import JobKind

__all__ = ["PG_CLAIM_BY_KIND", "SQLITE_CLAIM_BY_KIND", "kind_limits"]

_KINDS = tuple(JobKind)
_HEAD = "(c.lock_key IS NULL OR c.id = (SELECT MIN(h.id) FROM jobs AS h WHERE h.lock_key = c.lock_key " \
        "AND h.state != 'done'))"


def kind_limits(kinds: Mapping[str, int]) -> dict[str, Any]:
    """The `n_<kind>` parameters of a claim by kind (unknown kinds are never claimed)."""
    return {f"n_{k.value}": max(0, int(kinds.get(k.value, 0))) for k in _KINDS}


def _sqlite_part(kind: JobKind, state: str) -> str:
    # `c.state != 'done'` repeats the partial index's condition, so SQLite may use it
    return (f"SELECT id, run_at FROM (SELECT c.id, c.run_at FROM jobs AS c WHERE c.kind = '{kind.value}' "
            f"AND c.state != 'done' AND {state} AND c.run_at <= :now AND {_HEAD} "
            f"ORDER BY c.run_at, c.id LIMIT :n_{kind.value})")


def _sqlite_branch(kind: JobKind) -> str:
    pending = _sqlite_part(kind, "c.state = 'pending'")
    expired = _sqlite_part(kind, "c.state = 'running' AND c.lease_until <= :now")
    return f"SELECT id, run_at FROM ({pending} UNION ALL {expired} ORDER BY run_at, id LIMIT :n_{kind.value})"


SQLITE_CLAIM_BY_KIND = (
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = :lease_until, updated_at = :now "
    "WHERE id IN (SELECT id FROM (" + " UNION ALL ".join(map(_sqlite_branch, _KINDS))
    + ") ORDER BY run_at, id LIMIT :limit) RETURNING *"
)


def _pg_branch(kind: JobKind) -> str:
    # each branch locks what it picks (FOR UPDATE is not allowed over a UNION); rows a branch locked but the final
    # cut to `limit` leaves out stay unclaimed, skipped by other claimers only until this one statement commits
    return (f"p_{kind.value} AS MATERIALIZED (SELECT c.id, c.run_at FROM jobs AS c WHERE c.kind = '{kind.value}' "
            f"AND c.state <> 'done' AND (c.state = 'pending' OR (c.state = 'running' AND c.lease_until <= %(now)s)) "
            f"AND c.run_at <= %(now)s AND {_HEAD.replace('!=', '<>')} ORDER BY c.run_at, c.id "
            f"LIMIT %(n_{kind.value})s FOR UPDATE OF c SKIP LOCKED)")


PG_CLAIM_BY_KIND = (
    "WITH " + ", ".join(map(_pg_branch, _KINDS))
    + ", picked AS MATERIALIZED (SELECT id FROM ("
    + " UNION ALL ".join(f"SELECT id, run_at FROM p_{k.value}" for k in _KINDS)
    + ") AS u ORDER BY run_at, id LIMIT %(limit)s) "
    "UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, lease_until = %(lease_until)s, "
    "updated_at = %(now)s FROM picked WHERE jobs.id = picked.id RETURNING jobs.*"
)
