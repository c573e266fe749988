"""The simulated DingTalk's vocabulary: settings, apps, fault plans, tasks, errors and its movable clock.

Split from `bridge.simulator.state` (which holds the behaviour) so both stay readable; everything here is plain
data plus the tiny helpers the rules share (the content identity of a message, its size in bytes).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST: a fixed offset is exact
MSGTYPES = frozenset({"text", "image", "voice", "file", "link", "oa", "markdown", "action_card"})
FAULT_KINDS = ("http_500", "errcode_-1", "throttle", "throttle_global", "token", "timeout", "delay", "ip_ban")
COLOUR_NAMES = {"0xFFFF9D46": "orange", "0xFF78C06E": "green", "0xFFF65E5E": "red", "0xFF858E99": "grey"}
DAY_S = 86400.0


class SimError(Exception):
    """A DingTalk error answer. With `sub_code` it is sent wrapped as errcode 88 (the /topapi/ convention)."""

    def __init__(self, errcode: int, errmsg: str, *, sub_code: str | None = None) -> None:
        super().__init__(f"{errcode} {sub_code or ''} {errmsg}".strip())
        self.errcode = errcode
        self.errmsg = errmsg
        self.sub_code = sub_code


def bad_param(detail: str) -> SimError:
    return SimError(40035, f"不合法的参数: {detail}")


TASK_INVALID = "agentId不合法或taskId不合法"


class OffsetClock:
    """Real time plus an offset that only grows: the simulator server's clock (`advance` moves it on)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s

    def cpu(self) -> float:
        return time.process_time()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.offset_s += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class SimApp:
    """One internal app: its credentials and its single agent id. The secret never shows in a repr."""

    app_key: str
    app_secret: str = field(repr=False)
    agent_id: int


DEMO_APP = SimApp("dingdemoappkey", "demo-app-secret", 1000001)


@dataclass(frozen=True, slots=True)
class Employee:
    userid: str
    mobile: str | None = None
    unionid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"userid": self.userid, "mobile": self.mobile, "unionid": self.unionid}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Employee:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("userid"), str) or not raw["userid"]:
            raise ValueError(f"each employee needs a userid string, got {raw!r}")
        unknown = sorted(set(raw) - {"userid", "mobile", "unionid"})
        if unknown:
            raise ValueError(f"unknown employee fields {unknown}; known: userid, mobile, unionid")
        for key in ("mobile", "unionid"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise ValueError(f"{key} must be a string or null, got {raw[key]!r}")
        return cls(raw["userid"], raw.get("mobile"), raw.get("unionid"))


# the demo's approvers and a few more, so `bridge serve --sandbox` resolves mobile:/unionid: out of the box
DEFAULT_DIRECTORY: tuple[Employee, ...] = (
    Employee("manager01", "13800138000", "unionid-manager01"),
    Employee("manager02", "13800138001", "unionid-manager02"),
    Employee("manager4", "13900139000", "unionid-manager4"),
    Employee("user02", "13700137000", "unionid-user02"),
)


@dataclass(frozen=True, slots=True)
class SimSettings:
    """What the simulated DingTalk enforces. Values the reference leaves unconfirmed carry a note.

    max_userids / max_dept_ids: 5000 / 500 (TOP metadata, SDKs); the current doc table says 100 / 20.
    status_bar_violation: an OA status bar on a send to more than 5 userids, or with departments / to all:
        "ignore" (default) drops the status bar silently, "error" answers 40035. Unconfirmed.
    progress_window_s: the doc says both 7 days and 24 h; default 7 days.
    result_max_recipients: getsendresult on a task with more recipients answers 41052; None (default) = off.
    departments: dept id -> member userids; a dept id not listed is invalid.
    directory: the employees the two directory lookups know (bridge.simulator.directory).
    """

    apps: tuple[SimApp, ...] = (DEMO_APP,)
    token_ttl_s: float = 7200.0
    qps: int = 20
    qps_window_s: float = 1.0
    daily_cap: int = 500
    max_userids: int = 5000
    max_dept_ids: int = 500
    status_bar_violation: Literal["ignore", "error"] = "ignore"
    status_bar_max_userids: int = 5
    progress_done_after_s: float = 1.0
    invalid_userids: frozenset[str] = frozenset()
    known_userids: frozenset[str] | None = None
    departments: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    max_msg_bytes: int = 2048
    result_window_s: float = DAY_S
    progress_window_s: float = 7 * DAY_S
    recall_window_s: float = DAY_S
    update_window_s: float = 7 * DAY_S
    to_all_per_day: int = 3
    result_max_recipients: int | None = None
    directory: tuple[Employee, ...] = DEFAULT_DIRECTORY  # userid / mobile / unionid, for getbymobile / getbyunionid
    max_calls_logged: int = 200_000

    def __post_init__(self) -> None:
        if self.status_bar_violation not in ("ignore", "error"):
            raise ValueError(f"status_bar_violation must be 'ignore' or 'error', not {self.status_bar_violation!r}")
        if len({a.app_key for a in self.apps}) != len(self.apps):
            raise ValueError("app keys must be unique")
        object.__setattr__(self, "invalid_userids", frozenset(self.invalid_userids))
        if self.known_userids is not None:
            object.__setattr__(self, "known_userids", frozenset(self.known_userids))


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which calls fail and how: a share `rate` of topapi calls (and gettoken if `gettoken`), drawn with a
    `random.Random(seed)`, answer with one of `kinds`. `limit` stops after that many faults; `calls`
    restricts faults to those call names (e.g. ("asyncsend_v2",)); empty means every topapi call."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("errcode_-1",)
    seed: int = 0
    delay_s: float = 0.5
    timeout_s: float = 15.0
    gettoken: bool = False
    limit: int | None = None
    calls: tuple[str, ...] = ()
    ip_ban_status: int = 200

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate!r}")
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if self.delay_s < 0 or self.timeout_s < 0:
            raise ValueError("delay_s and timeout_s must not be negative")


