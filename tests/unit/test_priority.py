"""Webhooks first (bridge.priority): the worker holds off while webhooks keep arriving and the process keeps
a core busy without it, never longer than `[worker] intake_priority_s` in a row; not at all for a lone
webhook, for webhooks that leave the CPU room, or with the setting at 0."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bridge import worker
from bridge.clock import FakeClock
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.metrics import Metrics
from bridge.priority import BUSY_CPU_SHARE, PROBE_S, QUIET_S, IntakeFirst
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config

BUSY, ROOM = 1.0, BUSY_CPU_SHARE - 0.2  # shares of a core the process used while the worker waited


def test_a_lone_webhook_does_not_hold_the_worker() -> None:
    gate = IntakeFirst(2.0)
    assert not gate.arriving(100.0) and gate.wait_s(100.0, BUSY) == 0.0
    gate.arrived(100.0)
    assert not gate.arriving(100.001) and gate.wait_s(100.001, BUSY) == 0.0
    gate.arrived(100.5)  # the next one long after: still no flood
    assert gate.wait_s(100.501, BUSY) == 0.0


def test_arriving_webhooks_hold_the_worker_only_while_the_cpu_is_busy() -> None:
    gate = IntakeFirst(2.0)
    gate.arrived(100.0)
    gate.arrived(100.01)
    assert gate.arriving(100.02)
    assert gate.wait_s(100.02, ROOM) == 0.0  # the CPU has room for both: go
    assert gate.wait_s(100.02, BUSY) == QUIET_S
    assert gate.wait_s(100.01 + QUIET_S + 1e-9, BUSY) == 0.0  # none arrived for a quiet window: go


def test_a_flood_that_never_pauses_still_lets_one_pass_through_per_max_defer() -> None:
    gate = IntakeFirst(2.0)
    now, passes = 100.0, []
    while now < 107.0:
        gate.arrived(now)  # a webhook every 5 ms, without end, and the CPU always busy
        gate.arrived(now + 0.005)
        if gate.wait_s(now + 0.006, BUSY) == 0.0:
            passes.append(round(now - 100.0, 2))
        now += 0.01
    assert passes == [2.0, 4.01, 6.02]  # one pass each 2 s (plus the step in which it ran)


def test_max_defer_zero_never_holds() -> None:
    gate = IntakeFirst(0.0)
    gate.arrived(100.0)
    gate.arrived(100.001)
    assert not gate.arriving(100.002) and gate.wait_s(100.002, BUSY) == 0.0


async def _worker_sleeps(clock: FakeClock, intake_priority_s: float, cpu_share: float) -> float:
    """The fake seconds the worker slept before it sent the card of an event stored before an endless flood
    of webhooks, while the process used `cpu_share` of a core."""
    st = MemoryStore()
    await st.open()
    fake = FakeDingTalk()
    cfg = make_config()
    cfg = replace(cfg, worker=replace(cfg.worker, intake_priority_s=intake_priority_s))
    intake = IntakeFirst(intake_priority_s)
    clock.cpu_share = cpu_share
    metrics = Metrics()
    w = worker.Worker(st, fake, cfg, clock, intake=intake, observer=metrics)
    await st.add_event(event(Status.PENDING, n=2), b"{}", clock.now())
    flooding = True

    async def flood() -> None:  # what the receiver reports for each webhook
        while flooding:
            intake.arrived(clock.monotonic())
            await asyncio.sleep(0)

    flooder = asyncio.create_task(flood())
    await asyncio.sleep(0)
    running = asyncio.create_task(w.run())
    try:
        for _ in range(100_000):
            if fake.named("send"):
                break
            await asyncio.sleep(0)
        assert fake.named("send"), "the worker never sent the card"
        slept = sum(clock.sleeps)  # only the worker sleeps on the clock here
        assert metrics.registry.get_sample_value("bridge_worker_held_off_seconds_total") == pytest.approx(slept)
        return slept
    finally:
        flooding = False
        w.stop()
        await asyncio.gather(flooder, running)
        await st.close()


async def test_the_worker_decides_during_a_flood_once_per_intake_priority_s(clock: FakeClock) -> None:
    slept = await _worker_sleeps(clock, 2.0, cpu_share=BUSY)
    assert PROBE_S + 2.0 - QUIET_S <= slept <= PROBE_S + 2.0 + 1e-9  # the probe, then held off for 2 s


async def test_a_flood_that_leaves_the_cpu_room_holds_the_worker_for_the_probe_only(clock: FakeClock) -> None:
    assert await _worker_sleeps(clock, 2.0, cpu_share=ROOM) == pytest.approx(PROBE_S)


async def test_with_intake_priority_off_the_worker_decides_at_once(clock: FakeClock) -> None:
    assert await _worker_sleeps(clock, 0.0, cpu_share=BUSY) == 0.0
    assert clock.sleeps == []
