"""Webhooks first (bridge.priority): the worker holds off while webhooks keep arriving, never longer than
`[worker] intake_priority_s` in a row, and not at all for a lone webhook or with the setting at 0."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bridge import worker
from bridge.clock import FakeClock
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.priority import QUIET_S, IntakeFirst
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config


def test_a_lone_webhook_does_not_hold_the_worker() -> None:
    gate = IntakeFirst(2.0)
    assert gate.wait_s(100.0) == 0.0
    gate.arrived(100.0)
    assert gate.wait_s(100.001) == 0.0  # one arrival is not a flood
    gate.arrived(100.5)  # the next one long after: still not
    assert gate.wait_s(100.501) == 0.0


def test_close_arrivals_hold_the_worker_until_they_pause() -> None:
    gate = IntakeFirst(2.0)
    gate.arrived(100.0)
    gate.arrived(100.01)
    assert gate.wait_s(100.02) == pytest.approx(QUIET_S - 0.01)  # until the quiet window after the last ends
    assert gate.wait_s(100.01 + QUIET_S + 1e-9) == 0.0  # they paused: go


def test_a_flood_that_never_pauses_still_lets_one_pass_through_per_max_defer() -> None:
    gate = IntakeFirst(2.0)
    now, passes = 100.0, []
    while now < 107.0:
        gate.arrived(now)  # a webhook every 10 ms, without end
        gate.arrived(now + 0.005)
        if gate.wait_s(now + 0.006) == 0.0:
            passes.append(round(now - 100.0, 2))
        now += 0.01
    assert passes == [2.0, 4.01, 6.02]  # one pass each 2 s (plus the step in which it ran)


def test_max_defer_zero_never_holds() -> None:
    gate = IntakeFirst(0.0)
    gate.arrived(100.0)
    gate.arrived(100.001)
    assert gate.wait_s(100.002) == 0.0


async def _decided_after(clock: FakeClock, intake_priority_s: float) -> float:
    """Fake seconds from the start of an endless webhook flood to the card of the event stored before it."""
    st = MemoryStore()
    await st.open()
    fake = FakeDingTalk()
    cfg = make_config()
    cfg = replace(cfg, worker=replace(cfg.worker, intake_priority_s=intake_priority_s))
    w = worker.Worker(st, fake, cfg, clock)
    await st.add_event(event(Status.PENDING, n=2), b"{}", clock.now())
    flooding = True

    async def flood() -> None:
        while flooding:
            w.webhook_stored()  # what the receiver calls for each stored webhook
            await asyncio.sleep(0)

    flooder = asyncio.create_task(flood())
    await asyncio.sleep(0)
    started = clock.monotonic()
    running = asyncio.create_task(w.run())
    try:
        for _ in range(100_000):
            if fake.named("send"):
                break
            await asyncio.sleep(0)
        assert fake.named("send"), "the worker never sent the card"
        return clock.monotonic() - started
    finally:
        flooding = False
        w.stop()
        await asyncio.gather(flooder, running)
        await st.close()


async def test_the_worker_decides_during_a_flood_once_per_intake_priority_s(clock: FakeClock) -> None:
    waited = await _decided_after(clock, 2.0)
    assert 2.0 <= waited <= 2.0 + QUIET_S
    assert sum(clock.sleeps) == pytest.approx(waited)  # it waited on the injected clock, nothing else


async def test_with_intake_priority_off_the_worker_decides_at_once(clock: FakeClock) -> None:
    assert await _decided_after(clock, 0.0) == 0.0
    assert clock.sleeps == []
