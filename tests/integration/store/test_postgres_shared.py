"""PostgreSQL's shared rate schedule (`take_rate_slots`) and the fleet limiter on it: several stores (processes)
reserve slots from one row; their first slots come out exactly one spacing apart on the database's clock.
Spacings are long (100 s) and checks generous, so a loaded machine's delays of a few seconds change nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.clock import SystemClock
from bridge.dingtalk.fleetlimit import FleetLimiter
from bridge.errors import StorageUnavailable
from bridge.store.postgres import PostgresStore

pytestmark = pytest.mark.integration
SPACING = 100.0


async def test_reservations_from_several_processes_line_up_on_one_schedule(pg_url: str) -> None:
    stores = [PostgresStore(pg_url, pool_size=2) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        first, now = await stores[0].take_rate_slots("app:send", SPACING, 1)
        assert first == now and abs(now - time.time()) < 60  # idle: at once; the database's clock is wall time
        answers = await asyncio.gather(*(s.take_rate_slots("app:send", SPACING, 2) for s in stores))
        delays = sorted(slot - at for slot, at in answers)
        for n, delay in enumerate(delays):  # 1, 3 and 5 spacings out, less the time the calls took
            assert (1 + 2 * n) * SPACING - 10 < delay <= (1 + 2 * n) * SPACING
        first, now = await stores[1].take_rate_slots("app:other", SPACING, 4)
        assert first == now  # its own schedule
    finally:
        for s in stores:
            await s.close()


async def test_a_fleet_limiter_on_postgres_reserves_batches_and_survives_storage_loss(pg_url: str) -> None:
    st = PostgresStore(pg_url, pool_size=2)
    await st.open()
    limiter = FleetLimiter(st, "app:send", 100.0, SystemClock(), 1.0)
    await asyncio.gather(*(limiter.acquire() for _ in range(20)))
    assert limiter.round_trips < 20  # queued callers shared reservations
    await st.close()
    with pytest.raises(StorageUnavailable):
        await st.take_rate_slots("app:send", 0.001, 1)
    await limiter.acquire()  # storage gone: the local limiter takes over
