"""The simulated DingTalk's wire format: one decoded HTTP request in, one `SimAnswer` out, no I/O.

Kept apart from the server so the exact envelopes can be unit-tested without sockets, and so the rules in
`bridge.simulator.state` never see strings that should be integers. It does what oapi.dingtalk.com does at its
edge: the errcode 22 answer for an unknown topapi path, the token from the query string (or a form field),
errcode 88 with a string `sub_code` for token and throttling errors on /topapi/, plain codes on /gettoken,
scalars accepted native or as strings ("123", "false"), `msg` as an object or a JSON string, ID lists as
comma-separated strings, the per-app per-endpoint QPS limit, and the injected faults. A faulted call has
no side effect, except "delay", which is answered correctly but late (`SimAnswer.delay_s`; the server
sleeps). Every call is written to the state's call log with the token masked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.secret import Secret
from bridge.simulator.directory import USER_CALLS
from bridge.simulator.model import SimApp, SimError, bad_param
from bridge.simulator.state import SimState

TOPAPI = "/topapi/"
PREFIX = "/topapi/message/corpconversation/"
CALL_NAMES = {
    "asyncsend_v2": "asyncsend_v2",
    "getsendprogress": "getsendprogress",
    "getsendresult": "getsendresult",
    "status_bar/update": "status_bar_update",
    "recall": "recall",
}
_MASKED_KEYS = ("access_token", "appsecret", "corpsecret", "session")
_BAN_PAGE = (
    "<!DOCTYPE html><html><head><title>访问被拒绝</title></head><body><h1>Access denied</h1>"
    "<p>punish: deny, source: x5. Your IP sent too many requests; try again in 5 minutes.</p></body></html>"
)


@dataclass(frozen=True, slots=True)
class SimAnswer:
    """What the server writes back: JSON (`body`) or raw text, after waiting `delay_s` real seconds."""

    status: int = 200
    body: dict[str, Any] | None = None
    text: str | None = None
    content_type: str = "application/json"
    delay_s: float = 0.0

    @property
    def errcode(self) -> int | None:
        return None if self.body is None else self.body.get("errcode")


def _mask(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (Secret(str(v)).masked() if k in _MASKED_KEYS else v) for k, v in params.items()}


def _envelope(state: SimState, exc: SimError, *, topapi: bool) -> dict[str, Any]:
    if exc.sub_code is not None:
        body: dict[str, Any] = {
            "errcode": 88, "sub_code": exc.sub_code, "sub_msg": exc.errmsg,
            "errmsg": f"ding talk error[subcode={exc.sub_code},submsg={exc.errmsg}]",
        }
    else:
        body = {"errcode": exc.errcode, "errmsg": exc.errmsg}
    if topapi:
        body["request_id"] = state.new_request_id()
    return body


def handle(
    state: SimState,
    method: str,
    path: str,
    query: Mapping[str, str],
    body: Mapping[str, Any] | None = None,
    *,
    body_error: str | None = None,
    via: str | None = None,
) -> SimAnswer:
    """Answer one request as DingTalk would, and log it (`via` names the TOP method a router call came as)."""
    body = dict(body or {})
    entry: dict[str, Any] = {
        "at": state.clock.now().isoformat(), "method": method, "path": path, "call": None,
        "query": _mask(query), "body": _mask(body), "fault": None,
    }
    if via is not None:
        entry["via"] = via
    state.record_call(entry)
    if path == "/gettoken":
        call = "gettoken"
        answer = _gettoken(state, method, query, entry)
    elif path.startswith(TOPAPI):
        call = CALL_NAMES.get(path.removeprefix(PREFIX), "unknown") if path.startswith(PREFIX) else "unknown"
        call = USER_CALLS.get(path, call)
        answer = _topapi(state, call, path, query, body, body_error, entry)
    else:
        call = "unknown"
        answer = SimAnswer(status=404, text="404: Not Found", content_type="text/plain")
    entry.update(call=call, status=answer.status, errcode=answer.errcode,
                 sub_code=answer.body.get("sub_code") if answer.body else None)
    state.per_call[call] += 1
    if answer.errcode != 0:
        state.errors_per_call[call] += 1
    return answer


def _gettoken(state: SimState, method: str, query: Mapping[str, str], entry: dict[str, Any]) -> SimAnswer:
    if method != "GET":
        return SimAnswer(status=405, text="405: Method Not Allowed", content_type="text/plain")
    fault = state.roll_fault("gettoken")
    if fault is not None:
        entry["fault"] = fault
        return _fault_answer(state, fault, None, topapi=False)
    try:
        if query.get("appkey") or not query.get("corpid"):
            token, expires_in = state.gettoken(query.get("appkey"), query.get("appsecret"))
        else:  # the legacy pair (dingtalk-sdk's SecretClient sends corpid / corpsecret)
            token, expires_in = state.gettoken(query.get("corpid"), query.get("corpsecret"), legacy=True)
    except SimError as exc:
        return SimAnswer(body=_envelope(state, exc, topapi=False))
    expiry = state.token_expiry(token)
    entry["expires_at"] = None if expiry is None else expiry.isoformat()  # the lifetime this answer gave
    return SimAnswer(body={"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in})


def _topapi(
    state: SimState,
    call: str,
    path: str,
    query: Mapping[str, str],
    body: dict[str, Any],
    body_error: str | None,
    entry: dict[str, Any],
) -> SimAnswer:
    if call == "unknown":
        api = "dingtalk.oapi." + path.removeprefix(TOPAPI).strip("/").replace("/", ".")
        sub_msg = f"不合法ApiName，ApiName = {api}"
        return SimAnswer(body={"errcode": 22, "sub_msg": sub_msg, "errmsg": f"Invalid method[submsg={sub_msg}]",
                               "request_id": state.new_request_id()})
    token = query.get("access_token") or body.get("access_token")
    delay = 0.0
    fault = state.roll_fault(call)
    if fault is not None:
        entry["fault"] = fault
        if fault == "delay":
            delay = state.faults.delay_s
        else:
            return _fault_answer(state, fault, token, topapi=True, call=call)
    try:
        app = state.app_for_token(str(token) if token else None)
        if not state.admit(app.app_key, call):
            sub_msg = f"app[{app.app_key}] api[{call}] 调用频率超过限制({state.settings.qps}次/秒)"
            raise SimError(88, sub_msg, sub_code="90018")
        if body_error is not None:
            raise bad_param(body_error)
        result = _dispatch(state, app, call, body)
    except SimError as exc:
        return SimAnswer(body=_envelope(state, exc, topapi=True), delay_s=delay)
    return SimAnswer(body={"errcode": 0, "errmsg": "ok", **result, "request_id": state.new_request_id()},
                     delay_s=delay)


def _dispatch(state: SimState, app: SimApp, call: str, p: Mapping[str, Any]) -> dict[str, Any]:
    if call in USER_CALLS.values():
        return state.directory.answer(call, p)
    agent_id = _int(p, "agent_id")
    if call == "asyncsend_v2":
        state.check_agent(app, agent_id)  # DingTalk answers 41020 before it looks at the recipient lists
        task_id = state.send(app, agent_id=agent_id, msg=_msg(p), userids=_ids(p, "userid_list"),
                             dept_ids=[_to_int(d, "dept_id_list") for d in _ids(p, "dept_id_list")],
                             to_all_user=_bool(p, "to_all_user"))
        return {"task_id": task_id}
    if call == "getsendprogress":
        percent, status = state.progress(app, agent_id, _int(p, "task_id"))
        return {"progress": {"progress_in_percent": percent, "status": status}}
    if call == "getsendresult":
        return {"send_result": state.result(app, agent_id, _int(p, "task_id"))}
    if call == "status_bar_update":
        value = p.get("status_value")
        if not isinstance(value, str) or not value:
            raise bad_param("status_value is required")
        bg = p.get("status_bg")
        state.update_status_bar(app, agent_id, _int(p, "task_id"), value, str(bg) if bg else None)
        return {}
    state.recall(app, agent_id, _int(p, "msg_task_id", code=400002))
    return {}


def _to_int(value: Any, name: str, code: int = 40035) -> int:
    if isinstance(value, bool):
        raise SimError(code, f"不合法的参数: {name}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise SimError(code, f"不合法的参数: {name}")


def _int(p: Mapping[str, Any], name: str, *, code: int = 40035) -> int:
    if p.get(name) in (None, ""):
        raise SimError(41011 if name == "agent_id" else code, f"缺少参数 {name}")
    return _to_int(p[name], name, code)


def _bool(p: Mapping[str, Any], name: str) -> bool:
    value = p.get(name, False)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return str(value) == "true"
    raise SimError(41, f"Invalid arguments:{name}")


def _ids(p: Mapping[str, Any], name: str) -> list[str]:
    if p.get(name) is None:  # absent, or JSON null (dingding-sdk sends "dept_id_list": null): no ids
        return []
    value = p[name]
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    if items is None:
        raise bad_param(f"{name} must be a comma-separated string")
    ids = [str(i).strip() for i in items]
    if not ids or any(not i for i in ids):
        raise bad_param(f"{name} must not be empty or contain empty ids")
    return ids


def _msg(p: Mapping[str, Any]) -> dict[str, Any]:
    msg = p.get("msg")
    if msg is None or msg == "":
        raise bad_param("缺少参数 msg")
    if isinstance(msg, str):
        try:
            msg = json.loads(msg)
        except ValueError:
            raise bad_param("msg is not valid JSON") from None
    if not isinstance(msg, dict):
        raise bad_param("msg must be a JSON object")
    return msg


def _fault_answer(state: SimState, kind: str, token: Any, *, topapi: bool, call: str = "gettoken") -> SimAnswer:
    plan = state.faults
    if kind == "http_500":
        status = state.fault_choice((500, 502))
        return SimAnswer(status=status, text=f"<html><body><h1>{status} Server Error</h1></body></html>",
                         content_type="text/html")
    if kind == "timeout":
        return SimAnswer(status=504, text="<html><body><h1>504 Gateway Time-out</h1></body></html>",
                         content_type="text/html", delay_s=plan.timeout_s)
    if kind == "ip_ban":
        return SimAnswer(status=plan.ip_ban_status, text=_BAN_PAGE, content_type="text/html")
    if kind == "errcode_-1":
        exc = SimError(-1, "系统繁忙")
    elif kind == "throttle":
        exc = SimError(88, f"api[{call}] 调用频率超过应用级别限制", sub_code="90018")
    elif kind == "throttle_global":
        exc = SimError(88, f"apiPath(dingtalk.oapi.{call}), 请求总次数超过了限制, 处罚将在1秒后结束.", sub_code="90002")
    else:  # "token": the token really stops working, so the client has to fetch a new one
        state.invalidate_token(str(token) if token else None)
        exc = SimError(88, "不合法的access_token", sub_code="40014")
    if not topapi and exc.sub_code is not None:
        exc = SimError(int(exc.sub_code), exc.errmsg)
    return SimAnswer(body=_envelope(state, exc, topapi=topapi))
