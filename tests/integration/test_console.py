"""The web console through the real app (aiohttp test client): auth, sessions, CSRF, pages and actions.

The harness is the admin API's (`tests.integration.test_admin`): the real app, a MemoryStore, the worker
driven in bursts and the simulator on 127.0.0.1, all on one FakeClock.
"""

from __future__ import annotations

import re

import pytest
from structlog.testing import capture_logs

from bridge.config import DEFAULT_APP
from bridge.console import auth, throttle
from bridge.records import JobState, NewJournal
from bridge.simulator import ui
from bridge.simulator.model import FaultPlan
from tests.integration.test_admin import ADMIN_TOKEN, AUTH, Harness, body, make_harness

pytestmark = pytest.mark.integration

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
async def harness():
    async with make_harness() as h:
        yield h


async def login(h: Harness, token: str = ADMIN_TOKEN, next_path: str = "/console") -> int:
    resp = await h.http.post("/console/login", data={"token": token, "next": next_path}, allow_redirects=False)
    await resp.read()
    return resp.status


async def page(h: Harness, path: str) -> tuple[int, str]:
    resp = await h.http.get(path, allow_redirects=False)
    return resp.status, await resp.text()


async def csrf(h: Harness) -> str:
    _, text = await page(h, "/console")
    m = CSRF_RE.search(text)
    assert m is not None, text[:500]
    return m.group(1)


async def pending_approval(h: Harness, approval_id: str = "PO-1", title: str | None = None) -> None:
    raw = body(approval_id, "pending", 0)
    if title is not None:
        raw = raw.replace(f"采购申请 {approval_id}".encode(), title.encode())
    assert await h.post(raw) == 202
    await h.settle()


# --- access ----------------------------------------------------------------------------------------------

