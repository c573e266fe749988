"""From a platform's encrypted callback to the card's colour in DingTalk, for DingTalk, Feishu and WeCom.

The real app (receiver + decider + worker), the real DingTalk client and the simulator on 127.0.0.1, one shared
FakeClock: an approval's "pending" then "approved" callback arrives encrypted and signed as the platform sends it,
and the recipients' cards in the simulator's inbox turn orange, then green. The worker runs in bursts and time
is moved, never waited for.

`bridge send` is driven the same way (the CLI in-process, in a thread, against the running app): what an
integration engineer rehearses with is accepted by the receiver and ends in the same cards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge import app as bridge_app
from bridge import store, worker
from bridge.cli import main as cli
from bridge.clock import FakeClock
from bridge.config import Config
from bridge.dingtalk import client as dingtalk
from bridge.simulator import server as simulator
from bridge.simulator.state import SimState
from bridge.sources import native
from bridge.store.sqlite import SQLiteStore
from tests.integration.sources.test_native_web import (
    ENV,
    FIXTURES,
    SOURCES,
    Answer,
    approved_event,
    assert_success_reply,
    load_cfg,
    pending_event,
)

pytestmark = pytest.mark.integration

ORANGE, GREEN = "0xFFFF9D46", "0xFF78C06E"
RECIPIENTS = {"dingtalk": ("manager75",), "feishu": ("manager01", "manager02"),
              "wecom": ("ding_lisi", "ding_wangwu")}


@dataclass
class Stack:
    platform: str
    cfg: Config
    client: TestClient
    worker: worker.Worker
    store: store.Store
    sim: SimState
    clock: FakeClock

    @property
    def source(self) -> str:
        return SOURCES[self.platform]

    async def callback(self, plaintext: bytes) -> None:
        """The platform calls back now; the answer must be the one it counts as delivered."""
        source = self.cfg.source(self.source)
        assert source is not None
        method, query, headers, body = native.encode_request(source.native, plaintext, self.clock.now())
        resp = await self.client.request(method, f"/webhooks/{self.source}", params=query or None,
                                         headers=headers, data=body)
        answer = Answer(resp.status, resp.content_type, await resp.read(), 0.0)
        assert_success_reply(self.platform, self.source, self.cfg, answer)

    async def settle(self, rounds: int = 20, step_s: float = 5.0) -> None:
        """Run the worker until nothing is pending, moving time on between rounds (the delivery checks)."""
        for _ in range(rounds):
            await self.worker.run(burst=True)
            counts = await self.store.job_counts(self.clock.now())
            if counts.pending == 0 and counts.running == 0:
                return
            self.clock.advance(step_s)
        raise AssertionError(f"jobs still pending after {rounds} rounds: {counts}")

    def bars(self, userid: str) -> list[tuple[str | None, str | None, bool]]:
        return [((card.get("status_bar") or {}).get("value"), (card.get("status_bar") or {}).get("bg"),
                 card["recalled"]) for card in self.sim.inbox(userid)]


@asynccontextmanager
async def _stack(platform: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Stack]:
    state = SimState(clock=clock, seed=7)
    async with simulator.running(state=state) as sim, aiohttp.ClientSession() as session:
        cfg = load_cfg(platform, base_url=sim.base_url)
        client = dingtalk.Client.from_config(session, cfg.dingtalk, clock=clock, tokens=dingtalk.TokenRegistry())
        st = SQLiteStore(tmp_path / "bridge.db")
        application = bridge_app.create_app(cfg, store=st, clock=clock, client=client, run_worker=False)
        async with TestClient(TestServer(application)) as tc:
            yield Stack(platform, cfg, tc, application[bridge_app.WORKER], st, state, clock)


@pytest.fixture(params=["dingtalk", "feishu", "wecom"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(request.param, tmp_path, FakeClock()) as s:
        yield s


async def test_encrypted_callbacks_turn_the_card_orange_then_green(stack: Stack) -> None:
    t0 = stack.clock.now()
    await stack.callback(pending_event(stack.platform, t0))
    await stack.settle()
    for userid in RECIPIENTS[stack.platform]:
        assert stack.bars(userid) == [("待审批", ORANGE, False)], userid

    stack.clock.advance(60)
    await stack.callback(approved_event(stack.platform, stack.clock.now()))
    await stack.settle()
    for userid in RECIPIENTS[stack.platform]:
        assert stack.bars(userid) == [("已同意", GREEN, False)], userid
    [card] = stack.sim.inbox(RECIPIENTS[stack.platform][0])
    assert card["msg"]["oa"]["message_url"]  # the payload's link (DingTalk) or the source's url_template

    sends = stack.sim.calls(path="/topapi/message/corpconversation/asyncsend_v2")
    assert len(sends) == 1
    history = await stack.store.events_for(stack.source, (await stack.store.list_approvals())[0].approval_id)
    assert [e.outcome for e in history] == [store.Outcome.APPLIED, store.Outcome.APPLIED]
    assert await stack.store.list_jobs(store.JobState.DEAD) == []


async def test_a_retried_callback_changes_no_card(stack: Stack) -> None:
    plaintext = pending_event(stack.platform, stack.clock.now())
    await stack.callback(plaintext)
    await stack.settle()
    stack.clock.advance(15)  # the platform did not see the answer and delivers again
    await stack.callback(plaintext)
    await stack.settle()
    for userid in RECIPIENTS[stack.platform]:
        assert stack.bars(userid) == [("待审批", ORANGE, False)], userid
    assert len(stack.sim.calls(path="/topapi/message/corpconversation/asyncsend_v2")) == 1


# ------------------------------------------------------------------ bridge send: the rehearsal path


def _write_config(tmp_path: Path, platform: str, base_url: str) -> Path:
    """The fixture configuration with [dingtalk] base_url pointing at the simulator, as a file for the CLI."""
    text = (FIXTURES / f"native-{platform}.toml").read_text(encoding="utf-8")
    text = text.replace('base_url = "https://oapi.dingtalk.com"', f'base_url = "{base_url}"')
    path = tmp_path / f"native-{platform}.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def _bridge_send(config_path: Path, source: str, url: str, payload: Path) -> int:
    # cli.main runs its own event loop (asyncio.run): give it a thread while this loop serves the request
    return await asyncio.to_thread(cli.main, ["send", "--config", str(config_path), "--source", source,
                                              "--url", url, str(payload)])


HANDSHAKES = {
    "dingtalk": (b'{"EventType":"check_url"}', '"msg_signature"'),
    "feishu": (b'{"challenge":"c-123","token":"vt_test_token","type":"url_verification"}', '"challenge": "c-123"'),
    "wecom": (b"4868163428351249637", "4868163428351249637"),
}


@pytest.mark.parametrize("platform", ["dingtalk", "feishu", "wecom"])
async def test_bridge_send_rehearses_the_handshake_and_the_events_to_the_card(
    platform: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    # `bridge send` stamps requests with the real time, so bridge's fake clock starts at the real time
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    async with _stack(platform, tmp_path, clock) as s:
        config_path = _write_config(tmp_path, platform, s.cfg.dingtalk.base_url)
        url = str(s.client.make_url(f"/webhooks/{s.source}"))

        handshake, expected = HANDSHAKES[platform]
        (tmp_path / "handshake").write_bytes(handshake)
        assert await _bridge_send(config_path, s.source, url, tmp_path / "handshake") == 0
        out = capsys.readouterr()
        assert "HTTP 200" in out.err and expected in out.out

        ext = "xml" if platform == "wecom" else "json"
        pending, approved = tmp_path / f"pending.{ext}", tmp_path / f"approved.{ext}"
        pending.write_bytes(pending_event(platform, clock.now() - timedelta(minutes=2)))
        approved.write_bytes(approved_event(platform, clock.now() - timedelta(minutes=1)))
        assert await _bridge_send(config_path, s.source, url, pending) == 0
        await s.settle()
        assert await _bridge_send(config_path, s.source, url, approved) == 0
        await s.settle()
        for userid in RECIPIENTS[platform]:
            assert s.bars(userid) == [("已同意", GREEN, False)], userid
        # sent twice more: stored once, still answered as delivered (exit 0)
        assert await _bridge_send(config_path, s.source, url, approved) == 0
        events = await s.store.events_for(s.source, (await s.store.list_approvals())[0].approval_id)
        assert len(events) == 2 and events[-1].duplicates == 1


async def test_bridge_send_with_the_wrong_token_is_refused_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    async with _stack("wecom", tmp_path, clock) as s:
        config_path = _write_config(tmp_path, "wecom", s.cfg.dingtalk.base_url)
        monkeypatch.setenv("WECOM_CALLBACK_TOKEN", "a-token-the-receiver-does-not-have")
        payload = tmp_path / "pending.xml"
        payload.write_bytes(pending_event("wecom", clock.now()))
        url = str(s.client.make_url(f"/webhooks/{s.source}"))
        assert await _bridge_send(config_path, s.source, url, payload) == 1
        out = capsys.readouterr()
        assert "HTTP 401" in out.err and "msg_signature does not match" in out.out
        assert "a-token-the-receiver-does-not-have" not in out.out + out.err
