"""The simulated DingTalk's rules and wire format, driven in-process with a FakeClock (no sockets)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.simulator import wire as sim_wire
from bridge.simulator.state import DEMO_APP, FAULT_KINDS, FaultPlan, SimApp, SimError, SimSettings, SimState

SEND = "/topapi/message/corpconversation/asyncsend_v2"
PROGRESS = "/topapi/message/corpconversation/getsendprogress"
RESULT = "/topapi/message/corpconversation/getsendresult"
UPDATE = "/topapi/message/corpconversation/status_bar/update"
RECALL = "/topapi/message/corpconversation/recall"
AGENT = DEMO_APP.agent_id
REQUEST_ID = re.compile(r"^[a-z0-9]{12,13}$")


def oa(title: str = "报销单 #1", bar: str | None = "待审批", bg: str = "0xFFFF9D46") -> dict[str, Any]:
    body: dict[str, Any] = {"message_url": "https://erp.example/a/1", "head": {"bgcolor": "FFBBBBBB", "text": "ERP"},
                            "body": {"title": title, "form": [{"key": "金额", "value": "15.60"}]}}
    if bar is not None:
        body["status_bar"] = {"status_value": bar, "status_bg": bg}
    return {"msgtype": "oa", "oa": body}


def make(clock: FakeClock, **settings: Any) -> SimState:
    return SimState(SimSettings(**settings), clock=clock, seed=7)


def token_of(state: SimState) -> str:
    return state.gettoken(DEMO_APP.app_key, DEMO_APP.app_secret)[0]


def call(state: SimState, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    query = {} if token is None else {"access_token": token}
    answer = sim_wire.handle(state, "POST", path, query, body)
    assert answer.status == 200 and answer.body is not None
    return answer.body


def send(state: SimState, userids: str = "u1,u2", msg: Any = None, **extra: Any) -> int:
    body = call(state, SEND, {"agent_id": AGENT, "userid_list": userids, "msg": msg or oa(), **extra},
                token_of(state))
    assert body["errcode"] == 0, body
    return int(body["task_id"])


# --- tokens -------------------------------------------------------------------------------------------------
def test_gettoken_returns_the_same_token_and_extends_it(clock: FakeClock) -> None:
    state = make(clock)
    first = state.gettoken(DEMO_APP.app_key, DEMO_APP.app_secret)
    assert first[1] == 7200
    clock.advance(7000)
    assert state.gettoken(DEMO_APP.app_key, DEMO_APP.app_secret)[0] == first[0]
    clock.advance(7000)  # 14000 s after issue, but only 7000 s after the extension
    assert state.app_for_token(first[0]) == DEMO_APP
    clock.advance(200)
    with pytest.raises(SimError) as exc:
        state.app_for_token(first[0])
    assert (exc.value.errcode, exc.value.sub_code) == (88, "40014")
    fresh = state.gettoken(DEMO_APP.app_key, DEMO_APP.app_secret)[0]
    assert fresh != first[0] and state.tokens_issued == 2


def test_gettoken_wire_answers(clock: FakeClock) -> None:
    state = make(clock)
    ok = sim_wire.handle(state, "GET", "/gettoken", {"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret}).body
    assert ok is not None and ok["errcode"] == 0 and ok["expires_in"] == 7200 and "request_id" not in ok
    bad = sim_wire.handle(state, "GET", "/gettoken", {"appkey": DEMO_APP.app_key, "appsecret": "nope"}).body
    assert bad == {"errcode": 40096, "errmsg": "不合法的appKey或appSecret"}
    missing = sim_wire.handle(state, "GET", "/gettoken", {}).body
    assert missing == {"errcode": 40035, "errmsg": "缺少参数 corpid or appkey"}


def test_gettoken_calls_log_the_lifetime_they_gave(clock: FakeClock) -> None:
    state = make(clock, token_ttl_s=20.0)
    query = {"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret}
    sim_wire.handle(state, "GET", "/gettoken", query)
    clock.advance(12)
    sim_wire.handle(state, "GET", "/gettoken", query)  # the same token, extended: its lifetime now ends later
    sim_wire.handle(state, "GET", "/gettoken", {**query, "appsecret": "nope"})
    logged = state.calls(path="/gettoken")
    ends = [datetime.fromisoformat(c["expires_at"]) - datetime.fromisoformat(c["at"]) for c in logged[:2]]
    assert ends == [timedelta(seconds=20)] * 2 and "expires_at" not in logged[2]


def test_tokens_belong_to_one_app(clock: FakeClock) -> None:
    other = SimApp("dingotherapp", "other-secret", 2000002)
    state = SimState(SimSettings(apps=(DEMO_APP, other)), clock=clock)
    token = state.gettoken(other.app_key, other.app_secret)[0]
    body = call(state, SEND, {"agent_id": AGENT, "userid_list": "u1", "msg": oa()}, token)
    assert body["errcode"] == 41020 and "agentId" in body["errmsg"]
    assert token != token_of(state)


def test_token_envelopes_on_topapi(clock: FakeClock) -> None:
    state = make(clock)
    blank = call(state, SEND, {"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    assert blank["errcode"] == 88 and blank["sub_code"] == "40000" and blank["sub_msg"] == "access_token is blank"
    bad = call(state, SEND, {"agent_id": AGENT, "userid_list": "u1", "msg": oa()}, "not-a-token")
    assert bad["errcode"] == 88 and bad["sub_code"] == "40014"
    assert bad["errmsg"] == "ding talk error[subcode=40014,submsg=不合法的access_token]"
    assert REQUEST_ID.match(bad["request_id"])
    assert state.tasks == {}


# --- send, progress, result --------------------------------------------------------------------------------
def test_progress_moves_with_simulated_time(clock: FakeClock) -> None:
    state = make(clock, progress_done_after_s=2.0)
    task_id = send(state)
    token = token_of(state)
    seen = []
    for _ in range(3):
        body = call(state, PROGRESS, {"agent_id": AGENT, "task_id": task_id}, token)
        seen.append((body["progress"]["status"], body["progress"]["progress_in_percent"]))
        clock.advance(1.0)
    assert seen == [(0, 0), (1, 50), (2, 100)]


def test_invalid_users_get_nothing(clock: FakeClock) -> None:
    state = make(clock, known_userids=frozenset({"u1", "u2", "u3"}))
    state.set_users(invalid=["u2"])
    task_id = send(state, "u1,u2,ghost")
    result = call(state, RESULT, {"agent_id": AGENT, "task_id": task_id}, token_of(state))["send_result"]
    assert result["invalid_user_id_list"] == ["u2", "ghost"]
    assert result["unread_user_id_list"] == ["u1"]
    assert state.inbox("u2") == [] and state.inbox("ghost") == []
    assert [c["task_id"] for c in state.inbox("u1")] == [task_id]


def test_same_content_once_per_shanghai_day(clock: FakeClock) -> None:
    state = make(clock)  # FakeClock starts 02:00 UTC = 10:00 in Shanghai
    first = send(state, "u1")
    clock.advance(13 * 3600)  # 23:00 Shanghai, same day
    second = send(state, "u1,u2")
    result = state.result(DEMO_APP, AGENT, second)
    assert result["forbidden_user_id_list"] == ["u1"]
    assert result["forbidden_list"] == [{"code": "143106", "count": 1, "userid": "u1"}]
    assert result["unread_user_id_list"] == ["u2"]
    assert [c["task_id"] for c in state.inbox("u1")] == [first]
    different = send(state, "u1", msg=oa(title="报销单 #2"))
    assert state.result(DEMO_APP, AGENT, different)["unread_user_id_list"] == ["u1"]
    clock.advance(3600)  # 00:00 the next day in Shanghai
    third = send(state, "u1")
    assert state.result(DEMO_APP, AGENT, third)["unread_user_id_list"] == ["u1"]


def test_daily_cap_per_user(clock: FakeClock) -> None:
    state = make(clock, daily_cap=2)
    ids = [send(state, "u1", msg=oa(title=f"#{i}")) for i in range(3)]
    result = state.result(DEMO_APP, AGENT, ids[2])
    assert result["forbidden_list"] == [{"code": "143105", "count": 2, "userid": "u1"}]
    assert [c["task_id"] for c in state.inbox("u1")] == ids[:2]


def test_read_marks_move_users_between_lists(clock: FakeClock) -> None:
    state = make(clock)
    task_id = send(state, "u1,u2")
    state.mark_read(task_id, "u2")
    result = state.result(DEMO_APP, AGENT, task_id)
    assert (result["read_user_id_list"], result["unread_user_id_list"]) == (["u2"], ["u1"])
    assert [c["read"] for c in state.inbox("u2")] == [True]
    with pytest.raises(KeyError):
        state.mark_read(task_id, "u9")


def test_result_and_progress_windows(clock: FakeClock) -> None:
    state = make(clock)
    task_id = send(state)
    clock.advance(24 * 3600 + 1)
    token = token_of(state)
    assert call(state, RESULT, {"agent_id": AGENT, "task_id": task_id}, token)["errcode"] == 40035
    assert call(state, PROGRESS, {"agent_id": AGENT, "task_id": task_id}, token)["errcode"] == 0
    clock.advance(6 * 24 * 3600)
    assert call(state, PROGRESS, {"agent_id": AGENT, "task_id": task_id}, token_of(state))["errcode"] == 40035


# --- the status bar -----------------------------------------------------------------------------------------
def test_status_bar_update_changes_every_recipients_card(clock: FakeClock) -> None:
    state = make(clock)
    task_id = send(state, "u1,u2")
    assert state.inbox("u1")[0]["status_bar"] == {"value": "待审批", "bg": "0xFFFF9D46", "colour": "orange"}
    body = call(state, UPDATE, {"agent_id": AGENT, "task_id": task_id, "status_value": "已同意",
                                "status_bg": "0xFF78C06E"}, token_of(state))
    assert body["errcode"] == 0 and REQUEST_ID.match(body["request_id"])
    for user in ("u1", "u2"):
        assert state.inbox(user)[0]["status_bar"] == {"value": "已同意", "bg": "0xFF78C06E", "colour": "green"}


@pytest.mark.parametrize(("userids", "extra", "honoured"), [
    ("u1,u2,u3,u4,u5", {}, True),
    ("u1,u2,u3,u4,u5,u6", {}, False),
    ("u1", {"dept_id_list": "10"}, False),
])
def test_five_userid_rule_ignore_mode(clock: FakeClock, userids: str, extra: dict[str, Any], honoured: bool) -> None:
    state = make(clock, departments={10: ("d1",)})
    task_id = send(state, userids, **extra)
    assert (state.inbox("u1")[0]["status_bar"] is not None) is honoured
    body = call(state, UPDATE, {"agent_id": AGENT, "task_id": task_id, "status_value": "已同意"}, token_of(state))
    assert body["errcode"] == (0 if honoured else 40035)


def test_five_userid_rule_error_mode(clock: FakeClock) -> None:
    state = make(clock, status_bar_violation="error")
    body = call(state, SEND, {"agent_id": AGENT, "userid_list": "u1,u2,u3,u4,u5,u6", "msg": oa()}, token_of(state))
    assert body["errcode"] == 40035 and state.tasks == {} and state.inbox("u1") == []
    assert send(state, "u1,u2,u3,u4,u5,u6", msg=oa(bar=None))  # no status bar: fine


def test_status_bar_update_window_is_seven_days(clock: FakeClock) -> None:
    state = make(clock)
    task_id = send(state, "u1")
    clock.advance(7 * 24 * 3600)
    state.update_status_bar(DEMO_APP, AGENT, task_id, "已拒绝", "0xFFF65E5E")
    clock.advance(1)
    with pytest.raises(SimError) as exc:
        state.update_status_bar(DEMO_APP, AGENT, task_id, "已撤销", "0xFF858E99")
    assert exc.value.errcode == 40035
    assert state.inbox("u1")[0]["status_bar"]["value"] == "已拒绝"


def test_status_bar_update_needs_an_oa_task_of_this_agent(clock: FakeClock) -> None:
    state = make(clock)
    text_task = send(state, "u1", msg={"msgtype": "text", "text": {"content": "hi"}})
    with pytest.raises(SimError):
        state.update_status_bar(DEMO_APP, AGENT, text_task, "已同意", None)
    with pytest.raises(SimError) as exc:
        state.update_status_bar(DEMO_APP, AGENT, 123456789012, "已同意", None)
    assert exc.value.errcode == 40035


# --- recall -------------------------------------------------------------------------------------------------
def test_recall_once_within_24_hours(clock: FakeClock) -> None:
    state = make(clock)
    task_id = send(state, "u1")
    late = send(state, "u2")
    clock.advance(24 * 3600)
    token = token_of(state)
    assert call(state, RECALL, {"agent_id": AGENT, "msg_task_id": task_id}, token)["errcode"] == 0
    assert state.inbox("u1")[0]["recalled"] is True
    again = call(state, RECALL, {"agent_id": AGENT, "msg_task_id": task_id}, token)
    assert again["errcode"] == 400002 and again["errmsg"] == "agentId不合法或taskId不合法"
    clock.advance(1)
    assert call(state, RECALL, {"agent_id": AGENT, "msg_task_id": late}, token)["errcode"] == 400002
    assert state.inbox("u2")[0]["recalled"] is False
    with pytest.raises(SimError):  # a recalled card's status bar cannot change any more
        state.update_status_bar(DEMO_APP, AGENT, task_id, "已同意", None)


# --- wire formats -------------------------------------------------------------------------------------------
def test_scalars_as_strings_and_msg_as_a_json_string(clock: FakeClock) -> None:
    state = make(clock)
    body = call(state, SEND, {"agent_id": str(AGENT), "userid_list": "u1", "to_all_user": "false",
                              "msg": json.dumps(oa())}, token_of(state))
    assert body["errcode"] == 0 and isinstance(body["task_id"], int) and body["task_id"] > 10**11
    task_id = str(body["task_id"])
    progress = call(state, PROGRESS, {"agent_id": str(AGENT), "task_id": task_id}, token_of(state))
    assert progress["errcode"] == 0


def test_token_may_come_as_a_body_field(clock: FakeClock) -> None:
    state = make(clock)
    body = call(state, SEND, {"access_token": token_of(state), "agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    assert body["errcode"] == 0


@pytest.mark.parametrize(("body", "errcode"), [
    ({"userid_list": "", "msg": oa()}, 40035),
    ({"userid_list": "u1,,u2", "msg": oa()}, 40035),
    ({"userid_list": "u1"}, 40035),
    ({"userid_list": "u1", "msg": "{not json"}, 40035),
    ({"userid_list": "u1", "msg": {"msgtype": "sms", "sms": {}}}, 40008),
    ({"userid_list": "u1", "msg": {"msgtype": "text", "text": {"content": "长" * 700}}}, 40035),
    ({"userid_list": "u1", "msg": oa(), "to_all_user": "True"}, 41),
    ({"msg": oa()}, 40035),
    ({"userid_list": "u1", "msg": oa(), "agent_id": 999}, 41020),
])
def test_bad_send_parameters(clock: FakeClock, body: dict[str, Any], errcode: int) -> None:
    state = make(clock)
    answer = call(state, SEND, {"agent_id": AGENT, **body}, token_of(state))
    assert answer["errcode"] == errcode and REQUEST_ID.match(answer["request_id"])
    assert state.tasks == {}


def test_recipient_limits_are_configurable(clock: FakeClock) -> None:
    state = make(clock, max_userids=3)
    answer = call(state, SEND, {"agent_id": AGENT, "userid_list": "a,b,c,d", "msg": oa(bar=None)}, token_of(state))
    assert answer["errcode"] == 41029


def test_task_of_another_agent_or_missing_task_id(clock: FakeClock) -> None:
    other = SimApp("dingotherapp", "other-secret", 2000002)
    state = SimState(SimSettings(apps=(DEMO_APP, other)), clock=clock)
    task_id = send(state, "u1")
    other_token = state.gettoken(other.app_key, other.app_secret)[0]
    answer = call(state, PROGRESS, {"agent_id": other.agent_id, "task_id": task_id}, other_token)
    assert answer["errcode"] == 40035
    assert call(state, PROGRESS, {"agent_id": AGENT}, token_of(state))["errcode"] == 40035
    assert call(state, RECALL, {"agent_id": other.agent_id, "msg_task_id": task_id}, other_token)["errcode"] == 400002


def test_unknown_topapi_path_answers_22(clock: FakeClock) -> None:
    state = make(clock)
    answer = call(state, "/topapi/v2/user/notexist", {}, token_of(state))
    assert answer["errcode"] == 22 and "dingtalk.oapi.v2.user.notexist" in answer["sub_msg"]


def test_call_log_masks_the_token_and_filters(clock: FakeClock) -> None:
    state = make(clock)
    token = token_of(state)
    send(state, "u1")
    call(state, PROGRESS, {"agent_id": AGENT, "task_id": 1}, token)
    log = state.calls()
    assert [c["call"] for c in log] == ["asyncsend_v2", "getsendprogress"]
    assert token not in json.dumps(log) and log[0]["query"]["access_token"].count("*") == 4
    assert [c["errcode"] for c in state.calls(path="getsendprogress")] == [40035]
    assert [c["index"] for c in state.calls(since=1)] == [1]
    assert state.stats()["per_call"] == {"asyncsend_v2": 1, "getsendprogress": 1}


# --- QPS ----------------------------------------------------------------------------------------------------
def test_qps_limit_per_endpoint_in_a_rolling_second(clock: FakeClock) -> None:
    state = make(clock, qps=3)
    token = token_of(state)
    task_id = send(state, "u1")
    clock.advance(0.5)
    codes = [call(state, PROGRESS, {"agent_id": AGENT, "task_id": task_id}, token)["errcode"] for _ in range(4)]
    assert codes == [0, 0, 0, 88]
    throttled = state.calls()[-1]
    assert throttled["sub_code"] == "90018"
    assert call(state, RESULT, {"agent_id": AGENT, "task_id": task_id}, token)["errcode"] == 0  # another endpoint
    clock.advance(0.999)
    assert call(state, PROGRESS, {"agent_id": AGENT, "task_id": task_id}, token)["errcode"] == 88
    clock.advance(0.001)
    assert call(state, PROGRESS, {"agent_id": AGENT, "task_id": task_id}, token)["errcode"] == 0
    assert state.stats()["throttled"] == 2


def test_throttled_envelope(clock: FakeClock) -> None:
    state = make(clock, qps=1)
    send(state, "u1")
    body = call(state, SEND, {"agent_id": AGENT, "userid_list": "u2", "msg": oa()}, token_of(state))
    assert body["errcode"] == 88 and body["sub_code"] == "90018"
    assert body["errmsg"] == f"ding talk error[subcode=90018,submsg={body['sub_msg']}]"
    assert len(state.tasks) == 1


# --- faults -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k != "delay"])
def test_a_faulted_send_has_no_side_effect(clock: FakeClock, kind: str) -> None:
    state = make(clock)
    token = token_of(state)
    state.set_faults(FaultPlan(rate=1.0, kinds=(kind,), limit=1, timeout_s=3.0))
    answer = sim_wire.handle(state, "POST", SEND, {"access_token": token},
                             {"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    assert state.tasks == {} and state.inbox("u1") == []
    assert state.stats()["faults"] == {kind: 1} and state.calls()[-1]["fault"] == kind
    expected: dict[str, tuple[int, Any, Any]] = {
        "errcode_-1": (200, -1, None), "throttle": (200, 88, "90018"), "throttle_global": (200, 88, "90002"),
        "token": (200, 88, "40014"), "http_500": (answer.status, None, None), "timeout": (504, None, None),
        "ip_ban": (200, None, None),
    }
    status, errcode, sub_code = expected[kind]
    assert (answer.status, answer.errcode) == (status, errcode)
    if answer.body is not None:
        assert answer.body.get("sub_code") == sub_code
    else:
        assert answer.text and answer.content_type == "text/html"
    if kind == "http_500":
        assert answer.status in (500, 502)
    assert answer.delay_s == (3.0 if kind == "timeout" else 0.0)
    # the fault was the only one (limit=1): the same call now works, except that a token fault killed the token
    again = call(state, SEND, {"agent_id": AGENT, "userid_list": "u1", "msg": oa()}, token)
    assert again["errcode"] == (88 if kind == "token" else 0)
    if kind == "token":
        assert again["sub_code"] == "40014" and token_of(state) != token


def test_delay_fault_answers_correctly_but_late(clock: FakeClock) -> None:
    state = make(clock)
    token = token_of(state)
    state.set_faults(FaultPlan(rate=1.0, kinds=("delay",), delay_s=0.25))
    answer = sim_wire.handle(state, "POST", SEND, {"access_token": token},
                             {"agent_id": AGENT, "userid_list": "u1", "msg": oa()})
    assert answer.errcode == 0 and answer.delay_s == 0.25 and len(state.tasks) == 1


def test_faults_are_deterministic_for_a_seed(clock: FakeClock) -> None:
    def run() -> list[Any]:
        state = make(FakeClock(), qps=0)
        token = token_of(state)
        state.set_faults(FaultPlan(rate=0.5, kinds=("errcode_-1", "throttle", "http_500"), seed=42))
        body = {"agent_id": AGENT, "task_id": 1}
        return [sim_wire.handle(state, "POST", PROGRESS, {"access_token": token}, body).status * 1000
                + (state.calls()[-1]["errcode"] or 0) for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert len(set(first)) >= 3  # a mix of faults and the real (40035) answer


def test_faults_can_target_calls_and_gettoken(clock: FakeClock) -> None:
    state = make(clock)
    state.set_faults(FaultPlan(rate=1.0, kinds=("errcode_-1",), calls=("recall",)))
    task_id = send(state, "u1")
    assert call(state, RECALL, {"agent_id": AGENT, "msg_task_id": task_id}, token_of(state))["errcode"] == -1
    state.set_faults(FaultPlan(rate=1.0, kinds=("throttle", "token"), gettoken=True))
    answer = sim_wire.handle(state, "GET", "/gettoken", {"appkey": DEMO_APP.app_key, "appsecret": DEMO_APP.app_secret})
    assert answer.body is not None and answer.body["errcode"] == 90018 and "request_id" not in answer.body


def test_fault_plan_validation() -> None:
    with pytest.raises(ValueError):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError):
        FaultPlan(rate=0.5, kinds=("explode",))


def test_reset_forgets_tasks_but_keeps_tokens(clock: FakeClock) -> None:
    state = make(clock)
    token = token_of(state)
    send(state, "u1")
    state.set_faults(FaultPlan(rate=1.0))
    state.reset()
    assert state.tasks == {} and state.inbox("u1") == [] and state.calls() == [] and state.faults.rate == 0
    assert send(state, "u1")  # same content again: the day's quota was forgotten too
    assert state.app_for_token(token) == DEMO_APP


def test_secrets_stay_out_of_reprs() -> None:
    assert DEMO_APP.app_secret not in repr(DEMO_APP)
    assert DEMO_APP.app_secret not in repr(SimSettings())
