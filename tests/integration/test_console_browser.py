"""The console and /_sim/ui in a real browser: Playwright for Python driving Debian's Chromium.

One stack for the module, in a thread with its own event loop: the simulator and the real bridge app (its
worker running on the system clock) on 127.0.0.1, a MemoryStore behind it. One browser for the module.
Every wait is bounded (Playwright's `expect`, or `reload_until` where a page is reloaded on purpose, so as
not to wait for its own 2-s refresh). The browser runs in Asia/Shanghai, as most operators do, so times must
show in that zone.
The run writes its screenshots to build/screenshots/ (gitignored); with BRIDGE_DOCS_IMAGES=1 it writes
them to docs/images/ instead, to refresh the documentation's pictures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge import app as bridge_app
from bridge.config import Config
from bridge.simulator import server as simulator
from bridge.sources import signatures
from bridge.store.memory import MemoryStore
from tests.integration.test_admin import ADMIN_TOKEN, make_config
from tests.real import missing

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / ("docs/images" if os.environ.get("BRIDGE_DOCS_IMAGES") == "1" else "build/screenshots")
TIMEZONE = "Asia/Shanghai"
WAIT_MS = 10_000
GREEN_RGB, ORANGE_RGB = "rgb(120, 192, 110)", "rgb(255, 157, 70)"


@dataclass
class Stack:
    base: str
    sim_base: str
    cfg: Config

    def post(self, event: dict[str, Any], source: str = "erp") -> int:
        src = self.cfg.source(source)
        assert src is not None
        raw = json.dumps(event, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **signatures.sign_headers(src, raw, datetime.now(UTC))}
        req = urllib.request.Request(f"{self.base}/webhooks/{source}", data=raw, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)

    def sim(self, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.sim_base}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())


def approval_event(approval_id: str, status: str, minute: int, recipients: tuple[str, ...]) -> dict[str, Any]:
    return {
        "event_id": f"{approval_id}-{status}-{minute}", "approval_id": approval_id, "status": status,
        "occurred_at": f"2026-12-01T10:{minute:02d}:00+08:00",
        "title": f"采购申请：服务器 4 台（{approval_id}）", "recipients": list(recipients), "applicant": "张三",
        "url": f"https://erp.example.com/po/{approval_id}",
        "form": [{"key": "申请部门", "value": "基础架构部"}, {"key": "供应商", "value": "某某科技有限公司"},
                 {"key": "预算科目", "value": "IT 设备"}],
        "amount": {"num": "86400.00", "unit": "元"}, "content": "用于新机房扩容，详见附件报价单。",
    }


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        found["stop"] = stop
        async with simulator.running() as sim:
            cfg = make_config(sim.base_url)
            cfg = replace(cfg, worker=replace(cfg.worker, max_attempts=1, retry_base_s=0.05, check_delay_s=0.3))
            runner = web.AppRunner(bridge_app.create_app(cfg, store=MemoryStore()), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            found["stack"] = Stack(f"http://127.0.0.1:{runner.addresses[0][1]}", sim.base_url, cfg)
            ready.set()
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(15), "the bridge stack did not start"
    yield found["stack"]
    loop.call_soon_threadsafe(found["stop"].set)
    thread.join(15)
    loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing("Chromium", "apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(base_url=stack.base, viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                  timezone_id=TIMEZONE)
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    yield p
    context.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect  # the optional test dependency, imported once it is known

    return pw_expect(locator)


def log_in(page: Any, token: str = ADMIN_TOKEN) -> None:
    page.goto("/console")
    page.fill("#token", token)
    page.click("button[type=submit]")


def reload_until(page: Any, check: Callable[[], bool], what: str, timeout_s: float = WAIT_MS / 1000) -> None:
    """Reload a page until `check` holds (bounded): sooner than the page's own refresh, if it has one."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(150)
        page.reload()


