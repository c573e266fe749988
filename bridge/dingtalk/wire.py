"""DingTalk's wire vocabulary: call names, typed results, and errcode → exception classification. Pure.

Kept apart from the client so the rules for reading DingTalk's answers (HTTP 200 with `errcode`, token and
throttling errors wrapped as errcode 88 with a string `sub_code`, lists that may be missing) can be read and
tested without any I/O. Wire format: dingtalk-work-notice-api.md §0–§8.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bridge import errors

GETTOKEN = "gettoken"
SEND = "asyncsend_v2"
PROGRESS = "getsendprogress"
RESULT = "getsendresult"
STATUS_BAR = "status_bar_update"
RECALL = "recall"
GETBYMOBILE = "getbymobile"
GETBYUNIONID = "getbyunionid"
# the directory lookups live outside /topapi/message/corpconversation/: full paths. Their
# unknown-user errcode is not in the reference: 60121 is likely, `[dingtalk] unknown_user_codes` makes it configurable
USER_PATHS = {
    GETBYMOBILE: "/topapi/v2/user/getbymobile",
    GETBYUNIONID: "/topapi/user/getbyunionid",
}
PATHS = {
    SEND: "asyncsend_v2",
    PROGRESS: "getsendprogress",
    RESULT: "getsendresult",
    STATUS_BAR: "status_bar/update",
    RECALL: "recall",
}

TOKEN_REFRESH_MARGIN_S = 600.0  # DingTalk's calling guide: refresh about 10 minutes before expiry
THROTTLE_RETRY_AFTER_S = 1.0  # DingTalk's advice on 90018 / 90002: wait a second
IP_BAN_RETRY_AFTER_S = 300.0  # the IP ban page without a `wait`: the ban lasts 5 minutes
# Named DingTalk answer codes the worker acts on, so no job handler compares against a bare number.
RECALL_REFUSED = 400002  # "agentId or taskId invalid": what recall answers past 24 h or twice (unconfirmed: likely)
DUPLICATE_CONTENT_CODES = frozenset({"143106", "143206"})  # getsendresult forbidden_list: same content today
_TOKEN_CODES = frozenset({40014, 42001, 40001})  # top-level, on a call made with a token
_TOKEN_SUB_CODES = frozenset({"40014", "40000", "42001"})  # under errcode 88
_CREDENTIAL_CODES = frozenset({40096, 40089, 40001})  # gettoken: the app key / secret is wrong
_SERVER_CODES = frozenset({-1, 500})
_MAX_ERRMSG = 300


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendProgress:
    status: int  # 0 not started, 1 processing, 2 done
    percent: int

    @property
    def done(self) -> bool:
        return self.status == 2


@dataclass(frozen=True, slots=True)
class ForbiddenEntry:
    code: str  # e.g. "143106" same content today, "143105" daily cap
    count: int
    userid: str


@dataclass(frozen=True, slots=True)
class SendResult:
    invalid_user_id_list: tuple[str, ...] = ()
    forbidden_user_id_list: tuple[str, ...] = ()
    failed_user_id_list: tuple[str, ...] = ()
    read_user_id_list: tuple[str, ...] = ()
    unread_user_id_list: tuple[str, ...] = ()
    invalid_dept_id_list: tuple[int, ...] = ()
    forbidden_list: tuple[ForbiddenEntry, ...] = ()

    @property
    def not_reached(self) -> tuple[str, ...]:
        """Userids that did not get the card (invalid, forbidden or failed), each once, in that order."""
        ids = (*self.invalid_user_id_list, *self.forbidden_user_id_list, *(f.userid for f in self.forbidden_list),
               *self.failed_user_id_list)
        return tuple(dict.fromkeys(ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "invalid_user_id_list": list(self.invalid_user_id_list),
            "forbidden_user_id_list": list(self.forbidden_user_id_list),
            "failed_user_id_list": list(self.failed_user_id_list),
            "read_user_id_list": list(self.read_user_id_list),
            "unread_user_id_list": list(self.unread_user_id_list),
            "invalid_dept_id_list": list(self.invalid_dept_id_list),
            "forbidden_list": [{"code": f.code, "count": f.count, "userid": f.userid} for f in self.forbidden_list],
        }

    @classmethod
    def from_wire(cls, raw: Any) -> SendResult:
        """Parse `send_result`; a missing list reads as empty, `forbidden_list[].code` as a string."""
        raw = raw if isinstance(raw, Mapping) else {}

        def strs(key: str) -> tuple[str, ...]:
            return tuple(str(v) for v in raw.get(key) or ())

        forbidden = tuple(
            ForbiddenEntry(code=str(f.get("code", "")), count=int(f.get("count") or 0), userid=str(f.get("userid", "")))
            for f in raw.get("forbidden_list") or ()
            if isinstance(f, Mapping)
        )
        return cls(
            invalid_user_id_list=strs("invalid_user_id_list"),
            forbidden_user_id_list=strs("forbidden_user_id_list"),
            failed_user_id_list=strs("failed_user_id_list"),
            read_user_id_list=strs("read_user_id_list"),
            unread_user_id_list=strs("unread_user_id_list"),
            invalid_dept_id_list=tuple(int(v) for v in raw.get("invalid_dept_id_list") or ()),
            forbidden_list=forbidden,
        )


class CallObserver(Protocol):
    """Metrics hook (bridge.metrics implements it)."""

    def call_finished(self, call: str, code: str, seconds: float) -> None:
        """One HTTP request to DingTalk ended; `code` is "0" on success, else the DingTalkError's `.code`."""

    def token_refreshed(self) -> None:
        """A new access token was fetched."""