async def test_pages_redirect_to_login_and_json_answers_401(harness: Harness) -> None:
    resp = await harness.http.get("/console/approvals?status=pending", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/login?next=/console/approvals?status=pending"
    resp = await harness.http.get("/console/journal.json")
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    status, text = await page(harness, "/console/login")
    assert status == 200 and "管理令牌 Admin token" in text and 'type="password"' in text


async def test_wrong_token_is_refused_and_sets_no_cookie(harness: Harness) -> None:
    resp = await harness.http.post("/console/login", data={"token": "wrong-token-000000"}, allow_redirects=False)
    assert resp.status == 401 and "令牌错误 Wrong token" in await resp.text()
    assert auth.COOKIE not in resp.cookies
    assert (await page(harness, "/console"))[0] == 303


async def test_login_sets_a_strict_httponly_session_cookie(harness: Harness) -> None:
    resp = await harness.http.post("/console/login", data={"token": ADMIN_TOKEN, "next": "/console/dead"},
                                   allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/dead"
    morsel = resp.cookies[auth.COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/console"
    assert ADMIN_TOKEN not in morsel.value
    status, text = await page(harness, "/console")
    assert status == 200 and "概览 Overview" in text
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_every_console_answer_carries_the_security_headers(harness: Harness) -> None:
    # a page, a redirect raised by the auth check, a static asset, and a /console path no route serves (the
    # catch-all's JSON 404): bridge.routing.edge wraps each of them, so none is left without the headers
    for path in ("/console/login", "/console", "/console/static/console.css", "/console/no-such-page"):
        resp = await harness.http.get(path, allow_redirects=False)
        assert "default-src 'none'" in resp.headers.get("Content-Security-Policy", ""), path
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await harness.http.delete("/console/login")
    assert resp.status == 405 and set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_login_never_redirects_off_the_console(harness: Harness) -> None:
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        resp = await harness.http.post("/console/login", data={"token": ADMIN_TOKEN, "next": evil},
                                       allow_redirects=False)
        assert resp.headers["Location"] == "/console", evil


async def test_a_forged_or_expired_session_is_refused(harness: Harness) -> None:
    assert await login(harness) == 303
    jar = harness.http.session.cookie_jar
    value = jar.filter_cookies(harness.http.make_url("/console"))[auth.COOKIE].value
    jar.clear()
    issued, _, mac = value.partition(".")

    async def status_with(cookie: str) -> int:
        resp = await harness.http.get("/console", headers={"Cookie": f"{auth.COOKIE}={cookie}"},
                                      allow_redirects=False)
        return resp.status

    assert await status_with(value) == 200
    assert await status_with(f"{issued}.{'0' * len(mac)}") == 303
    assert await status_with(f"{int(issued) + 60}.{mac}") == 303
    assert await status_with(ADMIN_TOKEN) == 303
    harness.clock.advance(auth.SESSION_TTL_S + 1)
    assert await status_with(value) == 303


async def test_bearer_header_works_without_a_session(harness: Harness) -> None:
    resp = await harness.http.get("/console/approvals", headers=AUTH)
    assert resp.status == 200 and "审批 Approvals" in await resp.text()
    resp = await harness.http.get("/console", headers={"Authorization": "Bearer wrong-token-000000"},
                                  allow_redirects=False)
    assert resp.status == 303


async def test_console_is_off_without_an_admin_token() -> None:
    async with make_harness(admin_token=None) as h:
        for path in ("/console", "/console/login", "/console/approvals"):
            resp = await h.http.get(path, allow_redirects=False)
            assert resp.status == 403, path
            assert "admin_token" in await resp.text()
        resp = await h.http.post("/console/login", data={"token": "anything"})
        assert resp.status == 403


# --- CSRF ------------------------------------------------------------------------------------------------

async def test_actions_need_the_csrf_token(harness: Harness) -> None:
    await pending_approval(harness)
    assert await login(harness) == 303
    path = "/console/approvals/erp/PO-1/recall"
    for data in ({}, {"csrf": "0" * 64}):
        resp = await harness.http.post(path, data=data, allow_redirects=False)
        assert resp.status == 403 and (await resp.json())["error"] == "csrf"
    assert [e.event.status for e in await harness.store.events_for("erp", "PO-1")] == ["pending"]
    resp = await harness.http.post(path, data={"csrf": await csrf(harness)}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/approvals/erp/PO-1?done=recall"
    assert [e.event.status for e in await harness.store.events_for("erp", "PO-1")] == ["pending", "deleted"]
    await harness.settle()
    assert harness.bars("user01")[0][2] is True  # recalled in DingTalk


async def test_a_csrf_token_belongs_to_its_session(harness: Harness) -> None:
    await pending_approval(harness)
    assert await login(harness) == 303
    old = await csrf(harness)
    harness.clock.advance(5)
    assert await login(harness) == 303  # a new session: the old page's token no longer counts
    resp = await harness.http.post("/console/approvals/erp/PO-1/resync", data={"csrf": old}, allow_redirects=False)
    assert resp.status == 403
    resp = await harness.http.post("/console/approvals/erp/PO-1/resync", data={"csrf": await csrf(harness)},
                                   allow_redirects=False)
    assert resp.status == 303


async def test_logout_ends_the_session(harness: Harness) -> None:
    assert await login(harness) == 303
    resp = await harness.http.post("/console/logout", data={"csrf": await csrf(harness)}, allow_redirects=False)
    assert resp.status == 303
    assert (await page(harness, "/console"))[0] == 303


# --- pages -----------------------------------------------------------------------------------------------

async def test_approval_page_draws_the_card_and_escapes_input(harness: Harness) -> None:
    await pending_approval(harness, title="<script>alert(1)</script> 采购")
    assert await login(harness) == 303
    status, text = await page(harness, "/console/approvals/erp/PO-1")
    assert status == 200
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; 采购" in text
    assert 'class="oa-status" style="background:#FF9D46" data-status="待审批"' in text
    assert "user01, user02" in text
    [n] = await harness.store.notices_for("erp", "PO-1")
    assert f"<code>{n.task_id}</code>" in text
    assert "已应用 applied" in text and "申请人：张三" in text
    assert await harness.post(body("PO-1", "approved", 5, card=False)) == 202
    await harness.settle()
    _, text = await page(harness, "/console/approvals/erp/PO-1")
    assert 'style="background:#78C06E" data-status="已同意"' in text
    status, text = await page(harness, "/console/approvals/erp/PO-404")
    assert status == 404 and "PO-404" in text


async def test_lists_filter_and_search(harness: Harness) -> None:
    await pending_approval(harness, "PO-1")
    await pending_approval(harness, "PO-2", title="差旅报销 北京")
    assert await login(harness) == 303
    _, text = await page(harness, "/console/approvals?q=差旅")
    assert "PO-2" in text and "/console/approvals/erp/PO-1" not in text
    _, text = await page(harness, "/console/approvals?q=PO-1")
    assert "/console/approvals/erp/PO-1" in text and "/console/approvals/erp/PO-2" not in text
    _, text = await page(harness, "/console/approvals?status=approved")
    assert "没有匹配的审批" in text
    _, text = await page(harness, "/console/approvals?source=oa")
    assert "PO-1" not in text
    status, text = await page(harness, "/console")
    assert status == 200 and 'href="/console/approvals?status=pending"><span class="n">2</span>' in text


async def test_dead_letters_retried_from_the_console_reach_dingtalk(harness: Harness) -> None:
    h = harness
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("errcode_-1",), calls=("asyncsend_v2",)))
    assert await h.post(body("PO-7", "pending", 0)) == 202
    await h.settle()
    [dead] = await h.store.list_jobs(JobState.DEAD)
    assert await login(h) == 303
    _, text = await page(h, "/console/dead?code=errcode%3D-1")
    assert f'name="job_id" value="{dead.id}"' in text
    _, text = await page(h, "/console/dead?source=oa")
    assert f'value="{dead.id}"' not in text
    h.sim.clear_faults()
    resp = await h.http.post("/console/dead/retry", data={"csrf": await csrf(h), "job_id": str(dead.id)},
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/dead?done=retry"
    await h.settle()
    assert h.bars("user01") == [("待审批", "0xFFFF9D46", False)]
    resp = await h.http.post(f"/console/jobs/{dead.id}/retry", data={"csrf": await csrf(h)})
    assert resp.status == 409


@pytest.mark.parametrize("job_id", ["0", "x1", "9223372036854775808", "99999999999999999999"])
async def test_a_job_id_the_database_cannot_hold_is_a_400_on_both_retry_forms(harness: Harness, job_id: str) -> None:
    """The console checks a job id as the admin API does (1 .. 2**63-1): past that SQLite would raise, a 500."""
    assert await login(harness) == 303
    resp = await harness.http.post(f"/console/jobs/{job_id}/retry", data={"csrf": await csrf(harness)})
    assert resp.status == 400 and "between 1 and 9223372036854775807" in (await resp.json())["message"]
    resp = await harness.http.post("/console/dead/retry", data={"csrf": await csrf(harness), "job_id": job_id})
    assert resp.status == 400 and (await resp.json())["error"] == "bad_request"


async def test_journal_json_follows_after_an_id(harness: Harness) -> None:
    await pending_approval(harness)
    resp = await harness.http.get("/console/journal.json", headers=AUTH)
    data = await resp.json()
    assert data["lines"] and data["last"] == data["lines"][-1]["id"]
    assert any(line["href"] == "/console/approvals/erp/PO-1" for line in data["lines"])
    resp = await harness.http.get(f"/console/journal.json?after={data['last']}", headers=AUTH)
    assert (await resp.json())["lines"] == []
    resp = await harness.http.get("/console/journal.json?after=x", headers=AUTH)
    assert resp.status == 400


async def test_static_assets_ship_in_the_package(harness: Harness) -> None:
    for name, ctype in (("console.css", "text/css"), ("console.js", "text/javascript")):
        resp = await harness.http.get(f"/console/static/{name}")
        assert resp.status == 200 and resp.content_type == ctype and len(await resp.read()) > 500


async def test_sim_ui_shows_each_inbox(harness: Harness) -> None:
    await pending_approval(harness)
    [n] = await harness.store.notices_for("erp", "PO-1")
    assert n.task_id is not None
    harness.sim.mark_read(n.task_id, "user01")
    html = ui.render(harness.sim)
    assert html.count('class="phone"') == 2
    assert "user01 · 未读 0 unread" in html and "user02 · 未读 1 unread" in html
    assert 'data-status="待审批"' in html
    resp = await harness.http.get("/console/static/console.css")  # the phone styles live in the console's CSS
    assert ".phone" in await resp.text()


async def test_console_keeps_the_admin_host_allow_list() -> None:
    async with make_harness(allowed_hosts=("bridge.internal",)) as h:
        for path in ("/console", "/console/login"):
            resp = await h.http.get(path, headers={**AUTH, "Host": "evil.example"}, allow_redirects=False)
            assert resp.status == 403 and "allowed_hosts" in await resp.text(), path
        resp = await h.http.get("/console", headers={**AUTH, "Host": "bridge.internal:8080"})
        assert resp.status == 200


# --- filters, throttling, overview ------------------------------------------------------------------------

async def test_a_bad_since_value_is_a_400_naming_the_field(harness: Harness) -> None:
    await pending_approval(harness)
    assert await login(harness) == 303
    for path, field in (("/console/approvals?since=yesterday", "Updated since"), ("/console/dead?since=1.5", "Since")):
        status, text = await page(harness, path)
        assert status == 400, path
        assert field in text and "<code>since</code>" in text and "2026-11-29T08:00+08:00" in text
        assert 'aria-invalid="true"' in text
    status, text = await page(harness, "/console/approvals?since=2026-11-29")
    assert status == 200 and "/console/approvals/erp/PO-1" in text
    status, text = await page(harness, "/console/approvals?since=2099-01-01T00:00:00Z")
    assert status == 200 and "/console/approvals/erp/PO-1" not in text
    resp = await harness.http.get("/approvals?since=yesterday", headers=AUTH)  # the JSON API: its own rule
    assert resp.status == 400 and "RFC 3339" in (await resp.json())["message"]


async def test_overview_counts_dingtalk_errors_and_throttling_of_the_last_hour(harness: Harness) -> None:
    h = harness
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("errcode_-1",), calls=("asyncsend_v2",)))
    assert await h.post(body("PO-7", "pending", 0)) == 202
    await h.settle()
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("throttle",), calls=("asyncsend_v2",)))
    assert await h.post(body("PO-8", "pending", 0)) == 202
    await h.settle()
    h.sim.clear_faults()
    lines = [e for e in await h.store.journal_tail(500) if e.kind in ("job.retry_scheduled", "job.dead")]
    assert {e.data.get("code") for e in lines} == {"-1", "90018"}
    assert await login(h) == 303
    _, text = await page(h, "/console")
    hour = text[text.index('id="dingtalk-hour"'):text.index("按来源 Per source")]
    errors = sum(1 for e in lines if e.data["code"] == "-1")
    throttled = len(lines) - errors
    assert f'<span class="n">{errors}</span><span class="l">钉钉错误 DingTalk errors' in hour
    assert f'<span class="n">{throttled}</span><span class="l">限流 Throttled' in hour
    assert "<code>-1</code></td><td>错误 error</td>" in hour
    assert "<code>90018</code></td><td>限流 throttled</td>" in hour
    assert {e.data.get("app") for e in lines} == {DEFAULT_APP}
    per_app = text[text.index('class="per-app"'):text.index('class="per-source"')]
    died = sum(1 for e in lines if e.kind == "job.dead")
    assert f"<td>{errors}</td><td>{throttled}</td><td>{died}</td><td>0</td></tr>" in per_app
    per_source = text[text.index('class="per-source"'):]
    assert f"<td>{errors}</td><td>{throttled}</td><td>0</td></tr>" in per_source.split("</tr>", 2)[1] + "</tr>"
    # 6,000 ordinary lines written since: the hour's failures are still all counted (the overview used to read
    # the journal's last 5,000 lines and would now see none of them)
    await h.store.append_journal([NewJournal(kind="event.applied", source="erp")] * 6000, h.clock.now())
    _, again = await page(h, "/console")
    assert hour in again
    h.clock.advance(3601)
    _, text = await page(h, "/console")
    assert "最近一小时没有钉钉错误 no DingTalk errors in the last hour" in text