def test_login_refuses_a_wrong_token(page: Any) -> None:
    log_in(page, "wrong-token-000000")
    expect(page.locator(".flash.error")).to_have_text("令牌错误 Wrong token")
    assert page.url.endswith("/console/login")
    log_in(page)
    expect(page.locator("h1")).to_have_text("概览 Overview")
    cookie = next(c for c in page.context.cookies() if c["name"] == "bridge_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_card_turns_from_pending_to_approved_without_a_reload(page: Any, stack: Stack) -> None:
    users = ("zhangwei", "lina")
    log_in(page)
    assert stack.post(approval_event("PO-2026-0042", "pending", 0, users)) == 202
    page.goto("/console/approvals/erp/PO-2026-0042")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    bar = page.locator(".notice .oa-status").first
    expect(bar).to_have_text("待审批")
    expect(bar).to_have_css("background-color", ORANGE_RGB)
    assert stack.post(approval_event("PO-2026-0042", "approved", 5, users)) == 202
    expect(bar).to_have_text("已同意")
    expect(bar).to_have_css("background-color", GREEN_RGB)
    expect(page.locator(".dv-read, .dv-unread")).to_have_count(2)
    expect(page.locator(".timeline li")).to_have_count(2)
    assert page.evaluate("window.__sameDocument") is True
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "console-approval.png"), full_page=True)
    assert (IMAGES / "console-approval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sim = page.context.new_page()
    sim.set_viewport_size({"width": 1000, "height": 760})
    sim.goto(f"{stack.sim_base}/_sim/ui")
    phone = sim.locator('.phone[data-user="zhangwei"] .oa-status').last
    expect(phone).to_have_text("已同意")
    expect(phone).to_have_css("background-color", GREEN_RGB)
    [card] = stack.sim("/_sim/inbox/lina")["cards"]
    stack.sim("/_sim/read", "POST", {"task_id": card["task_id"], "userid": "lina"})
    sim.goto(f"{stack.sim_base}/_sim/ui?refresh=0")
    expect(sim.locator('.phone[data-user="lina"] .oa-read')).to_have_count(1)
    expect(sim.locator('.phone[data-user="zhangwei"] .oa-unread')).to_have_count(1)
    sim.screenshot(path=str(IMAGES / "sim-ui.png"), full_page=True)

    page.goto("/console/journal")
    expect(page.locator("#journal tbody tr").first).to_be_visible()
    expect(page.locator("#journal")).to_contain_text("PO-2026-0042")
    expect(page.locator("#journal time[data-local]").first).to_be_visible()


def test_times_show_in_the_browsers_time_zone(page: Any, stack: Stack) -> None:
    assert stack.post(approval_event("PO-TZ-1", "pending", 7, ("zhaolei",))) == 202
    log_in(page)
    page.goto("/console/approvals/erp/PO-TZ-1")
    when = page.locator(".timeline .when time")
    expect(when).to_have_text("2026-12-01 10:07:00")  # occurred_at 10:07+08:00, shown in Shanghai time
    expect(when).to_have_attribute("title", re.compile(r"^2026-12-01 02:07:00 UTC · 本地 local Asia/Shanghai"))
    expect(when).to_have_attribute("datetime", "2026-12-01T02:07:00+00:00")
    raw = page.request.get("/console/approvals/erp/PO-TZ-1").text()  # what a page without scripts reads
    assert ">2026-12-01 02:07:00 UTC</time>" in raw


def test_dead_job_retried_from_the_console_reaches_dingtalk(page: Any, stack: Stack) -> None:
    stack.sim("/_sim/faults", "POST", {"rate": 1.0, "kinds": ["errcode_-1"], "calls": ["asyncsend_v2"]})
    try:
        assert stack.post(approval_event("PO-DEAD-1", "pending", 0, ("wangfang",))) == 202
        log_in(page)
        page.goto("/console/dead")
        reload_until(page, lambda: page.locator("input[name=job_id]").count() == 1, "the dead send job")
    finally:
        stack.sim("/_sim/faults", "DELETE")
    assert stack.sim("/_sim/inbox/wangfang")["cards"] == []
    page.locator("input[name=job_id]").check()
    page.once("dialog", lambda d: d.accept())
    page.click("text=重试所选 Retry selected")
    expect(page.locator(".flash")).to_contain_text("重新排队")
    inbox = page.context.new_page()
    inbox.goto(f"{stack.sim_base}/_sim/ui?user=wangfang")  # refreshes itself every 2 s
    expect(inbox.locator('.phone[data-user="wangfang"] .oa-status')).to_have_text("待审批")
    [card] = stack.sim("/_sim/inbox/wangfang")["cards"]
    assert card["status_bar"]["value"] == "待审批"


def test_recall_asks_first(page: Any, stack: Stack) -> None:
    assert stack.post(approval_event("PO-RECALL-1", "pending", 0, ("liuyang",))) == 202
    log_in(page)
    page.goto("/console/approvals/erp/PO-RECALL-1")
    expect(page.locator(".notice .oa-status").first).to_have_text("待审批")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click("text=撤回卡片 Recall")
    assert asked and "撤回" in asked[0]
    expect(page.locator(".flash")).to_have_count(0)
    page.once("dialog", lambda d: d.accept())
    page.click("text=撤回卡片 Recall")
    expect(page.locator(".flash")).to_contain_text("已提交撤回")
    expect(page.locator(".oa-recalled")).to_have_count(1)  # the page updates itself
    sim = page.context.new_page()
    sim.goto(f"{stack.sim_base}/_sim/ui?user=liuyang")
    expect(sim.locator(".oa-recall-mark")).to_have_text("已撤回 recalled")


def test_post_without_csrf_is_refused(page: Any, stack: Stack) -> None:
    log_in(page)
    expect(page.locator("h1")).to_have_text("概览 Overview")
    resp = page.request.post("/console/approvals/erp/PO-2026-0042/resync", form={"x": "1"})
    assert resp.status == 403 and resp.json()["error"] == "csrf"
    resp = page.request.post("/console/dead/retry", form={"csrf": "0" * 64, "job_id": "1"})
    assert resp.status == 403


def test_overview_and_a_bad_filter(page: Any, stack: Stack) -> None:
    stack.sim("/_sim/faults", "POST", {"rate": 1.0, "kinds": ["errcode_-1"], "calls": ["asyncsend_v2"]})
    try:
        assert stack.post(approval_event("PO-ERR-1", "pending", 0, ("sunli",))) == 202
        log_in(page)
        by_code = page.locator("#dingtalk-hour + h3 + table")
        reload_until(page, lambda: "<code>-1</code>" in by_code.inner_html(), "errcode -1 in the overview")
    finally:
        stack.sim("/_sim/faults", "DELETE")
    expect(page.locator("table.per-source")).to_contain_text("erp")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "console-overview.png"), full_page=True)
    resp = page.goto("/console/approvals?since=yesterday")
    assert resp is not None and resp.status == 400
    expect(page.locator("#bad-since")).to_contain_text("更新于之后 Updated since")
    expect(page.locator("input[name=since]")).to_have_attribute("aria-invalid", "true")


