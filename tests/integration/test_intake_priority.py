"""The receiver tells the worker of its process when each webhook arrives (bridge.priority): the wiring
between `bridge.web` and `bridge.worker`, through the app."""

from __future__ import annotations

import pytest

from bridge import app as bridge_app
from bridge.priority import BUSY_CPU_SHARE
from tests.integration.test_admin import body, make_harness

pytestmark = pytest.mark.integration


async def test_the_worker_gives_way_to_the_webhooks_its_receiver_answers() -> None:
    async with make_harness() as h:
        intake = h.app[bridge_app.INTAKE]
        assert h.app[bridge_app.WORKER].intake is intake  # one record of arrivals, shared
        assert not intake.arriving(h.clock.monotonic())
        assert await h.post(body("PO-1", "pending", 0)) == 202
        assert await h.post(body("PO-2", "pending", 0)) == 202  # two at once on the fake clock: a flood
        assert intake.arriving(h.clock.monotonic())
        assert intake.wait_s(h.clock.monotonic(), BUSY_CPU_SHARE) > 0
        h.clock.advance(1.0)
        assert not intake.arriving(h.clock.monotonic())


async def test_refused_webhooks_arrive_too() -> None:
    """A flood of bad webhooks costs the CPU as much as good ones: it counts the same."""
    async with make_harness() as h:
        for _ in range(2):
            assert await h.post(b"{not json", headers={"Content-Type": "application/json"}) == 401
        assert h.app[bridge_app.INTAKE].arriving(h.clock.monotonic())
