"""The TOP router's envelope without sockets: faults and limits seen through it, format, simplify."""

from __future__ import annotations

import json

from bridge.clock import FakeClock
from bridge.simulator import router
from bridge.simulator.model import FaultPlan, SimSettings
from bridge.simulator.state import DEMO_APP, SimState

SEND = "dingtalk.oapi.message.corpconversation.asyncsend_v2"
MSG = json.dumps({"msgtype": "text", "text": {"content": "hi"}})


def _state(**settings: object) -> tuple[SimState, str]:
    state = SimState(SimSettings(**settings), clock=FakeClock(), seed=1)  # type: ignore[arg-type]
    token, _ = state.gettoken(DEMO_APP.app_key, DEMO_APP.app_secret)
    return state, token


def _send(state: SimState, token: str, **extra: str) -> dict[str, object]:
    answer = router.handle(state, "POST", {"method": SEND, "session": token, "agent_id": str(DEMO_APP.agent_id),
                                           "userid_list": "u1", "msg": MSG, **extra})
    assert answer.status == 200 and answer.body is not None
    return answer.body


def test_the_qps_limit_answers_app_call_limited() -> None:
    state, token = _state(qps=1)
    assert "error_response" not in _send(state, token)
    err = _send(state, token)["error_response"]
    assert isinstance(err, dict) and err["code"] == router.TopCode.APP_CALL_LIMITED and err["sub_code"] == "90018"


def test_a_token_fault_is_an_invalid_session_and_really_invalidates_it() -> None:
    state, token = _state()
    state.set_faults(FaultPlan(rate=1.0, kinds=("token",), limit=1))
    err = _send(state, token)["error_response"]
    assert isinstance(err, dict) and err["code"] == router.TopCode.INVALID_SESSION
    again = _send(state, token)["error_response"]
    assert isinstance(again, dict) and again["code"] == router.TopCode.INVALID_SESSION  # no fault left: gone


def test_an_http_fault_passes_through_and_xml_is_refused() -> None:
    state, token = _state()
    state.set_faults(FaultPlan(rate=1.0, kinds=("http_500",), limit=1))
    answer = router.handle(state, "POST", {"method": SEND, "session": token, "agent_id": "1", "msg": MSG})
    assert answer.status in (500, 502) and answer.body is None
    err = _send(state, token, format="xml")["error_response"]
    assert isinstance(err, dict) and err["code"] == router.TopCode.INVALID_FORMAT


def test_simplify_leaves_the_wrapper_out_of_the_corp_shape() -> None:
    state, token = _state()
    task_id = _send(state, token)["dingtalk_oapi_message_corpconversation_asyncsend_v2_response"]
    assert isinstance(task_id, dict)
    answer = router.handle(state, "POST", {"method": "dingtalk.corp.message.corpconversation.getsendresult",
                                           "session": token, "agent_id": str(DEMO_APP.agent_id),
                                           "task_id": str(task_id["task_id"]), "simplify": "true"})
    assert answer.body is not None and answer.body["result"]["success"] is True
    assert answer.body["result"]["send_result"]["unread_user_id_list"] == ["u1"]
