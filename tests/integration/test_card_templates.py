"""End to end: a source with a card template → a signed webhook → the card the DingTalk simulator receives.

bridge (receiver + worker, in process) and the simulator run on 127.0.0.1; the ERP is played by
`bridge.cli.send`, which signs like the real sender. Waits are bounded polls on the simulator's state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from bridge import app as bridge_app
from bridge import config
from bridge.cli import send as sender
from bridge.simulator import server as simulator
from bridge.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

SECRET = "erp-webhook-secret-0123456789"
CARD: dict[str, Any] = {
    "title": "【采购】{approval.title}",
    "rows": [{"label": "申请人", "value": "{approval.applicant}"}, {"form": "金额", "label": "金额（含税）"},
             {"form": "*"}],
    "author": "ERP · {approval.applicant}",
    "message_url": "dingtalk://dingtalkclient/page/link?url={url_encode(approval.url)}&pc_slide=true",
    "pc_message_url": "https://erp.example.com/pc/{approval.approval_id}",
    "statuses": {"pending": {"label": "等待审批"}, "approved": {"label": "采购已批准", "color": "0xFF2EA043"}},
}


def body(status: str, n: int) -> bytes:
    ev: dict[str, Any] = {"event_id": f"e2e-{n}-{status}", "approval_id": "PO-T-1", "status": status,
                          "occurred_at": datetime(2026, 11, 30, 8, n, tzinfo=UTC).isoformat()}
    if n == 1:
        ev.update(title="采购申请 PO-T-1", recipients=["manager01"], applicant="张三",
                  url="https://erp.example.com/po/1?tab=approve",
                  form=[{"key": "供应商", "value": "上海某某贸易"}, {"key": "金额", "value": "12,000 元"}])
    return json.dumps(ev, ensure_ascii=False).encode()


async def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return found


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[simulator.RunningSimulator, str, config.Config]]:
    async with simulator.running() as sim:
        cfg = config.from_dict({
            "server": {"port": 0, "admin_token": "admin-token-0123456789"},
            "storage": {"path": str(tmp_path / "bridge.db")},
            "dingtalk": {"base_url": sim.base_url, "app_key": "dingdemoappkey", "app_secret": "demo-app-secret",
                         "agent_id": 1000001},
            "worker": {"check_delay_s": 0.2, "poll_interval_s": 0.1},
            "sources": [{"name": "erp", "signature": "hmac-sha256", "secret": SECRET, "card": CARD}],
        }, env={})
        runner = web.AppRunner(bridge_app.create_app(cfg, store=SQLiteStore(cfg.storage.path)), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield sim, f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/erp", cfg
        finally:
            await runner.cleanup()


async def test_the_templated_card_reaches_dingtalk_and_turns_to_the_templated_approved_label(
        running: tuple[simulator.RunningSimulator, str, config.Config]) -> None:
    sim, url, cfg = running
    source = cfg.source("erp")
    assert source is not None and source.card is not None
    async with aiohttp.ClientSession() as session:
        answer = await sender.send(url, source, body("pending", 1), datetime.now(UTC), session=session)
        assert answer.status == 202, answer.body
        [card] = await wait_for(lambda: sim.state.inbox("manager01"), "the card in manager01's inbox")
        oa = card["msg"]["oa"]
        assert oa["body"]["title"] == "【采购】采购申请 PO-T-1"
        assert oa["body"]["form"] == [{"key": "申请人", "value": "张三"}, {"key": "金额（含税）", "value": "12,000 元"},
                                      {"key": "供应商", "value": "上海某某贸易"}]
        assert oa["body"]["author"] == "ERP · 张三"
        assert oa["message_url"] == ("dingtalk://dingtalkclient/page/link?url="
                                     + quote("https://erp.example.com/po/1?tab=approve", safe="") + "&pc_slide=true")
        assert oa["pc_message_url"] == "https://erp.example.com/pc/PO-T-1"
        assert card["status_bar"]["value"] == "等待审批"

        answer = await sender.send(url, source, body("approved", 2), datetime.now(UTC), session=session)
        assert answer.status == 202, answer.body
        bar = await wait_for(lambda: (sim.state.inbox("manager01")[-1].get("status_bar") or {}).get("value")
                             == "采购已批准" and sim.state.inbox("manager01")[-1]["status_bar"], "the approved label")
        assert bar["bg"].upper() == "0XFF2EA043" and len(sim.state.inbox("manager01")) == 1


async def test_a_resubmitted_templated_card_is_delivered_as_a_new_distinct_card(
        running: tuple[simulator.RunningSimulator, str, config.Config]) -> None:
    sim, url, cfg = running
    source = cfg.source("erp")
    assert source is not None
    async with aiohttp.ClientSession() as session:
        for n, status in enumerate(("pending", "rejected", "pending"), start=1):
            answer = await sender.send(url, source, body(status, n), datetime.now(UTC), session=session)
            assert answer.status == 202, answer.body
        cards = await wait_for(lambda: len(sim.state.inbox("manager01")) == 2 and sim.state.inbox("manager01"),
                               "the resubmitted card")
    first, second = (c["msg"] for c in cards)
    assert first != second and second["oa"]["body"]["content"] == "（第 2 次提交）"
    assert second["oa"]["body"]["title"] == first["oa"]["body"]["title"] == "【采购】采购申请 PO-T-1"
    assert cards[-1]["status_bar"]["value"] == "等待审批"