async def test_failed_logins_are_throttled_but_a_known_browser_gets_in(harness: Harness) -> None:
    h = harness
    assert await login(h) == 303  # this client logged in before: it holds a device cookie
    device = h.http.session.cookie_jar.filter_cookies(h.http.make_url("/console/login"))[auth.DEVICE_COOKIE].value
    h.http.session.cookie_jar.clear()
    statuses = []
    with capture_logs() as logs:
        for _ in range(throttle.FREE_FAILURES + 1):
            resp = await h.http.post("/console/login", data={"token": "wrong-token-000000"}, allow_redirects=False)
            statuses.append(resp.status)
        assert statuses == [401] * (throttle.FREE_FAILURES + 1) and resp.headers["Retry-After"] == "1"
        for _ in range(20):  # a flood while the form is closed: 429s, not one log line each
            resp = await h.http.post("/console/login", data={"token": "wrong-token-000000"}, allow_redirects=False)
            assert resp.status == 429
    events = [e["event"] for e in logs if e["event"].startswith("console.login")]
    assert events == ["console.login_failed"] * throttle.FREE_FAILURES + ["console.login_throttled"]
    resp = await h.http.post("/console/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    text = await resp.text()
    assert resp.status == 429 and resp.headers["Retry-After"] == "1" and "Too many failed logins" in text
    assert auth.COOKIE not in resp.cookies  # refused before the token was even compared
    resp = await h.http.post("/console/login", data={"token": ADMIN_TOKEN}, allow_redirects=False,
                             headers={"Cookie": f"{auth.DEVICE_COOKIE}={device}"})
    assert resp.status == 303  # the operator's own browser is not held up by the others' failures
    h.clock.advance(1)
    h.http.session.cookie_jar.clear()
    assert await login(h) == 303  # and the shared form opens again once the delay has passed
    resp = await h.http.get("/console/approvals", headers=AUTH)  # bearer access is never throttled
    assert resp.status == 200


async def test_the_approval_page_has_a_live_fragment_with_an_etag(harness: Harness) -> None:
    await pending_approval(harness)
    assert await login(harness) == 303
    _, text = await page(harness, "/console/approvals/erp/PO-1")
    assert 'data-live="/console/approvals/erp/PO-1/live"' in text
    etag = re.search(r'data-etag="([^"]+)"', text)
    assert etag is not None
    resp = await harness.http.get("/console/approvals/erp/PO-1/live")
    assert resp.status == 200 and 'data-status="待审批"' in await resp.text()
    assert resp.headers["ETag"] == etag.group(1).replace("&quot;", '"')
    resp = await harness.http.get("/console/approvals/erp/PO-1/live", headers={"If-None-Match": resp.headers["ETag"]})
    assert resp.status == 304
    assert await harness.post(body("PO-1", "approved", 5, card=False)) == 202
    await harness.settle()
    resp = await harness.http.get("/console/approvals/erp/PO-1/live", headers={"If-None-Match": etag.group(1)})
    assert resp.status == 200 and 'data-status="已同意"' in await resp.text()
    harness.http.session.cookie_jar.clear()
    resp = await harness.http.get("/console/approvals/erp/PO-1/live", allow_redirects=False)
    assert resp.status == 401  # a script's request: refused, not redirected to the login form
    resp = await harness.http.get("/console/approvals/erp/PO-404/live", headers=AUTH)
    assert resp.status == 404


async def test_the_dead_letter_page_has_a_live_list_with_an_etag(harness: Harness) -> None:
    h = harness
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("errcode_-1",), calls=("asyncsend_v2",)))
    assert await h.post(body("PO-7", "pending", 0)) == 202
    await h.settle()
    [first] = await h.store.list_jobs(JobState.DEAD)
    assert await login(h) == 303
    _, text = await page(h, "/console/dead?source=erp&code=-1")
    live = re.search(r'data-live="([^"]+)" data-etag="([^"]+)"', text)
    assert live is not None and live.group(1) == "/console/dead/live?source=erp&amp;code=-1"
    path, etag = live.group(1).replace("&amp;", "&"), live.group(2).replace("&quot;", '"')
    resp = await h.http.get(path)
    assert resp.status == 200 and resp.headers["ETag"] == etag and f'value="{first.id}"' in await resp.text()
    resp = await h.http.get(path, headers={"If-None-Match": etag})
    assert resp.status == 304  # nothing changed: nothing sent
    assert await h.post(body("PO-8", "pending", 0)) == 202  # a second job dies
    await h.settle()
    [second, _] = await h.store.list_jobs(JobState.DEAD)
    resp = await h.http.get(path, headers={"If-None-Match": etag})
    listing = await resp.text()
    assert resp.status == 200 and resp.headers["ETag"] != etag
    assert f'value="{second.id}"' in listing and f'value="{first.id}"' in listing
    assert 'name="csrf"' in listing and 'action="/console/dead/retry"' in listing  # the form still posts
    resp = await h.http.get("/console/dead/live?source=oa")
    assert f'value="{second.id}"' not in await resp.text()  # the page's filters hold for its refreshes
    resp = await h.http.get("/console/dead/live?since=yesterday")
    assert resp.status == 400 and "since" in (await resp.json())["message"]
    status, text = await page(h, "/console/dead?since=yesterday")
    assert status == 400 and "data-live" not in text  # a page with a bad filter does not refresh
    h.http.session.cookie_jar.clear()
    resp = await h.http.get(path, allow_redirects=False)
    assert resp.status == 401  # a script's request: refused, not redirected to the login form
