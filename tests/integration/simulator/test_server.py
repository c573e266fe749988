"""The simulator over real HTTP on 127.0.0.1: wire formats, the inspection API, time, faults."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.clock import FakeClock
from bridge.simulator import server as simulator
from bridge.simulator.state import DEMO_APP, SimSettings, SimState

pytestmark = pytest.mark.integration

BASE = "/topapi/message/corpconversation/"
AGENT = DEMO_APP.agent_id
REQUEST_ID = re.compile(r"^[a-z0-9]{12,13}$")


def oa(title: str = "采购申请 PO-1") -> dict[str, Any]:
    return {"msgtype": "oa", "oa": {
        "message_url": "https://erp.example/po/1", "head": {"bgcolor": "FFBBBBBB", "text": "ERP"},
        "status_bar": {"status_value": "待审批", "status_bg": "0xFFFF9D46"},
        "body": {"title": title, "form": [{"key": "金额", "value": "1200.00"}]}}}


@pytest.fixture
async def sim() -> AsyncIterator[simulator.RunningSimulator]:
    async with simulator.running(host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    async with http.get(url, **kw) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def post_json(http: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    async with http.post(url, **kw) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("application/json")
        return await r.json()


async def token(http: aiohttp.ClientSession, base: str) -> str:
    body = await get_json(http, f"{base}/gettoken", params={"appkey": DEMO_APP.app_key,
                                                            "appsecret": DEMO_APP.app_secret})
    return str(body["access_token"])


async def test_running_picks_a_free_port_and_exposes_the_state(sim: simulator.RunningSimulator) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.base_url) and not sim.base_url.endswith(":0")
    assert sim.app[simulator.SIM_STATE] is sim.state


async def test_json_and_form_bodies_both_send(sim: simulator.RunningSimulator, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    as_json = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                              json={"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    as_form = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2",
                              data={"access_token": tok, "agent_id": str(AGENT), "userid_list": "u2",
                                    "to_all_user": "false", "msg": json.dumps(oa("采购申请 PO-2"))})
    as_string = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                                json={"agent_id": str(AGENT), "userid_list": "u3", "msg": json.dumps(oa())})
    for body in (as_json, as_form, as_string):
        assert body["errcode"] == 0 and body["errmsg"] == "ok" and isinstance(body["task_id"], int)
        assert REQUEST_ID.match(body["request_id"])
    inbox = await get_json(http, f"{sim.base_url}/_sim/inbox/u2")
    assert [c["task_id"] for c in inbox["cards"]] == [as_form["task_id"]]
    assert inbox["cards"][0]["title"] == "采购申请 PO-2" and inbox["cards"][0]["form"][0]["key"] == "金额"


async def test_auth_envelopes(sim: simulator.RunningSimulator, http: aiohttp.ClientSession) -> None:
    url = f"{sim.base_url}{BASE}getsendprogress"
    header_only = await post_json(http, url, json={"agent_id": AGENT, "task_id": 1},
                                  headers={"x-acs-dingtalk-access-token": await token(http, sim.base_url)})
    assert header_only["errcode"] == 88 and header_only["sub_code"] == "40000"
    assert header_only["errmsg"] == "ding talk error[subcode=40000,submsg=access_token is blank]"
    bad = await post_json(http, url, params={"access_token": "expired"}, json={"agent_id": AGENT, "task_id": 1})
    assert set(bad) == {"errcode", "sub_code", "sub_msg", "errmsg", "request_id"}
    assert (bad["errcode"], bad["sub_code"], bad["sub_msg"]) == (88, "40014", "不合法的access_token")
    wrong_agent = await post_json(http, url, params={"access_token": await token(http, sim.base_url)},
                                  json={"agent_id": 42, "task_id": 1})
    assert wrong_agent["errcode"] == 41020
    unknown = await post_json(http, f"{sim.base_url}/topapi/message/corpconversation/nope",
                              params={"access_token": "x"}, json={})
    assert unknown["errcode"] == 22 and "dingtalk.oapi.message.corpconversation.nope" in unknown["errmsg"]
    not_json = await post_json(http, url, params={"access_token": await token(http, sim.base_url)},
                               data=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json["errcode"] == 40035


async def test_send_update_recall_as_the_user_sees_it(
    sim: simulator.RunningSimulator, http: aiohttp.ClientSession
) -> None:
    tok = await token(http, sim.base_url)
    q = {"access_token": tok}
    sent = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2", params=q,
                           json={"agent_id": AGENT, "userid_list": "alice,bob", "msg": oa()})
    task_id = sent["task_id"]
    cards = (await get_json(http, f"{sim.base_url}/_sim/inbox/bob"))["cards"]
    assert cards[0]["status_bar"] == {"value": "待审批", "bg": "0xFFFF9D46", "colour": "orange"}
    assert cards[0]["read"] is False and cards[0]["recalled"] is False

    await post_json(http, f"{sim.base_url}/_sim/read", json={"task_id": task_id, "userid": "bob"})
    updated = await post_json(http, f"{sim.base_url}{BASE}status_bar/update", params=q,
                              json={"agent_id": AGENT, "task_id": task_id, "status_value": "已同意",
                                    "status_bg": "0xFF78C06E"})
    assert updated["errcode"] == 0
    for user in ("alice", "bob"):
        card = (await get_json(http, f"{sim.base_url}/_sim/inbox/{user}"))["cards"][0]
        assert card["status_bar"] == {"value": "已同意", "bg": "0xFF78C06E", "colour": "green"}
        assert card["read"] is (user == "bob")
    result = await post_json(http, f"{sim.base_url}{BASE}getsendresult", params=q,
                             json={"agent_id": AGENT, "task_id": task_id})
    assert result["send_result"]["read_user_id_list"] == ["bob"]
    assert result["send_result"]["unread_user_id_list"] == ["alice"]

    recalled = await post_json(http, f"{sim.base_url}{BASE}recall", params=q,
                               json={"agent_id": AGENT, "msg_task_id": task_id})
    assert recalled["errcode"] == 0
    assert (await get_json(http, f"{sim.base_url}/_sim/inbox/alice"))["cards"][0]["recalled"] is True
    task = await get_json(http, f"{sim.base_url}/_sim/tasks/{task_id}")
    assert task["recalled_at"] and [u["status_value"] for u in task["updates"]] == ["已同意"]
    async with http.get(f"{sim.base_url}/_sim/tasks/1") as r:
        assert r.status == 404 and "error" in await r.json()


async def test_clock_advance_over_http_closes_the_windows(
    sim: simulator.RunningSimulator, http: aiohttp.ClientSession
) -> None:
    tok = await token(http, sim.base_url)
    sent = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                           json={"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    before = (await get_json(http, f"{sim.base_url}/_sim/clock"))["now"]
    moved = await post_json(http, f"{sim.base_url}/_sim/clock/advance", json={"seconds": 86401})
    assert moved["now"] > before
    tok = await token(http, sim.base_url)  # the old token expired with the clock
    progress = await post_json(http, f"{sim.base_url}{BASE}getsendprogress", params={"access_token": tok},
                               json={"agent_id": AGENT, "task_id": sent["task_id"]})
    assert progress["progress"] == {"progress_in_percent": 100, "status": 2}
    recall = await post_json(http, f"{sim.base_url}{BASE}recall", params={"access_token": tok},
                             json={"agent_id": AGENT, "msg_task_id": sent["task_id"]})
    assert recall["errcode"] == 400002


async def test_faults_over_http(sim: simulator.RunningSimulator, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    plan = await post_json(http, f"{sim.base_url}/_sim/faults", json={"rate": 1.0, "kinds": ["http_500"], "seed": 3})
    assert plan["kinds"] == ["http_500"]
    async with http.post(f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                         json={"agent_id": AGENT, "userid_list": "u1", "msg": oa()}) as r:
        assert r.status in (500, 502) and not r.headers["Content-Type"].startswith("application/json")
    await post_json(http, f"{sim.base_url}/_sim/faults", json={"rate": 1.0, "kinds": ["timeout"], "timeout_s": 2})
    with pytest.raises(asyncio.TimeoutError):
        await http.post(f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                        json={"agent_id": AGENT, "userid_list": "u1", "msg": oa()},
                        timeout=aiohttp.ClientTimeout(total=0.2))
    async with http.delete(f"{sim.base_url}/_sim/faults") as r:
        assert (await r.json())["rate"] == 0
    ok = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                         json={"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    assert ok["errcode"] == 0
    stats = await get_json(http, f"{sim.base_url}/_sim/stats")
    assert stats["faults"] == {"http_500": 1, "timeout": 1} and stats["tasks"] == 1
    async with http.post(f"{sim.base_url}/_sim/faults", json={"rate": 2}) as r:
        assert r.status == 400 and "rate" in (await r.json())["error"]


async def test_users_calls_and_reset_over_http(sim: simulator.RunningSimulator, http: aiohttp.ClientSession) -> None:
    tok = await token(http, sim.base_url)
    users = await post_json(http, f"{sim.base_url}/_sim/users", json={"invalid": ["ghost"], "known": None})
    assert users == {"invalid": ["ghost"], "known": None}
    sent = await post_json(http, f"{sim.base_url}{BASE}asyncsend_v2", params={"access_token": tok},
                           json={"agent_id": AGENT, "userid_list": "u1,ghost", "msg": oa()})
    result = await post_json(http, f"{sim.base_url}{BASE}getsendresult", params={"access_token": tok},
                             json={"agent_id": AGENT, "task_id": sent["task_id"]})
    assert result["send_result"]["invalid_user_id_list"] == ["ghost"]
    calls = await get_json(http, f"{sim.base_url}/_sim/calls", params={"path": "asyncsend_v2"})
    assert calls["count"] == 1 and calls["calls"][0]["body"]["userid_list"] == "u1,ghost"
    assert tok not in json.dumps(calls)
    later = await get_json(http, f"{sim.base_url}/_sim/calls", params={"since": str(calls["next"] - 1)})
    assert calls["next"] == 3 and [c["call"] for c in later["calls"]] == ["getsendresult"]
    await post_json(http, f"{sim.base_url}/_sim/reset")
    assert (await get_json(http, f"{sim.base_url}/_sim/stats"))["tasks"] == 0
    assert (await get_json(http, f"{sim.base_url}/_sim/inbox/u1"))["cards"] == []


async def test_create_app_with_an_injected_fake_clock() -> None:
    clock = FakeClock()
    state = SimState(SimSettings(progress_done_after_s=10), clock=clock)
    async with TestClient(TestServer(simulator.create_app(state))) as client:
        r = await client.get("/gettoken", params={"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret})
        tok = (await r.json())["access_token"]
        r = await client.post(f"{BASE}asyncsend_v2", params={"access_token": tok},
                              json={"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
        task_id = (await r.json())["task_id"]
        await client.post("/_sim/clock/advance", json={"seconds": 5})
        r = await client.post(f"{BASE}getsendprogress", params={"access_token": tok},
                              json={"agent_id": AGENT, "task_id": task_id})
        assert (await r.json())["progress"] == {"progress_in_percent": 50, "status": 1}
        assert client.server.app[simulator.SIM_STATE] is state
