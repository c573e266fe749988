"""The simulated DingTalk's employee directory: userid, mobile number and unionid, for the two lookups.

`POST /topapi/v2/user/getbymobile {"mobile"}` and `POST /topapi/user/getbyunionid {"unionid"}` answer
`result.userid` for a listed employee and errcode 60121 ("找不到该用户") for anyone else. DingTalk's exact code
for an unknown number is unconfirmed; 60121 is what bridge's `[dingtalk] unknown_user_codes` expects by
default. The directory comes from `SimSettings.directory` (DEFAULT_DIRECTORY unless set) and can be replaced at
run time through `POST /_sim/directory`. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bridge.simulator.model import DEFAULT_DIRECTORY, Employee, SimError

__all__ = ["DEFAULT_DIRECTORY", "UNKNOWN_USER", "USER_CALLS", "Directory", "Employee"]

UNKNOWN_USER = 60121
USER_CALLS = {"/topapi/v2/user/getbymobile": "getbymobile", "/topapi/user/getbyunionid": "getbyunionid"}


class Directory:
    """The employees, indexed by mobile number and by unionid."""

    def __init__(self, employees: Iterable[Employee] = DEFAULT_DIRECTORY) -> None:
        self.employees = tuple(employees)
        self._by_mobile = {e.mobile: e.userid for e in self.employees if e.mobile}
        self._by_unionid = {e.unionid: e.userid for e in self.employees if e.unionid}

    def answer(self, call: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The `result` of a getbymobile / getbyunionid call, or the SimError DingTalk would answer."""
        field, index = ("mobile", self._by_mobile) if call == "getbymobile" else ("unionid", self._by_unionid)
        value = body.get(field)
        if value is None or value == "":
            raise SimError(40035, f"缺少参数 {field}")
        if not isinstance(value, str):
            raise SimError(40035, f"不合法的参数: {field}")
        userid = index.get(value)
        if userid is None:
            raise SimError(UNKNOWN_USER, "找不到该用户")
        return {"result": {"userid": userid}}
