"""A pure model of DingTalk's work-notification service, for the local simulator.

bridge is developed, tested, demonstrated and benchmarked against a local DingTalk, never the real one. This
module is that DingTalk's memory and rules, with no I/O: apps and their access tokens (7200 s, the same token
returned and extended while valid), send tasks and their progress over simulated time, what each recipient
was classified as (invalid, forbidden by the same-content-once-a-day rule or the daily cap, delivered, read),
each user's inbox with the card's current status bar, the 24-hour and 7-day windows, the per-app
per-endpoint QPS limit, and the fault plan. The wire format (envelopes, parameter coercion, fault answers)
lives in `bridge.simulator.wire`; the aiohttp server in `bridge.simulator`. Time comes from an injected Clock:
a FakeClock in tests, an `OffsetClock` (real time plus an offset `/_sim/clock/advance` increases) in the server.

Behaviour the reference marks unconfirmed is a setting, documented on `SimSettings`.
"""

from __future__ import annotations

import random
import string
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from bridge.clock import Clock
from bridge.simulator.directory import Directory
from bridge.simulator.model import (
    DEMO_APP,
    FAULT_KINDS,
    SHANGHAI,
    TASK_INVALID,
    FaultPlan,
    OffsetClock,
    SimApp,
    SimError,
    SimSettings,
    SimTask,
    bad_param,
    bar_view,
    canonical,
    card_view,
    result_view,
)
from bridge.simulator.sendrules import check_send, status_bar_shown

__all__ = ["DEMO_APP", "FAULT_KINDS", "FaultPlan", "OffsetClock", "SimApp", "SimError", "SimSettings", "SimState",
           "SimTask"]


