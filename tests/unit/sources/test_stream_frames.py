"""Stream mode frame handling without sockets: parsing, acks, the EVENT → ApprovalEvent mapping, the backoff,
the config, and the client's answer to each frame (against an in-memory store that may fail)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from bridge import config, errors
from bridge.clock import FakeClock
from bridge.events import Status
from bridge.sources.native import stream_frames as sf
from bridge.sources.stream import StreamClient
from bridge.store.memory import MemoryStore

ENV = {"SECRET": "s3cret-value"}


def source_table(**kw: Any) -> dict[str, Any]:
    return {"name": "ding", "format": "dingtalk", "transport": "stream", "client_id": "dingapp",
            "client_secret": "env:SECRET", "notify": "applicant", **kw}


def cfg(**kw: Any) -> config.Config:
    return config.from_dict({"dingtalk": {"app_key": "k", "app_secret": "env:SECRET", "agent_id": 1},
                             "sources": [source_table(**kw)]}, env=ENV)


def event_frame(data: dict[str, Any], event_id: str = "evt-1", message_id: str = "m-1") -> str:
    return json.dumps({"specVersion": "1.0", "type": "EVENT", "data": json.dumps(data),
                       "headers": {"messageId": message_id, "topic": "*", "eventType": "bpms_instance_change",
                                   "eventId": event_id, "eventBornTime": "1764640000000", "eventCorpId": "dingc"}})


START = {"processInstanceId": "PI-1", "type": "start", "staffId": "u1", "title": "T",
         "url": "https://example.com/pi-1"}


def test_config_reads_stream_keys_and_masks_the_secret() -> None:
    src = cfg(gateway_url="http://127.0.0.1:9/", keepalive_s=10).sources[0]
    assert src.native is not None and src.native.stream is not None
    keys = src.native.stream
    assert (keys.client_id, keys.gateway_url, keys.keepalive_s) == ("dingapp", "http://127.0.0.1:9", 10.0)
    assert "s3cret" not in repr(keys)


@pytest.mark.parametrize(("extra", "problem"), [
    ({"transport": "ws"}, "transport must be"),
    ({"gateway_url": "ftp://x"}, "gateway_url must be an http"),
    ({"reconnect_base_s": 0}, "reconnect_base_s must be a positive"),
    ({"reconnect_base_s": 10, "reconnect_max_s": 1}, "reconnect_max_s must not be less"),
    ({"token": "x"}, "unknown key"),
])
def test_bad_stream_config_is_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(errors.ConfigError, match=problem):
        cfg(**extra)


def test_stream_is_dingtalk_only() -> None:
    with pytest.raises(errors.ConfigError, match="dingtalk only"):
        config.from_dict({"dingtalk": {"app_key": "k", "app_secret": "env:SECRET", "agent_id": 1},
                          "sources": [{"name": "f", "format": "feishu", "transport": "stream",
                                       "verification_token": "v", "notify": "fixed", "recipients": ["a"]}]},
                         env=ENV)


def test_event_frames_go_through_the_http_push_normaliser() -> None:
    src = cfg().sources[0]
    assert src.native is not None
    frame = sf.parse_frame(event_frame(START))
    event = sf.to_event(src.native, "ding", frame, FakeClock().now())
    assert (event.event_id, event.approval_id, event.status) == ("evt-1", "PI-1", Status.PENDING)
    assert event.recipients == ("u1",) and event.extra["corp_id"] == "dingc"
    assert event.occurred_at.year == 2025  # eventBornTime, not the clock


def test_acks_and_pongs_have_the_documented_shape() -> None:
    later = sf.ack("m-9", status=sf.AckStatus.LATER)
    assert later["code"] == 200 and later["headers"]["messageId"] == "m-9"
    assert json.loads(later["data"])["status"] == "LATER"
    assert sf.ack("p-1", data='{"opaque":"x"}')["data"] == '{"opaque":"x"}'


@pytest.mark.parametrize("text", ["not json", "[]", '{"type": 1}', '{"type":"EVENT","headers":[]}'])
def test_malformed_frames_are_refused(text: str) -> None:
    with pytest.raises(errors.MalformedPayload):
        sf.parse_frame(text)


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    assert all(0.5 <= sf.backoff_s(0, 1.0, 60.0, rng) <= 1.0 for _ in range(50))
    assert all(0.5 <= sf.backoff_s(4, 1.0, 60.0, rng) <= 16.0 for _ in range(50))
    assert all(sf.backoff_s(30, 1.0, 60.0, rng) <= 60.0 for _ in range(50))
    assert len({sf.backoff_s(5, 1.0, 60.0, rng) for _ in range(10)}) > 1


class FailingStore(MemoryStore):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def add_event(self, *args: Any, **kw: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise errors.StorageUnavailable("disk full")
        return await super().add_event(*args, **kw)


async def client_for(st: MemoryStore) -> StreamClient:
    return StreamClient(cfg().sources[0], st, session=None, clock=FakeClock())  # type: ignore[arg-type]


async def test_an_event_is_acked_only_once_stored_and_later_when_the_store_fails() -> None:
    st = FailingStore(failures=1)
    await st.open()
    client = await client_for(st)
    answer, reconnect = await client.handle_text(event_frame(START))
    assert answer is not None and json.loads(answer["data"])["status"] == "LATER" and not reconnect
    assert await st.events_for("ding", "PI-1") == []
    answer, _ = await client.handle_text(event_frame(START))
    assert answer is not None and json.loads(answer["data"])["status"] == "SUCCESS"
    assert len(await st.events_for("ding", "PI-1")) == 1
    answer, _ = await client.handle_text(event_frame(START, message_id="m-2"))  # a redelivery
    assert answer is not None and answer["headers"]["messageId"] == "m-2"
    assert json.loads(answer["data"])["status"] == "SUCCESS"
    assert client.status()["duplicates"] == 1 and client.status()["later"] == 1


async def test_system_frames_ping_is_echoed_and_disconnect_asks_for_a_reconnect() -> None:
    client = await client_for(MemoryStore())
    ping = json.dumps({"type": "SYSTEM", "headers": {"messageId": "p", "topic": "ping"}, "data": '{"opaque":"o"}'})
    answer, reconnect = await client.handle_text(ping)
    assert answer is not None and answer["data"] == '{"opaque":"o"}' and not reconnect
    bye = json.dumps({"type": "SYSTEM", "headers": {"messageId": "d", "topic": "disconnect"}, "data": "{}"})
    assert await client.handle_text(bye) == (None, True)
    assert await client.handle_text("garbage") == (None, False)


async def test_a_first_event_without_card_data_is_acked_but_not_stored() -> None:
    st = MemoryStore()
    await st.open()
    client = await client_for(st)
    answer, _ = await client.handle_text(event_frame({"processInstanceId": "PI-2", "type": "start"}))
    assert answer is not None and json.loads(answer["data"])["status"] == "SUCCESS"
    assert await st.events_for("ding", "PI-2") == []
