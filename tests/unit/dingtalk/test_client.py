"""Tests for bridge.dingtalk against aioresponses: wire format, typed results, token handling, error mapping,
rate limiting and secret hygiene."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from bridge import errors
from bridge.clock import FakeClock
from bridge.config import DingTalkConfig
from bridge.dingtalk import messages
from bridge.dingtalk.client import Client, ForbiddenEntry, SendProgress, SendResult, TokenRegistry, classify
from bridge.secret import Secret

BASE = "http://dingtalk.test"
SECRET = "s3cr3t-app-secret-value"
TOPAPI = f"{BASE}/topapi/message/corpconversation/"
MSG = messages.oa(message_url="https://erp.example/a/1", head_bgcolor="FF1E7CF7", head_text="审批",
                  status_value="待审批", status_bg="0xFFFF9D46", title="报销 #1", form=[("金额", "15.6 元")])


class FakeDingTalk:
    """Scripted DingTalk: records every request in order and answers from per-endpoint queues.

    gettoken hands out TOKEN-1, TOKEN-2, ... unless a reply is queued for it; topapi calls answer
    `{"errcode":0,...}` unless a reply is queued. A queued reply is a dict (JSON payload) or a CallbackResult.
    """

    def __init__(self, m: aioresponses) -> None:
        self.log: list[tuple[str, dict[str, str], Any]] = []
        self.replies: dict[str, deque[Any]] = defaultdict(deque)
        self.tokens_issued = 0
        self.gate: asyncio.Event | None = None
        self.revoked: set[str] = set()  # topapi calls with one of these tokens get 88 / sub_code 40014
        self.holds: deque[asyncio.Event] = deque()  # each topapi request takes one, if any, and waits for it
        m.get(re.compile(re.escape(BASE) + r"/gettoken\b.*"), callback=self._answer, repeat=True)
        m.post(re.compile(re.escape(TOPAPI) + r".*"), callback=self._answer, repeat=True)

    def queue(self, call: str, *replies: Any) -> None:
        self.replies[call].extend(replies)

    def calls(self, name: str) -> list[tuple[dict[str, str], Any]]:
        return [(q, body) for call, q, body in self.log if call == name]

    async def _answer(self, url: URL, **kwargs: Any) -> CallbackResult:
        call = url.path.rsplit("/corpconversation/", 1)[-1] if "/topapi/" in url.path else "gettoken"
        self.log.append((call, dict(url.query), kwargs.get("json")))
        if self.gate is not None:
            await self.gate.wait()
        if call != "gettoken" and self.holds:
            await self.holds.popleft().wait()
        if call != "gettoken" and url.query.get("access_token") in self.revoked:
            return CallbackResult(payload={"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token"})
        if self.replies[call]:
            reply = self.replies[call].popleft()
            return reply if isinstance(reply, CallbackResult) else CallbackResult(payload=reply)
        if call == "gettoken":
            self.tokens_issued += 1
            return CallbackResult(payload={"errcode": 0, "errmsg": "ok", "access_token": f"TOKEN-{self.tokens_issued}",
                                           "expires_in": 7200})
        return CallbackResult(payload={"errcode": 0, "errmsg": "ok", "request_id": "req1", "task_id": 256271667526,
                                       "progress": {"progress_in_percent": 100, "status": 2}})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
def fake(mocked: aioresponses) -> FakeDingTalk:
    return FakeDingTalk(mocked)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refreshes = 0

    def call_finished(self, call: str, code: str, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((call, code))

    def token_refreshed(self) -> None:
        self.refreshes += 1


@pytest.fixture
def tokens() -> TokenRegistry:
    return TokenRegistry()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(session: aiohttp.ClientSession, clock: FakeClock, tokens: TokenRegistry, recorder: Recorder) -> Client:
    return Client(session, app_key="dingappkey", app_secret=Secret(SECRET), agent_id=123, base_url=BASE,
                  clock=clock, tokens=tokens, observer=recorder)


# --- wire format -------------------------------------------------------------------------------------


async def test_send_wire_format(client: Client, fake: FakeDingTalk) -> None:
    task_id = await client.send(MSG, userids=["u1", "u2"])
    assert task_id == 256271667526
    assert isinstance(task_id, int)
    [(token_query, token_body)] = fake.calls("gettoken")
    assert token_query == {"appkey": "dingappkey", "appsecret": SECRET}
    assert token_body is None
    [(query, body)] = fake.calls("asyncsend_v2")
    assert query == {"access_token": "TOKEN-1"}
    assert body == {"agent_id": 123, "userid_list": "u1,u2", "msg": MSG}
    assert isinstance(body["agent_id"], int)


async def test_send_to_departments_only_leaves_userid_list_out(client: Client, fake: FakeDingTalk) -> None:
    await client.send(messages.text("hi"), dept_ids=[1, 22])
    [(_, body)] = fake.calls("asyncsend_v2")
    assert body == {"agent_id": 123, "dept_id_list": "1,22", "msg": {"msgtype": "text", "text": {"content": "hi"}}}


async def test_send_to_all_users_is_a_lowercase_json_true(client: Client, fake: FakeDingTalk) -> None:
    await client.send(messages.text("hi"), to_all_user=True)
    [(_, body)] = fake.calls("asyncsend_v2")
    assert body["to_all_user"] is True
    assert '"to_all_user": true' in json.dumps(body)
    assert "userid_list" not in body
    assert "dept_id_list" not in body


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "no recipients"),
        ({"userids": [], "dept_ids": []}, "no recipients"),
        ({"userids": ["u1", ""]}, "userids must be non-empty strings"),
        ({"userids": ["u1,u2"]}, "without commas"),
        ({"userids": "u1"}, "not one string"),
        ({"dept_ids": ["7"]}, "dept_ids must be integers"),
    ],
)
async def test_bad_recipients_send_nothing(client: Client, mocked: aioresponses, fake: FakeDingTalk,
                                           kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(errors.MessageInvalid, match=needle):
        await client.send(MSG, **kwargs)
    assert fake.log == []
    assert mocked.requests == {}


async def test_invalid_msg_sends_nothing(client: Client, fake: FakeDingTalk) -> None:
    too_big = messages.text("审" * 700)
    with pytest.raises(errors.MessageInvalid, match="DingTalk accepts at most 2048"):
        await client.send(too_big, userids=["u1"])
    with pytest.raises(errors.MessageInvalid, match=r"msg\.oa\.head\.bgcolor"):
        await client.send({"msgtype": "oa", "oa": {"message_url": "u", "head": {"bgcolor": "red", "text": "t"}}},
                          userids=["u1"])
    assert fake.log == []


async def test_get_send_progress(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("getsendprogress", {"errcode": 0, "progress": {"progress_in_percent": 40, "status": 1}})
    progress = await client.get_send_progress(99)
    assert progress == SendProgress(status=1, percent=40)
    assert not progress.done
    assert (await client.get_send_progress(99)).done
    assert fake.calls("getsendprogress")[0] == ({"access_token": "TOKEN-1"}, {"agent_id": 123, "task_id": 99})


async def test_get_send_result_typed_and_tolerant(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("getsendresult", {"errcode": 0, "request_id": "r", "send_result": {
        "invalid_user_id_list": ["bad"], "read_user_id_list": ["manager4220"], "unread_user_id_list": ["u3"],
        "failed_user_id_list": ["u4"], "invalid_dept_id_list": ["17"],
        "forbidden_list": [{"code": 143106, "count": 1, "userid": "u1"}]}})
    result = await client.get_send_result(7)
    assert fake.calls("getsendresult")[0][1] == {"agent_id": 123, "task_id": 7}
    assert result == SendResult(invalid_user_id_list=("bad",), read_user_id_list=("manager4220",),
                                unread_user_id_list=("u3",), failed_user_id_list=("u4",), invalid_dept_id_list=(17,),
                                forbidden_list=(ForbiddenEntry(code="143106", count=1, userid="u1"),))
    assert result.forbidden_user_id_list == ()
    assert result.not_reached == ("bad", "u1", "u4")
    assert json.loads(json.dumps(result.to_dict()))["forbidden_list"] == [
        {"code": "143106", "count": 1, "userid": "u1"}]


async def test_get_send_result_missing_everything_reads_empty(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("getsendresult", {"errcode": 0})
    result = await client.get_send_result(7)
    assert result == SendResult()
    assert result.not_reached == ()
    assert result.to_dict()["read_user_id_list"] == []


async def test_update_status_bar_wire_format(client: Client, fake: FakeDingTalk) -> None:
    await client.update_status_bar(5, "已同意", "FF78C06E")
    await client.update_status_bar(5, "已撤销")
    (_, with_bg), (_, without_bg) = fake.calls("status_bar/update")
    assert with_bg == {"agent_id": 123, "task_id": 5, "status_value": "已同意", "status_bg": "0xFF78C06E"}
    assert without_bg == {"agent_id": 123, "task_id": 5, "status_value": "已撤销"}
    with pytest.raises(errors.MessageInvalid, match="status_bg"):
        await client.update_status_bar(5, "x", "green")
    assert len(fake.calls("status_bar/update")) == 2


async def test_recall_uses_msg_task_id(client: Client, fake: FakeDingTalk) -> None:
    await client.recall(256271667526)
    assert fake.calls("recall") == [({"access_token": "TOKEN-1"}, {"agent_id": 123, "msg_task_id": 256271667526})]


# --- token handling ----------------------------------------------------------------------------------


async def test_token_is_cached_until_ten_minutes_before_expiry(client: Client, fake: FakeDingTalk,
                                                              clock: FakeClock, recorder: Recorder) -> None:
    t0 = clock.monotonic()
    assert client.last_token_ok_at is None
    for _ in range(5):
        await client.recall(1)
    assert len(fake.calls("gettoken")) == 1
    assert client.last_token_ok_at == t0
    clock.advance(t0 + 7200 - 600 - 0.001 - clock.monotonic())
    await client.recall(1)
    assert len(fake.calls("gettoken")) == 1
    clock.advance(0.001)
    await client.recall(1)
    assert len(fake.calls("gettoken")) == 2
    assert client.last_token_ok_at == pytest.approx(t0 + 6600)
    assert [q["access_token"] for q, _ in fake.calls("recall")] == ["TOKEN-1"] * 6 + ["TOKEN-2"]
    assert recorder.refreshes == 2


async def test_concurrent_first_calls_share_one_gettoken(client: Client, fake: FakeDingTalk) -> None:
    fake.gate = asyncio.Event()
    tasks = [asyncio.create_task(client.recall(i)) for i in range(20)]
    for _ in range(20):
        await asyncio.sleep(0)
    fake.gate.set()
    await asyncio.gather(*tasks)
    assert len(fake.calls("gettoken")) == 1
    assert len(fake.calls("recall")) == 20


async def test_two_clients_of_one_app_share_the_token(session: aiohttp.ClientSession, fake: FakeDingTalk,
                                                      clock: FakeClock, tokens: TokenRegistry) -> None:
    cfg = DingTalkConfig(base_url=BASE, app_key="dingappkey", app_secret=Secret(SECRET), agent_id=123)
    a = Client.from_config(session, cfg, clock=clock, tokens=tokens)
    b = Client.from_config(session, cfg, clock=clock, tokens=tokens)
    other = Client.from_config(session, DingTalkConfig(base_url=BASE, app_key="otherapp", app_secret=Secret("x" * 9),
                                                       agent_id=9), clock=clock, tokens=tokens)
    await a.recall(1)
    await b.recall(2)
    assert len(fake.calls("gettoken")) == 1
    await other.recall(3)
    assert len(fake.calls("gettoken")) == 2
    assert fake.calls("recall")[2] == ({"access_token": "TOKEN-2"}, {"agent_id": 9, "msg_task_id": 3})


async def test_force_refresh(client: Client, fake: FakeDingTalk) -> None:
    assert await client.token() == "TOKEN-1"
    assert await client.token() == "TOKEN-1"
    assert await client.token(force_refresh=True) == "TOKEN-2"


TOKEN_ERRORS = [
    {"errcode": 40014, "errmsg": "不合法的access_token"},
    {"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token", "errmsg": "ding talk error[subcode=40014]"},
    {"errcode": 88, "sub_code": "40000", "errmsg": "access_token is blank"},
    {"errcode": 88, "sub_code": "42001", "errmsg": "access_token超时"},
    {"errcode": 42001, "errmsg": "access_token超时"},
    {"errcode": 40001, "errmsg": "token invalid"},
]


@pytest.mark.parametrize("refusal", TOKEN_ERRORS)
async def test_refused_token_is_refreshed_and_call_retried_once(client: Client, fake: FakeDingTalk,
                                                                refusal: dict[str, Any]) -> None:
    await client.token()
    fake.queue("asyncsend_v2", refusal)
    assert await client.send(MSG, userids=["u1"]) == 256271667526
    assert [q["access_token"] for q, _ in fake.calls("asyncsend_v2")] == ["TOKEN-1", "TOKEN-2"]
    assert len(fake.calls("gettoken")) == 2
    # the refreshed token is cached for the next call
    await client.recall(1)
    assert fake.calls("recall")[0][0] == {"access_token": "TOKEN-2"}


@pytest.mark.parametrize("refusal", TOKEN_ERRORS[:2])
async def test_token_refused_twice_raises_token_error(client: Client, fake: FakeDingTalk,
                                                      refusal: dict[str, Any]) -> None:
    fake.queue("getsendprogress", refusal, refusal)
    with pytest.raises(errors.DingTalkTokenError) as info:
        await client.get_send_progress(1)
    assert isinstance(info.value, errors.TransientDingTalkError)
    assert info.value.call == "getsendprogress"
    assert "after a refresh" in str(info.value)
    assert len(fake.calls("getsendprogress")) == 2
    assert len(fake.calls("gettoken")) == 2


async def test_concurrent_token_refusals_refresh_once(client: Client, fake: FakeDingTalk) -> None:
    await client.token()
    fake.revoked.add("TOKEN-1")
    await asyncio.gather(*(client.recall(i) for i in range(5)))
    assert len(fake.calls("gettoken")) == 2
    tokens_used = [q["access_token"] for q, _ in fake.calls("recall")]
    assert tokens_used.count("TOKEN-2") == 5
    assert set(tokens_used) == {"TOKEN-1", "TOKEN-2"}


async def test_refusal_after_another_caller_refreshed_reuses_the_new_token(client: Client,
                                                                            fake: FakeDingTalk) -> None:
    await client.token()
    fake.revoked.add("TOKEN-1")
    gate_a, gate_b = asyncio.Event(), asyncio.Event()
    fake.holds.extend([gate_a, gate_b])
    a = asyncio.create_task(client.recall(1))
    b = asyncio.create_task(client.recall(2))
    for _ in range(200):
        if len(fake.calls("recall")) == 2:
            break
        await asyncio.sleep(0)
    gate_a.set()
    await a
    assert len(fake.calls("gettoken")) == 2
    gate_b.set()
    await b
    assert len(fake.calls("gettoken")) == 2  # b's refusal came with the old token: no second refresh
    assert [q["access_token"] for q, _ in fake.calls("recall")] == ["TOKEN-1", "TOKEN-1", "TOKEN-2", "TOKEN-2"]


@pytest.mark.parametrize("code", [40096, 40089, 40001])
async def test_bad_credentials_are_permanent(client: Client, fake: FakeDingTalk, code: int) -> None:
    fake.queue("gettoken", {"errcode": code, "errmsg": "不合法的appKey或appSecret"})
    with pytest.raises(errors.PermanentDingTalkError) as info:
        await client.send(MSG, userids=["u1"])
    assert info.value.call == "gettoken"
    assert info.value.errcode == code
    assert fake.calls("asyncsend_v2") == []
    assert len(fake.calls("gettoken")) == 1
    assert client.last_token_ok_at is None
    assert client.last_token_error_at is not None


async def test_gettoken_throttled_is_transient(client: Client, fake: FakeDingTalk, clock: FakeClock) -> None:
    fake.queue("gettoken", {"errcode": 90018, "errmsg": "qps"})
    with pytest.raises(errors.DingTalkThrottled):
        await client.token()
    failed_at = client.last_token_error_at
    assert failed_at is not None
    clock.advance(1)
    assert await client.token() == "TOKEN-1"  # the failure is not cached
    assert client.last_token_ok_at is not None
    assert client.last_token_ok_at > failed_at


# --- error classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected", "code"),
    [
        ({"errcode": 90018}, errors.DingTalkThrottled, "90018"),
        ({"errcode": 90002}, errors.DingTalkThrottled, "90002"),
        ({"errcode": 90019}, errors.DingTalkThrottled, "90019"),
        ({"errcode": 90001}, errors.DingTalkThrottled, "90001"),
        ({"errcode": 90017}, errors.DingTalkThrottled, "90017"),
        ({"errcode": 88, "sub_code": "90018"}, errors.DingTalkThrottled, "90018"),
        ({"errcode": 88, "sub_code": "90002", "errmsg": "ding talk error[subcode=90002]"}, errors.DingTalkThrottled,
         "90002"),
        ({"errcode": -1, "errmsg": "系统繁忙"}, errors.DingTalkServerError, "-1"),
        ({"errcode": 500}, errors.DingTalkServerError, "500"),
        ({"errcode": 90020, "errmsg": "您的企业本月api调用量已超过限制"}, errors.PermanentDingTalkError, "90020"),
        ({"errcode": 88, "sub_code": "90020"}, errors.PermanentDingTalkError, "90020"),
        ({"errcode": 40035}, errors.PermanentDingTalkError, "40035"),
        ({"errcode": 400002}, errors.PermanentDingTalkError, "400002"),
        ({"errcode": 40056}, errors.PermanentDingTalkError, "40056"),
        ({"errcode": 41020}, errors.PermanentDingTalkError, "41020"),
        ({"errcode": 41029}, errors.PermanentDingTalkError, "41029"),
        ({"errcode": 60011}, errors.PermanentDingTalkError, "60011"),
        ({"errcode": 88, "sub_code": "60011"}, errors.PermanentDingTalkError, "60011"),
        ({"errcode": 60020}, errors.PermanentDingTalkError, "60020"),
        ({"errcode": 88, "sub_code": "60020"}, errors.PermanentDingTalkError, "60020"),
        ({"errcode": 40008}, errors.PermanentDingTalkError, "40008"),
        ({"errcode": 22, "errmsg": "Invalid method"}, errors.PermanentDingTalkError, "22"),
        ({"errcode": 1, "errmsg": "Platform System error"}, errors.PermanentDingTalkError, "1"),
        ({"errcode": 77777}, errors.PermanentDingTalkError, "77777"),
        ({"errcode": 88}, errors.PermanentDingTalkError, "88"),
    ],
)
async def test_error_classification(client: Client, fake: FakeDingTalk, recorder: Recorder, payload: dict[str, Any],
                                    expected: type[errors.DingTalkError], code: str) -> None:
    fake.queue("getsendprogress", {**payload, "request_id": "rq42"})
    with pytest.raises(errors.DingTalkError) as info:
        await client.get_send_progress(1)
    exc = info.value
    assert type(exc) is expected
    assert exc.code == code
    assert exc.call == "getsendprogress"
    assert exc.request_id == "rq42"
    assert exc.errcode == payload["errcode"]
    assert exc.sub_code == payload.get("sub_code")
    if expected is errors.DingTalkThrottled:
        assert exc.retry_after == pytest.approx(1.0)
    assert len(fake.calls("getsendprogress")) == 1  # only token errors are retried inside the client
    assert recorder.calls[-1] == ("getsendprogress", code)


def test_classify_success_and_odd_answers() -> None:
    assert classify("recall", {"errcode": 0, "errmsg": "ok"}) is None
    assert classify("recall", {"errcode": "0"}) is None
    assert isinstance(classify("recall", {"errcode": "90018"}), errors.DingTalkThrottled)
    assert isinstance(classify("recall", {"hello": 1}), errors.DingTalkServerError)
    assert isinstance(classify("recall", {"code": "x"}, http_status=400), errors.PermanentDingTalkError)
    assert isinstance(classify("recall", {"code": "x"}, http_status=429), errors.DingTalkThrottled)
    assert isinstance(classify("gettoken", {"errcode": 40014}, token_call=False), errors.PermanentDingTalkError)


async def test_ip_ban_json_body(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("asyncsend_v2", {"status": 1111, "wait": 5, "source": "x5", "punish": "deny", "uuid": "abc"})
    with pytest.raises(errors.DingTalkThrottled) as info:
        await client.send(MSG, userids=["u1"])
    assert info.value.retry_after == 5.0


async def test_ip_ban_html_page(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("recall", CallbackResult(status=200, body="<!DOCTYPE html><html><body>denied</body></html>",
                                        content_type="text/html"))
    with pytest.raises(errors.DingTalkThrottled) as info:
        await client.recall(1)
    assert info.value.retry_after == 300.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_5xx_is_a_server_error(client: Client, fake: FakeDingTalk, status: int) -> None:
    fake.queue("recall", CallbackResult(status=status, body="Bad Gateway", content_type="text/plain"))
    with pytest.raises(errors.DingTalkServerError) as info:
        await client.recall(1)
    assert info.value.http_status == status
    assert info.value.code == f"http_{status}"


async def test_non_json_200_is_a_server_error(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("recall", CallbackResult(status=200, body="oops", content_type="text/plain"))
    with pytest.raises(errors.DingTalkServerError, match="not a JSON object"):
        await client.recall(1)


async def test_timeout_is_a_network_error(client: Client, mocked: aioresponses) -> None:
    mocked.get(re.compile(re.escape(BASE) + r"/gettoken.*"),
               payload={"errcode": 0, "access_token": "TOKEN-1", "expires_in": 7200})
    mocked.post(re.compile(re.escape(TOPAPI) + r".*"), exception=TimeoutError())
    with pytest.raises(errors.DingTalkNetworkError, match="timed out after 10 s") as info:
        await client.recall(1)
    assert isinstance(info.value, errors.TransientDingTalkError)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_timeout_is_passed_to_aiohttp(session: aiohttp.ClientSession, mocked: aioresponses,
                                            tokens: TokenRegistry) -> None:
    seen: list[Any] = []

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        seen.append(kwargs.get("timeout"))
        return CallbackResult(payload={"errcode": 0, "access_token": "T", "expires_in": 7200})

    mocked.get(re.compile(re.escape(BASE) + r"/gettoken.*"), callback=answer)
    c = Client(session, app_key="k", app_secret=Secret(SECRET), agent_id=1, base_url=BASE, timeout_s=2.5,
               tokens=tokens, clock=FakeClock())
    await c.token()
    assert seen == [aiohttp.ClientTimeout(total=2.5)]


async def test_connection_error_is_scrubbed(client: Client, mocked: aioresponses) -> None:
    # aioresponses' "Connection refused" message includes the URL, i.e. the secret and the token
    with pytest.raises(errors.DingTalkNetworkError) as info:
        await client.token()
    assert SECRET not in str(info.value)
    assert "****" in str(info.value)
    mocked.get(re.compile(re.escape(BASE) + r"/gettoken.*"),
               payload={"errcode": 0, "access_token": "TOKEN-XYZ", "expires_in": 7200})
    with pytest.raises(errors.DingTalkNetworkError) as info:
        await client.recall(1)
    assert "TOKEN-XYZ" not in str(info.value)
    assert "****" in str(info.value)


# --- rate limiting, observer, secrets ----------------------------------------------------------------


async def test_calls_are_rate_limited_per_endpoint(client: Client, fake: FakeDingTalk, clock: FakeClock) -> None:
    await client.token()
    t0 = clock.monotonic()
    await asyncio.gather(*(client.recall(i) for i in range(41)))
    assert clock.monotonic() - t0 >= 40 * 0.05
    t1 = clock.monotonic()
    await client.get_send_progress(1)  # another endpoint has its own budget
    assert clock.monotonic() == t1


async def test_observer_sees_every_request(client: Client, fake: FakeDingTalk, recorder: Recorder) -> None:
    fake.queue("recall", {"errcode": 88, "sub_code": "40014"})
    await client.recall(1)
    fake.queue("recall", {"errcode": 400002})
    with pytest.raises(errors.PermanentDingTalkError):
        await client.recall(1)
    assert recorder.calls == [
        ("gettoken", "0"), ("recall", "40014"), ("gettoken", "0"), ("recall", "0"), ("recall", "400002")]
    assert recorder.refreshes == 2


async def test_secrets_never_leak(client: Client, fake: FakeDingTalk) -> None:
    assert SECRET not in repr(client)
    assert "****" in repr(client)
    with structlog.testing.capture_logs() as logs:
        await client.token()
        fake.queue("recall", {"errcode": 40035, "errmsg": f"bad access_token=TOKEN-1 appsecret={SECRET}",
                              "request_id": "rq"})
        with pytest.raises(errors.PermanentDingTalkError) as info:
            await client.recall(1)
    for text in (str(info.value), repr(info.value), json.dumps(info.value.as_dict()), repr(logs)):
        assert SECRET not in text
        assert "TOKEN-1" not in text
    assert info.value.errmsg == "bad access_token=**** appsecret=****"
    events = [e["event"] for e in logs]
    assert events == ["dingtalk.token_refreshed", "dingtalk.call_failed"]
    failed = logs[1]
    assert failed["log_level"] == "warning"
    assert (failed["call"], failed["errcode"], failed["sub_code"]) == ("recall", 40035, None)
    assert failed["request_id"] == "rq"
    assert "token" not in {k for k in logs[0] if k != "event"}


async def test_long_errmsg_is_clipped(client: Client, fake: FakeDingTalk) -> None:
    fake.queue("recall", {"errcode": 40035, "errmsg": "x" * 5000})
    with pytest.raises(errors.PermanentDingTalkError) as info:
        await client.recall(1)
    assert len(info.value.errmsg or "") <= 300
