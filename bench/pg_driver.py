"""Which PostgreSQL driver for bridge: asyncpg or psycopg 3 with psycopg_pool, measured on bridge's two hot paths.

- insert: 32 concurrent tasks, each inserting one inbox-like row per transaction (a webhook's durable write).
- claim: one task claiming 10 jobs at a time with FOR UPDATE SKIP LOCKED and finishing each (the worker's loop).

Run: python bench/pg_driver.py [postgresql://postgres@127.0.0.1:5432/postgres]. It creates and drops its own
database. Prints rows/s for each driver and the ratio; the choice and the figures are in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import psycopg_pool

SCHEMA = """
CREATE TABLE inbox (id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, event_id TEXT NOT NULL, body TEXT NOT NULL,
                    UNIQUE (source, event_id));
CREATE TABLE jobs (id BIGSERIAL PRIMARY KEY, lock_key TEXT, state TEXT NOT NULL, run_at BIGINT NOT NULL,
                   lease_until BIGINT);
CREATE INDEX jobs_due ON jobs (state, run_at, id);
"""
CLAIM = """
UPDATE jobs SET state = 'running', lease_until = {p1} WHERE id IN (
    SELECT id FROM jobs WHERE state = 'pending' AND run_at <= {p2} ORDER BY run_at, id LIMIT 10
    FOR UPDATE SKIP LOCKED) RETURNING id
"""
INSERTS, CONCURRENCY, JOBS = 4000, 32, 3000
BODY = "x" * 600


async def timed(label: str, n: int, run: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await run()
    rate = n / (time.perf_counter() - started)
    print(f"  {label:<28} {rate:>9,.0f} /s")
    return rate


async def bench_asyncpg(url: str) -> tuple[float, float]:
    pool = await asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    await pool.execute("TRUNCATE inbox, jobs")
    await pool.execute("INSERT INTO jobs (state, run_at) SELECT 'pending', 0 FROM generate_series(1, $1)", JOBS)

    async def inserts() -> None:
        async def one(i: int) -> None:
            await pool.execute("INSERT INTO inbox (source, event_id, body) VALUES ($1, $2, $3) "
                               "ON CONFLICT DO NOTHING RETURNING id", "erp", f"a{i}", BODY)

        for start in range(0, INSERTS, CONCURRENCY):
            await asyncio.gather(*(one(i) for i in range(start, start + CONCURRENCY)))

    async def claims() -> None:
        sql = CLAIM.format(p1="$1", p2="$2")
        async with pool.acquire() as conn:
            while ids := await conn.fetch(sql, 1, 1):
                await conn.executemany("UPDATE jobs SET state = 'done' WHERE id = $1", [(r[0],) for r in ids])

    print("asyncpg")
    rates = await timed("insert (32 concurrent)", INSERTS, inserts), await timed("claim + finish", JOBS, claims)
    await pool.close()
    return rates


async def bench_psycopg(url: str) -> tuple[float, float]:
    pool = psycopg_pool.AsyncConnectionPool(url, min_size=CONCURRENCY, max_size=CONCURRENCY, open=False)
    await pool.open(wait=True)
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE inbox, jobs")
        await conn.execute("INSERT INTO jobs (state, run_at) SELECT 'pending', 0 FROM generate_series(1, %s)",
                           (JOBS,))

    async def inserts() -> None:
        async def one(i: int) -> None:
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO inbox (source, event_id, body) VALUES (%s, %s, %s) "
                                   "ON CONFLICT DO NOTHING RETURNING id", ("erp", f"p{i}", BODY))

        for start in range(0, INSERTS, CONCURRENCY):
            await asyncio.gather(*(one(i) for i in range(start, start + CONCURRENCY)))

    async def claims() -> None:
        sql = CLAIM.format(p1="%s", p2="%s")
        async with pool.connection() as conn:
            while True:
                cur = await conn.execute(sql, (1, 1))
                ids = await cur.fetchall()
                await conn.commit()
                if not ids:
                    return
                async with conn.cursor() as c:
                    await c.executemany("UPDATE jobs SET state = 'done' WHERE id = %s", [(r[0],) for r in ids])
                await conn.commit()

    print("psycopg 3 + psycopg_pool")
    rates = await timed("insert (32 concurrent)", INSERTS, inserts), await timed("claim + finish", JOBS, claims)
    await pool.close()
    return rates


async def main(admin_url: str) -> None:
    name = f"bridge_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        conn = await asyncpg.connect(url)
        await conn.execute(SCHEMA)
        await conn.close()
        a_ins, a_claim = await bench_asyncpg(url)
        p_ins, p_claim = await bench_psycopg(url)
        print(f"asyncpg / psycopg: insert x{a_ins / p_ins:.2f}, claim x{a_claim / p_claim:.2f}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"))
