"""PyPI's `dingtalk-sdk` (007gzs, module `dingtalk`) as a real client of the simulator on 127.0.0.1: a token from
SecretClient's legacy corpid/corpsecret pair, a work notice through its wrapped message API (the TOP router),
then progress and result. Nobody here wrote that library, so it checks the simulator's wire format."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.simulator import server as simulator
from bridge.simulator.state import DEMO_APP

# from the subpackages: dingding-sdk (also in the test extra) installs a top-level `dingtalk` too, and whichever
# is installed last owns dingtalk/__init__.py
client_mod = pytest.importorskip("dingtalk.client", reason="the test extra installs dingtalk-sdk")
exceptions_mod = pytest.importorskip("dingtalk.core.exceptions", reason="dingtalk-sdk's exceptions")


class SimClient(client_mod.SecretClient):  # type: ignore[misc]
    """SecretClient with its router moved: the library sends TOP calls to https://eco.taobao.com/router/rest
    (hard-coded) and everything else to API_BASE_URL; here both go to the simulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__(DEMO_APP.app_key, DEMO_APP.app_secret)
        self.API_BASE_URL = base_url + "/"

    def _handle_pre_top_request(self, params: dict[str, Any], uri: str) -> tuple[dict[str, Any], str]:
        return super()._handle_pre_top_request(params, self.API_BASE_URL.rstrip("/") + uri)  # type: ignore[no-any-return]


def _drive(base_url: str) -> dict[str, Any]:
    """Blocking, as the library is: run in a thread while the simulator serves on the event loop."""
    client = SimClient(base_url)
    msg = {"msgtype": "oa", "oa": {"message_url": "https://erp.example/po/1", "head": {"text": "ERP"},
                                   "body": {"title": "PO-1"}}}
    task_id = client.message.asyncsend_v2(msg, DEMO_APP.agent_id, userid_list=["manager01", "user02"])
    return {"token": client.access_token, "task_id": task_id,
            "progress": client.message.getsendprogress(DEMO_APP.agent_id, task_id),
            "result": client.message.getsendresult(DEMO_APP.agent_id, task_id)}


async def test_dingtalk_sdk_gets_a_token_sends_and_reads_progress_and_result() -> None:
    async with simulator.running() as sim:
        out = await asyncio.to_thread(_drive, sim.base_url)
        calls = sim.state.calls()
    assert [c["call"] for c in calls] == ["gettoken", "asyncsend_v2", "getsendprogress", "getsendresult"]
    assert calls[0]["query"]["corpid"] == DEMO_APP.app_key  # the legacy pair, not appkey/appsecret
    assert [c.get("via") for c in calls[1:]] == ["dingtalk.oapi.message.corpconversation.asyncsend_v2",
                                                  "dingtalk.corp.message.corpconversation.getsendprogress",
                                                  "dingtalk.corp.message.corpconversation.getsendresult"]
    assert isinstance(out["task_id"], int) and out["task_id"] in sim.state.tasks
    assert set(out["progress"]) == {"progress_in_percent", "status"}
    assert sorted(out["result"]["unread_user_id_list"]) == ["manager01", "user02"]
    assert [c["title"] for c in sim.state.inbox("manager01")] == ["PO-1"]


async def test_dingtalk_sdk_sees_a_wrong_agent_as_41020() -> None:
    def send(base_url: str) -> int:
        client = SimClient(base_url)
        try:
            client.message.asyncsend_v2({"msgtype": "text", "text": {"content": "x"}}, 7, userid_list=["u1"])
        except exceptions_mod.DingTalkClientException as exc:
            return int(exc.errcode)
        return 0

    async with simulator.running() as sim:
        assert await asyncio.to_thread(send, sim.base_url) == 41020
