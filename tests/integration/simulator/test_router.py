"""The legacy gettoken pair and the TOP router `POST /router/rest` (issue 14 part 4), spoken raw over HTTP."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from bridge.simulator import server as simulator
from bridge.simulator.state import DEMO_APP

MSG = {"msgtype": "text", "text": {"content": "hi"}}
SEND = "dingtalk.oapi.message.corpconversation.asyncsend_v2"


async def _get(http: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    async with http.get(url, params=params) as r:
        answer: dict[str, Any] = await r.json()
        return answer


async def _top(http: aiohttp.ClientSession, base: str, *, form: bool = False, **params: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"data": params} if form else {"params": params}
    async with http.post(f"{base}/router/rest", **kwargs) as r:
        assert r.status == 200
        answer: dict[str, Any] = await r.json()
        return answer


async def test_gettoken_accepts_the_legacy_corpid_pair_and_answers_40089_for_a_bad_one() -> None:
    async with simulator.running() as sim, aiohttp.ClientSession() as http:
        legacy = await _get(http, f"{sim.base_url}/gettoken", corpid=DEMO_APP.app_key, corpsecret=DEMO_APP.app_secret)
        modern = await _get(http, f"{sim.base_url}/gettoken", appkey=DEMO_APP.app_key, appsecret=DEMO_APP.app_secret)
        bad = await _get(http, f"{sim.base_url}/gettoken", corpid=DEMO_APP.app_key, corpsecret="wrong")
        no_secret = await _get(http, f"{sim.base_url}/gettoken", corpid=DEMO_APP.app_key)
        calls = sim.state.calls(path="/gettoken")
    assert legacy["errcode"] == 0 and legacy["access_token"] == modern["access_token"]  # the same app's token
    assert bad == {"errcode": 40089, "errmsg": "不合法的corpId或corpSecret"}
    assert no_secret["errcode"] == 41004
    assert DEMO_APP.app_secret not in json.dumps(calls, ensure_ascii=False)  # the call log masks corpsecret


async def test_the_router_sends_reads_progress_and_result_in_the_top_envelope() -> None:
    async with simulator.running() as sim, aiohttp.ClientSession() as http:
        tok = (await _get(http, f"{sim.base_url}/gettoken", appkey=DEMO_APP.app_key,
                          appsecret=DEMO_APP.app_secret))["access_token"]
        sent = await _top(http, sim.base_url, method=SEND, session=tok, format="json", v="2.0", simplify="false",
                          timestamp="2026-12-02 10:00:00", agent_id=str(DEMO_APP.agent_id), userid_list="u1,u2",
                          to_all_user="false", msg=json.dumps(MSG))
        inner = sent["dingtalk_oapi_message_corpconversation_asyncsend_v2_response"]
        assert inner["errcode"] == 0 and isinstance(inner["task_id"], int)
        task_id = str(inner["task_id"])
        sim.state.advance(5)
        progress = await _top(http, sim.base_url, form=True, method="dingtalk.corp.message.corpconversation."
                              "getsendprogress", session=tok, agent_id=str(DEMO_APP.agent_id), task_id=task_id)
        result = await _top(http, sim.base_url, method="dingtalk.corp.message.corpconversation.getsendresult",
                            session=tok, agent_id=str(DEMO_APP.agent_id), task_id=task_id)
        simple = await _top(http, sim.base_url, method="dingtalk.oapi.message.corpconversation.getsendprogress",
                            session=tok, agent_id=str(DEMO_APP.agent_id), task_id=task_id, simplify="true")
        calls = sim.state.calls(path="asyncsend_v2")
    assert sorted(sim.state.tasks[int(task_id)].delivered) == ["u1", "u2"]
    p = progress["dingtalk_corp_message_corpconversation_getsendprogress_response"]["result"]
    assert p == {"ding_open_errcode": 0, "error_msg": "", "success": True,
                 "progress": {"progress_in_percent": 100, "status": 2}}
    r = result["dingtalk_corp_message_corpconversation_getsendresult_response"]["result"]
    assert r["success"] is True and sorted(r["send_result"]["unread_user_id_list"]) == ["u1", "u2"]
    assert simple["errcode"] == 0 and simple["progress"]["status"] == 2  # simplify=true: no wrapper
    assert calls[-1]["via"] == SEND and tok not in json.dumps(calls)  # logged like /topapi/, session masked


async def test_router_errors_are_top_errors() -> None:
    async with simulator.running() as sim, aiohttp.ClientSession() as http:
        tok = (await _get(http, f"{sim.base_url}/gettoken", appkey=DEMO_APP.app_key,
                          appsecret=DEMO_APP.app_secret))["access_token"]
        unknown = await _top(http, sim.base_url, method="dingtalk.oapi.user.get", session=tok)
        missing = await _top(http, sim.base_url, session=tok)
        bad_session = await _top(http, sim.base_url, method=SEND, session="nope", agent_id="1", msg=json.dumps(MSG))
        no_session = await _top(http, sim.base_url, method=SEND, agent_id="1", msg=json.dumps(MSG))
        true_caps = await _top(http, sim.base_url, method=SEND, session=tok, agent_id=str(DEMO_APP.agent_id),
                               userid_list="u1", to_all_user="True", msg=json.dumps(MSG))
        wrong_agent = await _top(http, sim.base_url, method=SEND, session=tok, agent_id="7", userid_list="u1",
                                 msg=json.dumps(MSG))
        corp_bad_task = await _top(http, sim.base_url, method="dingtalk.corp.message.corpconversation.getsendresult",
                                   session=tok, agent_id=str(DEMO_APP.agent_id), task_id="1")
    assert unknown["error_response"]["code"] == 22 and "dingtalk.oapi.user.get" in unknown["error_response"]["sub_msg"]
    assert missing["error_response"]["code"] == 21
    assert bad_session["error_response"]["code"] == 27 and no_session["error_response"]["code"] == 26
    assert true_caps["error_response"] | {"request_id": ""} == {"code": 41, "msg": "Invalid arguments:to_all_user",
                                                                "request_id": ""}
    assert wrong_agent["dingtalk_oapi_message_corpconversation_asyncsend_v2_response"]["errcode"] == 41020
    r = corp_bad_task["dingtalk_corp_message_corpconversation_getsendresult_response"]["result"]
    assert r["success"] is False and r["ding_open_errcode"] == 40035