class SimState:
    """The simulated DingTalk. Domain calls raise `SimError`; `bridge.simulator.wire.handle(state, ...)` speaks
    the wire format (the wire knows the state, never the other way round)."""

    def __init__(
        self, settings: SimSettings | None = None, *, clock: Clock | None = None, seed: int | None = None
    ) -> None:
        self.settings = settings or SimSettings()
        self.clock: Clock = clock or OffsetClock()
        self._seed = seed
        self._apps = {a.app_key: a for a in self.settings.apps}
        self._tokens: dict[str, tuple[str, datetime]] = {}  # token -> (app_key, expires_at)
        self._app_token: dict[str, str] = {}
        self.tokens_issued = 0
        self.reset()

    def __repr__(self) -> str:
        return f"SimState(apps={list(self._apps)}, tasks={len(self.tasks)})"

    # --- lifecycle and inspection ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget tasks, inboxes, quotas, calls, stats, faults and user lists. Issued tokens stay valid."""
        self._rng = random.Random(self._seed)
        self.tasks: dict[int, SimTask] = {}
        self._inbox: dict[str, list[int]] = {}
        self._seen: set[tuple[str, str, str, date]] = set()
        self._daily: Counter[tuple[str, str, date]] = Counter()
        self._to_all: Counter[tuple[str, date]] = Counter()
        self._qps: dict[tuple[str, str], deque[float]] = {}
        self.directory = Directory(self.settings.directory)
        self.invalid_userids: set[str] = set(self.settings.invalid_userids)
        self.known_userids: set[str] | None = (
            None if self.settings.known_userids is None else set(self.settings.known_userids)
        )
        self.clear_faults()
        self.call_log: list[dict[str, Any]] = []
        self.calls_dropped = 0
        self.per_call: Counter[str] = Counter()
        self.errors_per_call: Counter[str] = Counter()
        self.throttled = 0
        self.faults_injected: Counter[str] = Counter()

    def advance(self, seconds: float) -> None:
        """Move simulated time on (the clock must have `advance`: FakeClock or OffsetClock)."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError(f"{type(self.clock).__name__} cannot be advanced")
        advance(float(seconds))

    def set_users(
        self, *, invalid: Iterable[str] | None = None, known: Iterable[str] | None = None, everyone_known: bool = False
    ) -> None:
        """Replace the invalid userids and/or the known ones (`everyone_known` = every userid is known)."""
        if invalid is not None:
            self.invalid_userids = set(invalid)
        if known is not None:
            self.known_userids = set(known)
        if everyone_known:
            self.known_userids = None

    def set_faults(self, plan: FaultPlan) -> None:
        self.faults = plan
        self._fault_rng = random.Random(plan.seed)
        self._faults_left = plan.limit

    def clear_faults(self) -> None:
        self.set_faults(FaultPlan())

    def roll_fault(self, call: str) -> str | None:
        """Decide whether this call is faulted, and how (deterministic for a given seed and call order)."""
        plan = self.faults
        if plan.rate <= 0 or self._faults_left == 0:
            return None
        if call == "gettoken":
            if not plan.gettoken:
                return None
            kinds = [k for k in plan.kinds if k != "token"]
        else:
            if plan.calls and call not in plan.calls:
                return None
            kinds = list(plan.kinds)
        if not kinds or self._fault_rng.random() >= plan.rate:
            return None
        kind = self._fault_rng.choice(kinds)
        if self._faults_left is not None:
            self._faults_left -= 1
        self.faults_injected[kind] += 1
        return kind

    def fault_choice(self, options: Sequence[int]) -> int:
        return self._fault_rng.choice(list(options))

    def new_request_id(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        return "".join(self._rng.choice(alphabet) for _ in range(self._rng.choice((12, 13))))

    def record_call(self, entry: dict[str, Any]) -> None:
        entry["index"] = self.calls_dropped + len(self.call_log)
        self.call_log.append(entry)
        if len(self.call_log) > self.settings.max_calls_logged:
            drop = len(self.call_log) - self.settings.max_calls_logged
            del self.call_log[:drop]
            self.calls_dropped += drop

    def calls(self, *, path: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Calls received, oldest first; `path` keeps those whose path contains it, `since` is an index."""
        start = max(0, since - self.calls_dropped)
        return [c for c in self.call_log[start:] if path is None or path in c["path"]]

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls_dropped + len(self.call_log),
            "per_call": dict(self.per_call),
            "errors_per_call": dict(self.errors_per_call),
            "throttled": self.throttled,
            "faults_injected": sum(self.faults_injected.values()),
            "faults": dict(self.faults_injected),
            "tasks": len(self.tasks),
            "tokens_issued": self.tokens_issued,
        }

    # --- tokens and limits -----------------------------------------------------------------------------
    def gettoken(self, appkey: str | None, appsecret: str | None, *, legacy: bool = False) -> tuple[str, int]:
        """An app's token from appkey/appsecret, or (`legacy`) from the older corpid/corpsecret names, which
        carry the same app key and secret (ali-sdk/node-dingtalk #31: "appkey 等价于 corpid"); a bad legacy
        pair answers 40089 instead of 40096, a legacy corpid without its secret 41004."""
        if not appkey or (not appsecret and not legacy):
            raise SimError(40035, "缺少参数 corpid or appkey")
        if not appsecret:
            raise SimError(41004, "缺少参数 corpsecret")
        app = self._apps.get(appkey)
        if app is None or app.app_secret != appsecret:
            if legacy:
                raise SimError(40089, "不合法的corpId或corpSecret")
            raise SimError(40096, "不合法的appKey或appSecret")
        now = self.clock.now()
        ttl = timedelta(seconds=self.settings.token_ttl_s)
        token = self._app_token.get(app.app_key)
        if token is None or token not in self._tokens or self._tokens[token][1] <= now:
            self._tokens.pop(token or "", None)
            token = "".join(self._rng.choice("0123456789abcdef") for _ in range(32))
            self._app_token[app.app_key] = token
            self.tokens_issued += 1
        self._tokens[token] = (app.app_key, now + ttl)
        return token, int(self.settings.token_ttl_s)

    def token_expiry(self, token: str) -> datetime | None:
        """When a token the simulator issued expires (as extended by its latest gettoken), None if unknown."""
        entry = self._tokens.get(token)
        return None if entry is None else entry[1]

    def app_for_token(self, token: str | None) -> SimApp:
        if not token:
            raise SimError(88, "access_token is blank", sub_code="40000")
        entry = self._tokens.get(token)
        if entry is None or entry[1] <= self.clock.now():
            raise SimError(88, "不合法的access_token", sub_code="40014")
        return self._apps[entry[0]]

    def invalidate_token(self, token: str | None) -> bool:
        entry = self._tokens.pop(token or "", None)
        if entry is not None and self._app_token.get(entry[0]) == token:
            del self._app_token[entry[0]]
        return entry is not None

    def admit(self, app_key: str, call: str) -> bool:
        """The per-app per-endpoint QPS limit: False (and counted) when this call is one too many."""
        if self.settings.qps <= 0:
            return True
        now = self.clock.monotonic()
        window = self._qps.setdefault((app_key, call), deque())
        while window and window[0] <= now - self.settings.qps_window_s:
            window.popleft()
        if len(window) >= self.settings.qps:
            self.throttled += 1
            return False
        window.append(now)
        return True

    def check_agent(self, app: SimApp, agent_id: int) -> None:
        if agent_id != app.agent_id:
            raise SimError(41020, "accessToken中包含的appKey与agentId不一致，无法使用当前agentId")

    # --- users -------------------------------------------------------------------------------------------
    def is_valid_user(self, userid: str) -> bool:
        if userid in self.invalid_userids:
            return False
        return self.known_userids is None or userid in self.known_userids

    def _everyone(self) -> list[str]:
        users = set(self.known_userids or ())
        for members in self.settings.departments.values():
            users.update(members)
        return sorted(u for u in users if self.is_valid_user(u))

    def _task(self, app: SimApp, agent_id: int, task_id: int, *, code: int = 40035) -> SimTask:
        self.check_agent(app, agent_id)
        task = self.tasks.get(task_id)
        if task is None or task.app_key != app.app_key or task.agent_id != agent_id:
            raise SimError(code, TASK_INVALID if code == 400002 else f"不合法的参数: task_id {task_id}")
        return task

    def _age_s(self, task: SimTask) -> float:
        return (self.clock.now() - task.sent_at).total_seconds()

    def _new_task_id(self) -> int:
        while True:
            task_id = self._rng.randrange(100_000_000_000, 999_999_999_999)
            if task_id not in self.tasks:
                return task_id

    # --- the five calls ----------------------------------------------------------------------------------
    def send(
        self,
        app: SimApp,
        *,
        agent_id: int,
        msg: dict[str, Any],
        userids: Sequence[str] = (),
        dept_ids: Sequence[int] = (),
        to_all_user: bool = False,
    ) -> int:
        """asyncsend_v2: validate, classify every recipient, fill the inboxes; returns the task_id. Three steps,
        in DingTalk's order: refuse a bad request before anything counts (`check_send`), decide whether the OA
        status bar is honoured (`status_bar_shown`), then deliver to each recipient or say why not (`_deliver`)."""
        self.check_agent(app, agent_id)
        check_send(self.settings, msg, userids, dept_ids, to_all_user)
        now = self.clock.now()
        day = now.astimezone(SHANGHAI).date()
        if to_all_user:
            limit = self.settings.to_all_per_day
            if self._to_all[(app.app_key, day)] >= limit:
                raise SimError(41045, f"to_all_user发送已超过每天{limit}次")
            self._to_all[(app.app_key, day)] += 1
        requested, bar = status_bar_shown(self.settings, msg, userids, dept_ids, to_all_user)
        task = SimTask(
            task_id=self._new_task_id(), app_key=app.app_key, agent_id=agent_id, msg=msg, userids=tuple(userids),
            dept_ids=tuple(dept_ids), to_all_user=to_all_user, sent_at=now, status_bar_requested=requested,
            status_bar=bar,
        )
        self._deliver(app, task, day)
        self.tasks[task.task_id] = task
        return task.task_id

    def _deliver(self, app: SimApp, task: SimTask, day: date) -> None:
        """Expand departments and "everyone", then deliver to each recipient once, or record why not: unknown
        user, the same content already delivered today (143106), or the daily cap reached (143105)."""
        s = self.settings
        recipients = list(task.userids)
        for dept in task.dept_ids:
            members = s.departments.get(dept)
            if members is None:
                task.invalid_depts.append(dept)
            else:
                recipients.extend(members)
        if task.to_all_user:
            recipients.extend(self._everyone())
        content = canonical(task.msg)
        for user in dict.fromkeys(recipients):
            if not self.is_valid_user(user):
                task.invalid_users.append(user)
            elif (app.app_key, user, content, day) in self._seen:
                task.forbidden.append((user, "143106", 1))
            elif self._daily[(app.app_key, user, day)] >= s.daily_cap:
                task.forbidden.append((user, "143105", s.daily_cap))
            else:
                self._seen.add((app.app_key, user, content, day))
                self._daily[(app.app_key, user, day)] += 1
                task.delivered.append(user)
                self._inbox.setdefault(user, []).append(task.task_id)

    def progress(self, app: SimApp, agent_id: int, task_id: int) -> tuple[int, int]:
        """getsendprogress: (progress_in_percent, status 0 | 1 | 2), moving with simulated time."""
        task = self._task(app, agent_id, task_id)
        if self._age_s(task) > self.settings.progress_window_s:
            raise bad_param(f"task {task_id} is older than the progress window")
        return self._progress(task)

    def _progress(self, task: SimTask) -> tuple[int, int]:
        age, done = self._age_s(task), self.settings.progress_done_after_s
        if age >= done:
            return 100, 2
        if age <= 0:
            return 0, 0
        return min(99, int(100 * age / done)), 1

    def result(self, app: SimApp, agent_id: int, task_id: int) -> dict[str, Any]:
        """getsendresult (within 24 h)."""
        task = self._task(app, agent_id, task_id)
        if self._age_s(task) > self.settings.result_window_s:
            raise bad_param(f"task {task_id} is older than 24 hours; its send result is gone")
        limit = self.settings.result_max_recipients
        if limit is not None and len(task.delivered) + len(task.forbidden) + len(task.invalid_users) > limit:
            raise SimError(41052, "本次发送人数过多,不再返回发送结果")
        return result_view(task)

    def update_status_bar(self, app: SimApp, agent_id: int, task_id: int, value: str, bg: str | None) -> None:
        """status_bar/update: OA tasks whose status bar was honoured, within 7 days, not recalled."""
        task = self._task(app, agent_id, task_id)
        if task.status_bar is None:
            raise bad_param(f"task {task_id} has no status bar (not OA, none sent, or dropped by the 5-userid rule)")
        if self._age_s(task) > self.settings.update_window_s:
            raise bad_param(f"task {task_id} is older than 7 days; its status bar can no longer be updated")
        if task.recalled_at is not None:
            raise bad_param(f"task {task_id} was recalled")
        task.status_bar = (value, bg if bg is not None else task.status_bar[1])
        task.updates.append((self.clock.now(), value, bg))

    def recall(self, app: SimApp, agent_id: int, task_id: int) -> None:
        """recall: once, within 24 h; the card disappears from every inbox."""
        task = self._task(app, agent_id, task_id, code=400002)
        if task.recalled_at is not None or self._age_s(task) > self.settings.recall_window_s:
            raise SimError(400002, TASK_INVALID)
        task.recalled_at = self.clock.now()

    # --- what users see ----------------------------------------------------------------------------------
    def mark_read(self, task_id: int, userid: str) -> None:
        task = self.tasks.get(task_id)
        if task is None or userid not in task.delivered:
            raise KeyError(f"user {userid!r} did not receive task {task_id}")
        task.read.add(userid)

    def users(self) -> list[str]:
        """Every userid that has received a card, sorted (the simulator's UI draws one phone each)."""
        return sorted(self._inbox)

    def inbox(self, userid: str) -> list[dict[str, Any]]:
        """The cards a user has, oldest first, as they look now (recalled ones flagged)."""
        return [card_view(self.tasks[t], userid) for t in self._inbox.get(userid, ())]

    def task(self, task_id: int) -> dict[str, Any] | None:
        task = self.tasks.get(task_id)
        if task is None:
            return None
        percent, status = self._progress(task)
        return {
            "task_id": task.task_id, "app_key": task.app_key, "agent_id": task.agent_id, "msgtype": task.msgtype,
            "msg": task.msg, "userids": list(task.userids), "dept_ids": list(task.dept_ids),
            "to_all_user": task.to_all_user, "sent_at": task.sent_at.isoformat(),
            "status_bar_requested": task.status_bar_requested, "status_bar": bar_view(task.status_bar),
            "updates": [{"at": at.isoformat(), "status_value": v, "status_bg": bg} for at, v, bg in task.updates],
            "recalled_at": task.recalled_at.isoformat() if task.recalled_at else None,
            "progress": {"progress_in_percent": percent, "status": status}, "send_result": result_view(task),
        }

