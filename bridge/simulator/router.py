"""The simulated DingTalk's TOP router, `POST /router/rest`: the old gateway libraries such as `dingtalk-sdk` still
use for their wrapped message methods, mapped onto the same rules as the /topapi/ paths. No I/O.

A TOP call names its API in `method`, carries the token as `session`, and puts every parameter in the query
string or a form body (lists and objects JSON-encoded). The answer is wrapped the TOP way: the API name with
dots turned into underscores plus `_response` as the only key (`simplify=true` leaves the wrapper out), and
gateway-level errors as `{"error_response": {"code", "msg", "sub_code", "sub_msg", "request_id"}}` with TOP's
published codes. Two families are served:

- `dingtalk.oapi.message.corpconversation.*` (asyncsend_v2, getsendprogress, getsendresult, status_bar.update,
  recall): the inner object is exactly what the /topapi/ path answers (`errcode`, `errmsg`, the result fields).
- `dingtalk.corp.message.corpconversation.getsendprogress|getsendresult`: the older corp API, whose inner object
  holds `result: {ding_open_errcode, error_msg, success, progress | send_result}` (the TOP SDK's
  DingOpenResult shape).

Each call is handed to `bridge.simulator.wire.handle` as the /topapi/ call it maps onto, so tokens, the QPS
limit, faults and the call log (entry `via` = the TOP method) behave identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from bridge.simulator import wire
from bridge.simulator.state import SimState
from bridge.simulator.wire import SimAnswer

ROUTER_PATH = "/router/rest"
SYSTEM_PARAMS = frozenset({"method", "session", "timestamp", "format", "v", "simplify", "partner_id", "sign",
                           "sign_method", "app_key", "target_app_key"})


class Shape(StrEnum):
    """How the inner answer of a TOP method is laid out."""

    OAPI = "oapi"  # the /topapi/ answer as is
    CORP = "corp"  # result: {ding_open_errcode, error_msg, success, <field>}


class TopCode:
    """TOP's gateway error codes (Taobao Open Platform's published table); what oapi.dingtalk.com's router
    answers for each case is unconfirmed."""

    APP_CALL_LIMITED = 7
    REMOTE_SERVICE_ERROR = 15
    MISSING_METHOD = 21
    INVALID_METHOD = 22
    INVALID_FORMAT = 23
    MISSING_SESSION = 26
    INVALID_SESSION = 27
    INVALID_ARGUMENTS = 41


_OAPI = "dingtalk.oapi.message.corpconversation."
_CORP = "dingtalk.corp.message.corpconversation."
METHODS: dict[str, tuple[str, Shape]] = {
    _OAPI + "asyncsend_v2": ("asyncsend_v2", Shape.OAPI),
    _OAPI + "getsendprogress": ("getsendprogress", Shape.OAPI),
    _OAPI + "getsendresult": ("getsendresult", Shape.OAPI),
    _OAPI + "status_bar.update": ("status_bar/update", Shape.OAPI),
    _OAPI + "recall": ("recall", Shape.OAPI),
    _CORP + "getsendprogress": ("getsendprogress", Shape.CORP),
    _CORP + "getsendresult": ("getsendresult", Shape.CORP),
}
_CORP_FIELD = {"getsendprogress": "progress", "getsendresult": "send_result"}
_SESSION_CODES = {"40000": (TopCode.MISSING_SESSION, "Missing session"),
                  "40014": (TopCode.INVALID_SESSION, "Invalid session")}
_THROTTLE_SUB_CODES = frozenset({"90018", "90002"})


def _error(state: SimState, code: int, msg: str, sub_msg: str | None = None,
           sub_code: str | None = None) -> SimAnswer:
    err: dict[str, Any] = {"code": code, "msg": msg}
    if sub_code is not None:
        err["sub_code"] = sub_code
    if sub_msg is not None:
        err["sub_msg"] = sub_msg
    err["request_id"] = state.new_request_id()
    return SimAnswer(body={"error_response": err})


def handle(state: SimState, http_method: str, params: Mapping[str, Any], *,
           body_error: str | None = None) -> SimAnswer:
    """Answer one TOP router call (`params`: the query string merged with the form body)."""
    name = str(params.get("method") or "")
    if not name:
        return _error(state, TopCode.MISSING_METHOD, "Missing method")
    if name not in METHODS:
        return _error(state, TopCode.INVALID_METHOD, "Invalid method", f"不合法ApiName，ApiName = {name}")
    if str(params.get("format") or "json") != "json":
        return _error(state, TopCode.INVALID_FORMAT, "Invalid format", "only format=json is served")
    tail, shape = METHODS[name]
    session = params.get("session")
    api_params = {k: v for k, v in params.items() if k not in SYSTEM_PARAMS}
    answer = wire.handle(state, http_method, wire.PREFIX + tail, {"access_token": str(session or "")}, api_params,
                         body_error=body_error, via=name)
    if answer.body is None:  # an injected HTTP-level fault (500, timeout page, IP ban) looks the same here
        return answer
    return SimAnswer(body=_wrap(state, name, shape, tail, answer.body, str(params.get("simplify")) == "true"),
                     delay_s=answer.delay_s) if not _gateway_error(answer.body) else _gateway(state, answer)


def _gateway_error(body: Mapping[str, Any]) -> bool:
    return body.get("errcode") in (88, 41)


def _gateway(state: SimState, answer: SimAnswer) -> SimAnswer:
    """A token, throttling or argument error is the gateway's: TOP answers it as `error_response`."""
    body = answer.body or {}
    if body.get("errcode") == 41:
        return _error(state, TopCode.INVALID_ARGUMENTS, str(body.get("errmsg")))
    sub_code = str(body.get("sub_code"))
    if sub_code in _SESSION_CODES:
        code, msg = _SESSION_CODES[sub_code]
        return _error(state, code, msg, str(body.get("sub_msg")))
    if sub_code in _THROTTLE_SUB_CODES:
        return _error(state, TopCode.APP_CALL_LIMITED, "App Call Limited", str(body.get("sub_msg")), sub_code)
    return _error(state, TopCode.REMOTE_SERVICE_ERROR, "Remote service error", str(body.get("sub_msg")), sub_code)


def _wrap(state: SimState, name: str, shape: Shape, tail: str, body: Mapping[str, Any],
          simplify: bool) -> dict[str, Any]:
    inner: dict[str, Any]
    if shape is Shape.OAPI:
        inner = dict(body)
    else:
        ok = body.get("errcode") == 0
        result: dict[str, Any] = {"ding_open_errcode": body.get("errcode"),
                                  "error_msg": "" if ok else body.get("errmsg"), "success": ok}
        if ok:
            result[_CORP_FIELD[tail]] = body[_CORP_FIELD[tail]]
        inner = {"result": result, "request_id": body.get("request_id") or state.new_request_id()}
    return inner if simplify else {name.replace(".", "_") + "_response": inner}