# --- classification (pure) ---------------------------------------------------------------------------


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_throttle(code: int | None) -> bool:
    return code is not None and 90000 <= code <= 90999 and code != 90020


def classify(call: str, payload: Mapping[str, Any], *, token_call: bool = True,
             http_status: int = 200) -> errors.DingTalkError | None:
    """The exception for a parsed JSON answer, or None when it is a success (errcode 0 on HTTP 200).

    `token_call` is False for gettoken itself, where 40001 means bad credentials rather than a stale token.
    Call this with an already scrubbed `errmsg`.
    """
    if payload.get("status") == 1111 and "errcode" not in payload:  # the IP-ban JSON body
        wait = as_int(payload.get("wait"))
        return errors.DingTalkThrottled(f"{call} refused: this IP is temporarily banned by DingTalk", call=call,
                                        http_status=http_status,
                                        retry_after=float(wait) if wait else IP_BAN_RETRY_AFTER_S)
    errcode = as_int(payload.get("errcode"))
    if errcode is None:
        if http_status == 429:
            return errors.DingTalkThrottled(call=call, http_status=http_status, retry_after=THROTTLE_RETRY_AFTER_S)
        if http_status == 200 or http_status >= 500:
            return errors.DingTalkServerError(f"{call} answered without an errcode", call=call,
                                              http_status=http_status)
        return errors.PermanentDingTalkError(call=call, http_status=http_status)
    if errcode == 0:
        return None if http_status == 200 else errors.PermanentDingTalkError(call=call, http_status=http_status)
    raw_sub = payload.get("sub_code")
    sub_code = None if raw_sub in (None, "") else str(raw_sub)
    fields: dict[str, Any] = {
        "call": call,
        "errcode": errcode,
        "sub_code": sub_code,
        "errmsg": _clip(str(payload.get("errmsg") or payload.get("sub_msg") or "")) or None,
        "request_id": payload.get("request_id") or None,
        "http_status": http_status,
    }
    code = as_int(sub_code) if errcode == 88 and sub_code is not None else errcode
    if not token_call:
        if errcode in _CREDENTIAL_CODES or code in _CREDENTIAL_CODES:
            return errors.PermanentDingTalkError(**fields)
    elif (errcode == 88 and sub_code in _TOKEN_SUB_CODES) or (errcode != 88 and errcode in _TOKEN_CODES):
        return errors.DingTalkTokenError(**fields)
    if _is_throttle(code):
        return errors.DingTalkThrottled(**fields, retry_after=THROTTLE_RETRY_AFTER_S)
    if code in _SERVER_CODES:
        return errors.DingTalkServerError(**fields)
    return errors.PermanentDingTalkError(**fields)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERRMSG else text[: _MAX_ERRMSG - 1] + "…"
