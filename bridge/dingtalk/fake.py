"""Test helpers that ship with the package: a scriptable fake DingTalk client.

`FakeDingTalk` has the methods of `bridge.dingtalk.Client` the worker uses. It records every call,
hands out task ids, and fails on demand (`fail_next("send", exc)`), so worker tests can assert on exactly
what bridge asked DingTalk to do. For wire-level behaviour use the simulator (`bridge.simulator`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge import errors
from bridge.dingtalk import client as dingtalk

UNKNOWN_USER = 60121  # what the fake answers for a number or unionid not in its directory


@dataclass
class Call:
    name: str
    args: dict[str, Any]


@dataclass
class FakeDingTalk:
    calls: list[Call] = field(default_factory=list)
    next_task_id: int = 900_000_000_001
    progress_status: int = 2
    results: dict[int, dingtalk.SendResult] = field(default_factory=dict)
    directory: dict[str, str] = field(default_factory=dict)  # "mobile:…" / "unionid:…" -> userid
    _failures: dict[str, deque[BaseException]] = field(default_factory=lambda: defaultdict(deque))

    def fail_next(self, call: str, *excs: BaseException) -> None:
        """The next calls named `call` raise these exceptions, in order."""
        self._failures[call].extend(excs)

    def _maybe_fail(self, name: str) -> None:
        queue = self._failures.get(name)
        if queue:
            raise queue.popleft()

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    async def send(self, msg: Mapping[str, Any], *, userids: Sequence[str] = (), dept_ids: Sequence[int] = (),
                   to_all_user: bool = False) -> int:
        self.calls.append(Call("send", {"msg": msg, "userids": tuple(userids)}))
        self._maybe_fail("send")
        task_id = self.next_task_id
        self.next_task_id += 1
        return task_id

    async def get_send_progress(self, task_id: int) -> dingtalk.SendProgress:
        self.calls.append(Call("getsendprogress", {"task_id": task_id}))
        self._maybe_fail("getsendprogress")
        return dingtalk.SendProgress(status=self.progress_status, percent=100 if self.progress_status == 2 else 50)

    async def get_send_result(self, task_id: int) -> dingtalk.SendResult:
        self.calls.append(Call("getsendresult", {"task_id": task_id}))
        self._maybe_fail("getsendresult")
        return self.results.get(task_id) or dingtalk.SendResult()

    async def update_status_bar(self, task_id: int, status_value: str, status_bg: str | None = None) -> None:
        self.calls.append(Call("status_bar_update", {"task_id": task_id, "status_value": status_value,
                                                     "status_bg": status_bg}))
        self._maybe_fail("status_bar_update")

    async def recall(self, task_id: int) -> None:
        self.calls.append(Call("recall", {"task_id": task_id}))
        self._maybe_fail("recall")

    async def userid_by_mobile(self, mobile: str) -> str:
        return self._look_up("getbymobile", f"mobile:{mobile}")

    async def userid_by_unionid(self, unionid: str) -> str:
        return self._look_up("getbyunionid", f"unionid:{unionid}")

    def _look_up(self, call: str, key: str) -> str:
        self.calls.append(Call(call, {"key": key}))
        self._maybe_fail(call)
        if key not in self.directory:
            raise errors.PermanentDingTalkError(call=call, errcode=UNKNOWN_USER, errmsg="找不到该用户")
        return self.directory[key]