def test_the_dead_letter_page_refreshes_itself_and_keeps_the_ticks(page: Any, stack: Stack) -> None:
    def row(approval_id: str) -> Any:
        return page.locator("#live tr", has_text=approval_id)

    stack.sim("/_sim/faults", "POST", {"rate": 1.0, "kinds": ["errcode_-1"], "calls": ["asyncsend_v2"]})
    try:
        assert stack.post(approval_event("PO-LIVE-A", "pending", 0, ("zhouyi",))) == 202
        log_in(page)
        page.goto("/console/dead")
        reload_until(page, lambda: row("PO-LIVE-A").count() == 1, "the first dead job")
        row("PO-LIVE-A").locator("input[name=job_id]").check()
        assert stack.post(approval_event("PO-LIVE-B", "pending", 0, ("zhouyi",))) == 202
        expect(row("PO-LIVE-B")).to_have_count(1, timeout=WAIT_MS)  # no reload: the page asked for its list again
    finally:
        stack.sim("/_sim/faults", "DELETE")
    expect(row("PO-LIVE-A").locator("input[name=job_id]")).to_be_checked()  # kept across the refresh
    expect(row("PO-LIVE-B").locator("input[name=job_id]")).not_to_be_checked()
    row("PO-LIVE-B").locator("input[name=job_id]").check()
    page.once("dialog", lambda d: d.accept())
    page.click("text=重试所选 Retry selected")  # both, once DingTalk answers again: nothing left dead
    expect(page.locator(".flash")).to_contain_text("重新排队")
    expect(row("PO-LIVE-A")).to_have_count(0)
    expect(row("PO-LIVE-B")).to_have_count(0)
