"""The official `dingtalk-stream` SDK against the simulator's Stream gateway: it must connect with its own
open-connection request, receive an approval EVENT and ack it; so the gateway is checked by a client nobody here
wrote. The SDK blocks its loop (`requests`), so it runs on its own event loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bridge.simulator import server as simulator
from bridge.simulator.model import DEMO_APP

pytestmark = pytest.mark.integration

dingtalk_stream = pytest.importorskip("dingtalk_stream")


async def test_the_official_sdk_receives_and_acks_an_approval_event(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[Any] = []

    class Handler(dingtalk_stream.EventHandler):  # type: ignore[misc]
        async def process(self, event: Any) -> tuple[int, str]:
            received.append(event)
            return dingtalk_stream.AckMessage.STATUS_OK, "OK"

    async with simulator.running() as sim:
        gw = sim.stream
        monkeypatch.setattr(dingtalk_stream.DingTalkStreamClient, "OPEN_CONNECTION_API",
                            sim.base_url + "/v1.0/gateway/connections/open")
        client = dingtalk_stream.DingTalkStreamClient(dingtalk_stream.Credential(DEMO_APP.app_key,
                                                                                 DEMO_APP.app_secret))
        client.register_all_event_handler(Handler())
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def sdk() -> None:
            task = asyncio.create_task(client.start())
            await stop.wait()
            while not task.done():  # the SDK answers a cancel by closing its socket, then sleeping 10 s
                task.cancel()
                await asyncio.wait({task}, timeout=2)
            if client.websocket is not None:
                await client.websocket.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:  # its keepalive and frame tasks
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        def run() -> None:
            try:
                loop.run_until_complete(sdk())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="dingtalk-stream-sdk", daemon=True)
        thread.start()
        try:
            deadline = asyncio.get_running_loop().time() + 15
            while not gw.view()["connections"]:
                assert asyncio.get_running_loop().time() < deadline, "the SDK never connected"
                await asyncio.sleep(0.02)
            msg = gw.push_event(DEMO_APP.app_key, "bpms_instance_change",
                                {"processInstanceId": "PI-SDK-1", "type": "start", "staffId": "manager75"})
            while not msg.acked:
                assert asyncio.get_running_loop().time() < deadline, f"no ack: {msg.answers}"
                await asyncio.sleep(0.02)
        finally:
            loop.call_soon_threadsafe(stop.set)
            await asyncio.sleep(0.05)
            for conn in list(gw.conns):  # answer the SDK's close at once (it waits for the server's close frame)
                await conn.ws.close()
            await asyncio.to_thread(thread.join, 10)
        [event] = received
        assert event.headers.event_type == "bpms_instance_change"
        assert event.headers.event_id == msg.frame["headers"]["eventId"]
        assert event.data["processInstanceId"] == "PI-SDK-1"
        assert msg.answers == ["SUCCESS"] and msg.deliveries == 1
        assert gw.tickets_issued == 1 and gw.connections_opened == 1