@dataclass(slots=True)
class SimTask:
    """One asyncsend_v2 task and what became of each recipient."""

    task_id: int
    app_key: str
    agent_id: int
    msg: dict[str, Any]
    userids: tuple[str, ...]
    dept_ids: tuple[int, ...]
    to_all_user: bool
    sent_at: datetime
    status_bar_requested: bool
    status_bar: tuple[str, str | None] | None  # the current (value, bg) when honoured
    delivered: list[str] = field(default_factory=list)
    invalid_users: list[str] = field(default_factory=list)
    invalid_depts: list[int] = field(default_factory=list)
    forbidden: list[tuple[str, str, int]] = field(default_factory=list)  # (userid, code, count)
    read: set[str] = field(default_factory=set)
    recalled_at: datetime | None = None
    updates: list[tuple[datetime, str, str | None]] = field(default_factory=list)

    @property
    def msgtype(self) -> str:
        return str(self.msg.get("msgtype", ""))


def canonical(msg: Mapping[str, Any]) -> str:
    """The content identity DingTalk's once-a-day rule compares: canonical compact JSON."""
    return json.dumps(msg, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def msg_bytes(msg: Mapping[str, Any]) -> int:
    return len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode())


def result_view(task: SimTask) -> dict[str, Any]:
    """The `send_result` object of getsendresult for a task."""
    return {
        "invalid_user_id_list": list(task.invalid_users),
        "forbidden_user_id_list": [u for u, _, _ in task.forbidden],
        "failed_user_id_list": [],
        "read_user_id_list": [u for u in task.delivered if u in task.read],
        "unread_user_id_list": [u for u in task.delivered if u not in task.read],
        "invalid_dept_id_list": list(task.invalid_depts),
        "forbidden_list": [{"code": c, "count": n, "userid": u} for u, c, n in task.forbidden],
    }


def bar_view(bar: tuple[str, str | None] | None) -> dict[str, Any] | None:
    """A status bar as a card shows it: text, background and a colour name for the documented colours."""
    if bar is None:
        return None
    value, bg = bar
    key = "0x" + (bg or "").upper().removeprefix("0X")
    return {"value": value, "bg": bg, "colour": COLOUR_NAMES.get(key)}


def card_view(task: SimTask, userid: str) -> dict[str, Any]:
    """One card in a user's inbox as it looks now."""
    card: dict[str, Any] = {
        "task_id": task.task_id, "agent_id": task.agent_id, "msgtype": task.msgtype, "msg": task.msg,
        "read": userid in task.read, "recalled": task.recalled_at is not None, "sent_at": task.sent_at.isoformat(),
    }
    if task.msgtype == "oa":
        oa = task.msg["oa"]
        body = oa.get("body") if isinstance(oa.get("body"), dict) else {}
        card.update(head=oa.get("head"), title=body.get("title"), form=body.get("form", []),
                    status_bar=bar_view(task.status_bar))
    return card
