"""What third-party DingTalk libraries send (issue 14 part 4): a JSON null list is an absent list, and the
agent is checked before the lists (so 41020 is not masked by 40035)."""

from __future__ import annotations

import aiohttp

from bridge.simulator import server as simulator
from bridge.simulator.state import DEMO_APP

SEND = "/topapi/message/corpconversation/asyncsend_v2"
MSG = {"msgtype": "text", "text": {"content": "hi"}}


async def _send(body: dict[str, object]) -> dict[str, object]:
    async with simulator.running() as sim, aiohttp.ClientSession() as http:
        async with http.get(f"{sim.base_url}/gettoken",
                            params={"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret}) as r:
            tok = (await r.json())["access_token"]
        async with http.post(f"{sim.base_url}{SEND}", params={"access_token": tok}, json=body) as r:
            answer: dict[str, object] = await r.json()
            return answer


async def test_a_null_dept_id_list_is_treated_as_absent() -> None:
    answer = await _send({"agent_id": DEMO_APP.agent_id, "userid_list": "u1", "dept_id_list": None, "msg": MSG})
    assert answer["errcode"] == 0 and "task_id" in answer


async def test_the_agent_is_checked_before_the_lists() -> None:
    answer = await _send({"agent_id": DEMO_APP.agent_id + 1, "userid_list": 5, "msg": MSG})
    assert answer["errcode"] == 41020
