"""`bridge demo`: one approval through its whole life, with nothing to configure.

Starts the simulator and bridge in this process (ephemeral ports, a temporary database), then plays an
ERP: it signs and posts `pending`, `approved` and finally `deleted` webhooks for one purchase request
with two approvers, and after each step prints the card as the approver sees it in the simulator.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge import app as bridge_app
from bridge import config
from bridge.cli import present
from bridge.cli import send as sender
from bridge.simulator import server as simulator
from bridge.store.sqlite import SQLiteStore

APPROVERS = ["manager01", "manager02"]


def _event(status: str, n: int) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"demo-{n}-{status}",
        "approval_id": "PO-2026-0042",
        "status": status,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if n == 1:
        ev.update(title="采购申请 PO-2026-0042", recipients=APPROVERS, applicant="张三",
                  url="https://erp.example.com/po/42", form=[{"key": "供应商", "value": "上海某某贸易"},
                                                             {"key": "金额", "value": "12,000 元"}],
                  amount={"num": "12000", "unit": "元"}, content="办公设备采购，请审批。")
    return ev


def render_card(card: dict[str, Any], style: present.Style) -> str:
    bar = card.get("status_bar") or {}
    lines = [f"  ┌ {card.get('title') or '(no title)'}"]
    for row in card.get("form") or []:
        lines.append(f"  │ {row.get('key')}: {row.get('value')}")
    state = "RECALLED (the card is gone from the approver's list)" if card["recalled"] else (
        style.bar(bar.get("value"), bar.get("bg")) if bar else "(no status bar)")
    lines.append(f"  └ status bar: {state}   task_id={card['task_id']}")
    return "\n".join(lines)


async def _wait_for(
    sim: simulator.RunningSimulator, userid: str, check: Callable[[dict[str, Any]], object], timeout_s: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        cards = sim.state.inbox(userid)
        if cards and check(cards[-1]):
            return cards[-1]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{userid}'s card did not reach the expected state in {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


async def run(*, colour: bool = False, out: Callable[[str], object] = print) -> int:
    style = present.Style(colour)
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp:
        async with simulator.running() as sim:
            cfg = config.sandbox(sim.base_url, str(Path(tmp) / "demo.db"))
            cfg = replace(cfg, server=replace(cfg.server, port=0))
            application = bridge_app.create_app(cfg, store=SQLiteStore(cfg.storage.path))
            runner = web.AppRunner(application, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            url = f"http://127.0.0.1:{port}/webhooks/demo"
            source = cfg.source("demo")
            assert source is not None
            out(f"bridge is listening on http://127.0.0.1:{port}, the DingTalk simulator on {sim.base_url}")
            token = cfg.server.admin_token.reveal() if cfg.server.admin_token else ""
            out(f"While it runs: console http://127.0.0.1:{port}/console (admin token {token}), "
                f"the approvers' inboxes {sim.base_url}/_sim/ui\n")
            steps = [
                ("pending", "The ERP submits purchase request PO-2026-0042 for approval",
                 lambda c: (c.get("status_bar") or {}).get("value") == cfg.statuses.pending.label),
                ("approved", "The manager approves it in the ERP",
                 lambda c: (c.get("status_bar") or {}).get("value") == cfg.statuses.approved.label),
                ("deleted", "The ERP deletes the request",
                 lambda c: c["recalled"]),
            ]
            try:
                async with aiohttp.ClientSession() as session:
                    for n, (status, story, check) in enumerate(steps, start=1):
                        raw = json.dumps(_event(status, n), ensure_ascii=False).encode()
                        answer = await sender.send(url, source, raw, datetime.now(UTC), session=session)
                        out(f"{n}. {story}: POST /webhooks/demo status={status!r} → HTTP {answer.status}")
                        card = await _wait_for(sim, APPROVERS[0], check)
                        out(f"   What {APPROVERS[0]} sees in DingTalk 工作通知:")
                        out(render_card(card, style))
                        out("")
            finally:
                await runner.cleanup()
    out("Done: the card went 待审批 (orange) → 已同意 (green) → recalled, with no code and no credentials.")
    return 0
