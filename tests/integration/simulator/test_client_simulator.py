"""The real DingTalk client against the simulator on 127.0.0.1, sharing one FakeClock.

The client's rate limiter and token cache and the simulator's windows and QPS limit all read the same
FakeClock, so time-dependent behaviour (24 h / 7 day windows, token expiry, calls per second) is exact and
instant; only the injected timeout uses a (short) real delay.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bridge import errors
from bridge.clock import FakeClock
from bridge.dingtalk import messages
from bridge.dingtalk.client import Client, ForbiddenEntry, SendProgress, TokenRegistry
from bridge.secret import Secret
from bridge.simulator import server as simulator
from bridge.simulator.state import DEMO_APP, FaultPlan, SimSettings, SimState

pytestmark = pytest.mark.integration

PENDING = ("待审批", "0xFFFF9D46")
APPROVED = ("已同意", "0xFF78C06E")


def card(title: str = "报销单 EX-1001", status: tuple[str, str] | None = PENDING) -> dict[str, Any]:
    value, bg = status if status else (None, None)
    return messages.oa(message_url="https://erp.example/ex/1001", head_bgcolor="FFBBBBBB", head_text="ERP",
                       status_value=value, status_bg=bg, title=title, form=[("金额", "15.60 元")])


@dataclass
class Harness:
    client: Client
    state: SimState
    clock: FakeClock

    def calls(self, call: str) -> list[dict[str, Any]]:
        return [c for c in self.state.calls() if c["call"] == call]


@contextlib.asynccontextmanager
async def harness(*, client_qps: float = 20.0, timeout_s: float = 5.0, **settings: Any) -> AsyncIterator[Harness]:
    clock = FakeClock()
    state = SimState(SimSettings(**settings), clock=clock, seed=1)
    async with simulator.running(state=state) as sim, aiohttp.ClientSession() as session:
        client = Client(session, app_key=DEMO_APP.app_key, app_secret=Secret(DEMO_APP.app_secret),
                        agent_id=DEMO_APP.agent_id, base_url=sim.base_url, qps=client_qps, timeout_s=timeout_s,
                        clock=clock, tokens=TokenRegistry())
        yield Harness(client, state, clock)


async def test_the_whole_life_of_a_notice() -> None:
    async with harness() as h:
        task_id = await h.client.send(card(), userids=["alice", "bob"])
        assert task_id in h.state.tasks
        sent = h.calls("asyncsend_v2")[0]["body"]
        assert sent["userid_list"] == "alice,bob" and sent["agent_id"] == DEMO_APP.agent_id

        assert await h.client.get_send_progress(task_id) == SendProgress(status=0, percent=0)
        h.clock.advance(1.0)
        assert (await h.client.get_send_progress(task_id)).done

        h.state.mark_read(task_id, "bob")
        result = await h.client.get_send_result(task_id)
        assert (result.read_user_id_list, result.unread_user_id_list, result.not_reached) == (("bob",), ("alice",), ())

        await h.client.update_status_bar(task_id, *APPROVED)
        for user in ("alice", "bob"):
            assert h.state.inbox(user)[0]["status_bar"] == {"value": "已同意", "bg": "0xFF78C06E", "colour": "green"}

        await h.client.recall(task_id)
        assert all(h.state.inbox(u)[0]["recalled"] for u in ("alice", "bob"))
        assert len(h.calls("gettoken")) == 1  # one token for the whole life


async def test_windows_close_with_the_right_errors() -> None:
    async with harness() as h:
        task_id = await h.client.send(card(), userids=["alice"])
        h.clock.advance(24 * 3600 + 1)
        with pytest.raises(errors.PermanentDingTalkError) as recall:
            await h.client.recall(task_id)
        assert recall.value.errcode == 400002
        with pytest.raises(errors.PermanentDingTalkError) as result:
            await h.client.get_send_result(task_id)
        assert result.value.errcode == 40035
        await h.client.update_status_bar(task_id, *APPROVED)  # still inside the 7 days
        h.clock.advance(6 * 24 * 3600)
        with pytest.raises(errors.PermanentDingTalkError) as update:
            await h.client.update_status_bar(task_id, "已撤销", "0xFF858E99")
        assert update.value.errcode == 40035 and not isinstance(update.value, errors.TransientDingTalkError)
        assert h.state.inbox("alice")[0]["status_bar"]["value"] == "已同意"
        assert len(h.calls("gettoken")) == 3  # the client noticed its cached token had expired, twice


async def test_same_content_and_daily_cap_show_in_the_result() -> None:
    async with harness(daily_cap=2) as h:
        first = await h.client.send(card(), userids=["alice"])
        again = await h.client.send(card(), userids=["alice", "bob"])
        result = await h.client.get_send_result(again)
        assert result.forbidden_list == (ForbiddenEntry(code="143106", count=1, userid="alice"),)
        assert result.not_reached == ("alice",) and result.unread_user_id_list == ("bob",)
        other = await h.client.send(card("报销单 EX-1002"), userids=["alice"])
        capped = await h.client.send(card("报销单 EX-1003"), userids=["alice"])
        result = await h.client.get_send_result(capped)
        assert result.forbidden_list == (ForbiddenEntry(code="143105", count=2, userid="alice"),)
        assert [c["task_id"] for c in h.state.inbox("alice")] == [first, other]


async def test_five_userid_rule_ignore_mode_drops_the_status_bar() -> None:
    async with harness() as h:
        six = [f"u{i}" for i in range(6)]
        dropped = await h.client.send(card(), userids=six)
        kept = await h.client.send(card("报销单 EX-1002"), userids=six[:5])
        assert h.state.inbox("u0")[0]["status_bar"] is None
        with pytest.raises(errors.PermanentDingTalkError) as exc:
            await h.client.update_status_bar(dropped, *APPROVED)
        assert exc.value.errcode == 40035
        await h.client.update_status_bar(kept, *APPROVED)
        assert h.state.inbox("u0")[1]["status_bar"]["value"] == "已同意"


async def test_five_userid_rule_error_mode_refuses_the_send() -> None:
    async with harness(status_bar_violation="error") as h:
        with pytest.raises(errors.PermanentDingTalkError) as exc:
            await h.client.send(card(), userids=[f"u{i}" for i in range(6)])
        assert exc.value.errcode == 40035 and h.state.tasks == {}
        assert await h.client.send(card(status=None), userids=[f"u{i}" for i in range(6)])


async def test_a_client_faster_than_the_limit_is_throttled() -> None:
    async with harness(client_qps=10, qps=5) as h:
        task_id = await h.client.send(card(), userids=["alice"])
        outcomes: list[str] = []
        for _ in range(12):  # 10 calls/s against 5 allowed: calls 6-10 of each second are refused
            try:
                await h.client.get_send_progress(task_id)
                outcomes.append("ok")
            except errors.DingTalkThrottled as exc:
                outcomes.append(f"throttled {exc.sub_code} {exc.retry_after:g}")
        assert outcomes == ["ok"] * 5 + ["throttled 90018 1"] * 5 + ["ok"] * 2
        assert h.state.stats()["throttled"] == 5


async def test_a_client_at_the_limit_is_never_throttled() -> None:
    async with harness(client_qps=5, qps=5) as h:
        task_id = await h.client.send(card(), userids=["alice"])
        for _ in range(25):
            await h.client.get_send_progress(task_id)
        assert h.state.stats()["throttled"] == 0 and len(h.calls("getsendprogress")) == 25


@pytest.mark.parametrize(("kind", "error"), [
    ("http_500", errors.DingTalkServerError),
    ("errcode_-1", errors.DingTalkServerError),
    ("throttle", errors.DingTalkThrottled),
    ("throttle_global", errors.DingTalkThrottled),
    ("ip_ban", errors.DingTalkThrottled),
    ("timeout", errors.DingTalkNetworkError),
])
async def test_each_fault_kind_raises_its_error_class_and_sends_nothing(kind: str, error: type[Exception]) -> None:
    async with harness(timeout_s=0.2) as h:
        await h.client.token()
        h.state.set_faults(FaultPlan(rate=1.0, kinds=(kind,), limit=1, timeout_s=1.0))
        with pytest.raises(error):
            await h.client.send(card(), userids=["alice"])
        assert h.state.tasks == {} and h.state.inbox("alice") == []
        assert await h.client.send(card(), userids=["alice"])  # the next call goes through


async def test_a_delayed_answer_still_succeeds() -> None:
    async with harness(timeout_s=2.0) as h:
        h.state.set_faults(FaultPlan(rate=1.0, kinds=("delay",), delay_s=0.05))
        task_id = await h.client.send(card(), userids=["alice"])
        assert list(h.state.tasks) == [task_id] and h.state.stats()["faults"] == {"delay": 1}


async def test_a_token_fault_makes_the_client_refresh_and_succeed() -> None:
    async with harness() as h:
        await h.client.token()
        h.state.set_faults(FaultPlan(rate=1.0, kinds=("token",), limit=1))
        task_id = await h.client.send(card(), userids=["alice"])
        assert list(h.state.tasks) == [task_id]
        assert [c["errcode"] for c in h.calls("asyncsend_v2")] == [88, 0]
        assert len(h.calls("gettoken")) == 2


async def test_a_token_refused_twice_is_a_token_error() -> None:
    async with harness() as h:
        h.state.set_faults(FaultPlan(rate=1.0, kinds=("token",)))
        with pytest.raises(errors.DingTalkTokenError):
            await h.client.send(card(), userids=["alice"])
        assert h.state.tasks == {} and len(h.calls("asyncsend_v2")) == 2
