"""Correctly signed and encrypted native callbacks that carry hostile values: every one refused with a 400 naming
the field, nothing stored (the canonical checks hold for native events too, bridge.event_checks), and the
Feishu plain-mode Verification Token never stored in the raw body."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

import pytest

from tests.integration.sources.test_native_web import (
    ENV,
    NOW,
    dingtalk_event,
    dumps,
    feishu_event,
    load_cfg,
    ms,
    running,
)

pytestmark = pytest.mark.integration
SOURCE = "dingtalk-approvals"


def dingtalk(**changes: object) -> bytes:
    payload = json.loads(dingtalk_event("start", at=NOW))
    payload.update(changes)
    return dumps(payload)


@pytest.mark.parametrize(("changes", "field", "needle"), [
    ({"url": "javascript:alert(1)"}, "url", "http(s)://"),
    ({"url": "data:text/html,<script>alert(1)</script>"}, "url", "http(s)://"),
    ({"processInstanceId": "P" * 40_000}, "approval_id", "at most 128"),
    ({"processInstanceId": "PI-\x00-1"}, "approval_id", "U+0000"),
    ({"processInstanceId": "PI-\u202e1"}, "approval_id", "U+202E"),
    ({"staffId": "victim\u200b1"}, "recipients[0]", "U+200B"),
    ({"staffId": "victim1,victim2"}, "recipients[0]", "commas"),
    ({"title": "报" * 5000}, "title", "at most 200"),
    ({"title": "line one\r\nline two"}, "title", "U+000D"),
    ({"EventTime": ms(datetime(9999, 12, 31, tzinfo=NOW.tzinfo)), "createTime": ms(datetime(9999, 1, 1,
                                                                                       tzinfo=NOW.tzinfo))},
     "occurred_at", "ahead of bridge's clock"),
])
async def test_a_hostile_value_in_a_valid_dingtalk_callback_is_refused(changes: dict[str, object], field: str,
                                                                       needle: str) -> None:
    async with running(load_cfg("dingtalk")) as env:
        answer = await env.deliver(SOURCE, dingtalk(**changes))
        assert answer.status == 400, answer.body
        body = answer.json()
        assert body["error"] == "invalid_event"
        problems = {p["field"]: p["message"] for p in body["problems"]}
        assert field in problems and needle in problems[field], problems
        assert await env.events() == []


async def test_a_feishu_event_dated_in_year_9999_is_refused() -> None:
    async with running(load_cfg("feishu")) as env:
        raw = json.loads(feishu_event("PENDING", at=NOW))
        raw["event"]["operate_time"] = raw["event"]["instance_operate_time"] = str(ms(NOW + timedelta(days=3)))
        answer = await env.deliver("feishu-approvals", dumps(raw))
        assert answer.status == 400 and "occurred_at" in answer.body.decode()
        assert await env.events() == []


async def test_feishu_plain_mode_token_never_reaches_the_database() -> None:
    cfg = load_cfg("feishu")
    source = cfg.source("feishu-approvals")
    assert source is not None and source.native is not None
    # plain mode: no encrypt_key, the body carries the Verification Token in clear
    plain = source.native.__class__(platform="feishu", keys=source.native.keys.__class__(
        verification_token=source.native.keys.verification_token), routing=source.native.routing)
    cfg = dataclasses.replace(cfg, sources=(dataclasses.replace(source, native=plain),))
    async with running(cfg) as env:
        answer = await env.deliver("feishu-approvals", feishu_event("PENDING", at=NOW))
        assert answer.status == 200, answer.body
        [stored] = await env.events()
        raw = env.store.raw_bodies[stored.id]
        assert ENV["FEISHU_VERIFICATION_TOKEN"].encode() not in raw
        assert b'"token":"****"' in raw and b"instance_code" in raw
