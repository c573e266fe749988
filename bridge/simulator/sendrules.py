"""The simulator's rules for an asyncsend_v2 request that need no state: what DingTalk refuses outright, and
whether it shows the OA status bar. Split from `SimState.send` so the stateful part (counters, inboxes) reads
on its own; pure, like the rest of the simulator's rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.simulator.model import MSGTYPES, SimError, SimSettings, bad_param, msg_bytes

__all__ = ["check_send", "status_bar_shown"]


def check_send(s: SimSettings, msg: dict[str, Any], userids: Sequence[str], dept_ids: Sequence[int],
               to_all_user: bool) -> None:
    """The refusals that cost nothing: recipients given and within limits, message type, shape and size."""
    if not userids and not dept_ids and not to_all_user:
        raise bad_param("userid_list, dept_id_list or to_all_user is required")
    if len(userids) > s.max_userids or len(dept_ids) > s.max_dept_ids:
        limits = f"userid_list {s.max_userids}, dept_id_list {s.max_dept_ids}"
        raise SimError(41029, f"超过消息接收者人数上限 ({limits})")
    msgtype = msg.get("msgtype")
    if msgtype not in MSGTYPES:
        raise SimError(40008, f"不合法的消息类型: {msgtype!r}")
    if not isinstance(msg.get(msgtype), dict):
        raise bad_param(f"msg.{msgtype} is required")
    if msgtype == "oa" and (not msg["oa"].get("message_url") or not isinstance(msg["oa"].get("head"), dict)):
        raise bad_param("msg.oa.message_url and msg.oa.head are required")
    if (size := msg_bytes(msg)) > s.max_msg_bytes:
        raise bad_param(f"msg is {size} bytes, at most {s.max_msg_bytes}")


def status_bar_shown(s: SimSettings, msg: dict[str, Any], userids: Sequence[str], dept_ids: Sequence[int],
                     to_all_user: bool) -> tuple[bool, tuple[str, str | None] | None]:
    """(requested, the bar shown): DingTalk shows an OA status bar only on a send to a few named userids;
    otherwise it drops the bar silently, or refuses the send when the settings say so."""
    bar = msg["oa"].get("status_bar") if msg.get("msgtype") == "oa" else None
    requested = isinstance(bar, dict) and bool(bar.get("status_value"))
    honoured = requested
    if requested and (dept_ids or to_all_user or len(userids) > s.status_bar_max_userids):
        if s.status_bar_violation == "error":
            raise bad_param(f"oa.status_bar needs userid_list with at most {s.status_bar_max_userids} userids")
        honoured = False
    shown = (str(bar["status_value"]), bar.get("status_bg")) if honoured and isinstance(bar, dict) else None
    return requested, shown
