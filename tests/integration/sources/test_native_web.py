"""Native platform callbacks (DingTalk, Feishu, WeCom) through the real aiohttp app.

Each request is built the way the platform sends it (`native.encode_request`, or the reference's verified
vectors byte for byte) and posted to `create_app(...)` with a MemoryStore, a FakeClock and a FakeDingTalk, the
worker not running. Checked: the URL handshakes, the platform's own answer to every event, the event stored
once, every failure answered with the right status and a JSON body naming the cause, the time a request takes,
and that nothing but verify / decrypt / store happens in the request (no DingTalk call).

The configurations are the TOML files tests/fixtures/native-*.toml, quoted in docs/native-callbacks.md.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bridge import app as bridge_app
from bridge import config, store
from bridge.clock import FakeClock
from bridge.config import Config, SourceConfig
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.sources import native
from bridge.sources.native import crypto as nc
from bridge.store.memory import MemoryStore

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# The secrets the fixtures read with env:NAME (the reference's public test-vector credentials).
ENV = {
    "DINGTALK_APP_SECRET": "demo-app-secret",
    "DINGTALK_CALLBACK_TOKEN": "123456",
    "DINGTALK_CALLBACK_AES_KEY": "1234567890123456789012345678901234567890123",
    "FEISHU_VERIFICATION_TOKEN": "vt_test_token",
    "FEISHU_ENCRYPT_KEY": "test key",
    "WECOM_CALLBACK_TOKEN": "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    "WECOM_ENCODING_AES_KEY": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
}
SOURCES = {"dingtalk": "dingtalk-approvals", "feishu": "feishu-approvals", "wecom": "wecom-approvals"}
NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
DEADLINE_S = 0.5  # the platforms allow 1 s (handshakes) to 5 s; generous for CI, far below all of them


def load_cfg(platform: str, **dingtalk: Any) -> Config:
    """The fixture configuration of `platform`, with [dingtalk] keys overridden (base_url of a simulator)."""
    data = tomllib.loads((FIXTURES / f"native-{platform}.toml").read_text(encoding="utf-8"))
    data["dingtalk"].update(dingtalk)
    return config.from_dict(data, env=ENV)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# ------------------------------------------------------------------ payloads as each platform sends them


def dingtalk_event(kind: str, result: str | None = None, *, at: datetime, instance: str = "PI-0001",
                   staff: str | None = "manager75", event_id: str | None = None) -> bytes:
    payload: dict[str, Any] = {
        "EventType": "bpms_instance_change", "EventTime": ms(at), "CorpId": "dingcorp0001",
        "eventId": event_id or f"evt-{instance}-{kind}-{result}", "processInstanceId": instance,
        "createTime": ms(at - timedelta(minutes=5)), "processCode": "PROC-TEST-01",
        "businessId": "202611290001", "type": kind, "title": "报销-测试",
        "url": "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm",
    }
    if kind != "start":
        payload["finishTime"] = ms(at)
    if result:
        payload["result"] = result
    if staff:
        payload["staffId"] = staff
    return dumps(payload)


def feishu_event(status: str, *, at: datetime, instance: str = "81D31358-93AF-92D6-7425-01A5D67C4E71",
                 uuid: str | None = None, token: str = "vt_test_token") -> bytes:
    return dumps({
        "ts": f"{at.timestamp():.7f}", "uuid": uuid or f"uuid-{instance}-{status}", "token": token,
        "type": "event_callback",
        "event": {"app_id": "cli_test", "tenant_key": "tk_test", "type": "approval_instance",
                  "approval_code": "7C468A54-8745-2245-9675-08B7C63E7A85", "instance_code": instance,
                  "status": status, "operate_time": str(ms(at)), "instance_operate_time": str(ms(at)),
                  "uuid": "6525bffb"},
    })


def wecom_event(sp_status: int, change: int, *, at: datetime, sp_no: str = "202611290001",
                approvers: tuple[str, ...] = ("LiSi", "WangWu"), corp_id: str = "ww1436e0e65a779aee") -> bytes:
    details = "".join(
        f"<Details><Approver><UserId><![CDATA[{a}]]></UserId></Approver><Speech><![CDATA[]]></Speech>"
        f"<SpStatus>{sp_status}</SpStatus><SpTime>0</SpTime></Details>" for a in approvers
    )
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{int(at.timestamp())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[sys_approval_change]]></Event><AgentID>3010040</AgentID><ApprovalInfo>"
        f"<SpNoStr><![CDATA[{sp_no}]]></SpNoStr><SpNo>{sp_no}</SpNo><SpName><![CDATA[报销审批]]></SpName>"
        f"<SpStatus>{sp_status}</SpStatus><TemplateId><![CDATA[3TkaH5KFbrG9heEQWLJjhgpFwmqAFB4dLEnapaB7aaa]]>"
        f"</TemplateId><ApplyTime>{int(at.timestamp()) - 600}</ApplyTime><Applyer><UserId><![CDATA[WuJunJie]]>"
        f"</UserId><Party><![CDATA[1]]></Party></Applyer><SpRecord><SpStatus>{sp_status}</SpStatus>"
        f"<ApproverAttr>1</ApproverAttr>{details}</SpRecord><StatuChangeEvent>{change}</StatuChangeEvent>"
        "</ApprovalInfo></xml>"
    ).encode()


def pending_event(platform: str, at: datetime, **kw: Any) -> bytes:
    if platform == "dingtalk":
        return dingtalk_event("start", at=at, **kw)
    if platform == "feishu":
        return feishu_event("PENDING", at=at, **kw)
    return wecom_event(1, 1, at=at, **kw)


def approved_event(platform: str, at: datetime, **kw: Any) -> bytes:
    if platform == "dingtalk":
        return dingtalk_event("finish", "agree", at=at, **kw)
    if platform == "feishu":
        return feishu_event("APPROVED", at=at, **kw)
    return wecom_event(2, 2, at=at, **kw)


# ------------------------------------------------------------------ the app


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    elapsed_s: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Env:
    client: TestClient
    store: MemoryStore
    cfg: Config
    clock: FakeClock
    fake: FakeDingTalk

    def source(self, name: str) -> SourceConfig:
        found = self.cfg.source(name)
        assert found is not None
        return found

    async def send(self, method: str, name: str, query: dict[str, str], headers: dict[str, str],
                   body: bytes) -> Answer:
        started = time.perf_counter()
        resp = await self.client.request(method, f"/webhooks/{name}", params=query or None, headers=headers,
                                         data=body)
        raw = await resp.read()
        return Answer(resp.status, resp.content_type, raw, time.perf_counter() - started)

    async def deliver(self, name: str, plaintext: bytes, *, at: datetime | None = None,
                      tamper: Callable[[tuple[str, dict[str, str], dict[str, str], bytes]],
                                       tuple[str, dict[str, str], dict[str, str], bytes]] | None = None) -> Answer:
        """Send `plaintext` from source `name` exactly as its platform would at `at` (default: now)."""
        request = native.encode_request(self.source(name).native, plaintext, at or self.clock.now())
        if tamper is not None:
            request = tamper(request)
        return await self.send(*request[:1], name, *request[1:])

    async def events(self) -> list[store.InboxEvent]:
        return sorted(self.store.inbox.values(), key=lambda e: e.id)


@asynccontextmanager
async def running(cfg: Config, now: datetime = NOW) -> AsyncIterator[Env]:
    st, clock, fake = MemoryStore(), FakeClock(now), FakeDingTalk()
    application = bridge_app.create_app(cfg, store=st, clock=clock, client=fake, run_worker=False)
    async with TestClient(TestServer(application)) as client:
        yield Env(client, st, cfg, clock, fake)


@pytest.fixture(params=["dingtalk", "feishu", "wecom"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Env]]:
    async with running(load_cfg(request.param)) as e:
        yield request.param, e


def assert_success_reply(platform: str, name: str, cfg: Config, answer: Answer) -> None:
    """The answer the platform counts as delivered (anything else makes it retry, or shows an error)."""
    assert answer.status == 200, answer.body
    if platform == "dingtalk":
        source = cfg.source(name)
        assert source is not None
        keys = source.native.keys
        reply = answer.json()
        assert set(reply) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
        assert all(isinstance(v, str) for v in reply.values())
        expected = nc.wx_signature(keys.token.reveal(), reply["timeStamp"], reply["nonce"], reply["encrypt"])
        assert reply["msg_signature"] == expected
        assert nc.wx_decrypt(nc.wx_key(keys.aes_key.reveal()), reply["encrypt"], keys.receive_id) == b"success"
    elif platform == "feishu":
        assert answer.content_type == "application/json" and answer.json() == {"msg": "success"}
    else:
        assert answer.body == b""


def assert_error(answer: Answer, status: int, *needles: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.content_type == "application/json"
    data = answer.json()
    assert data["error"] == {400: "malformed_payload", 401: "signature_invalid"}[status]
    for needle in needles:
        assert needle in data["message"], data
    for secret in ENV.values():
        assert secret not in answer.body.decode(), "a secret leaked into the answer"
    return data


# ------------------------------------------------------------------ handshakes


async def test_dingtalk_check_url_is_answered_with_an_encrypted_success() -> None:
    async with running(load_cfg("dingtalk")) as e:
        answer = await e.deliver("dingtalk-approvals", b'{"EventType":"check_url"}')
        assert_success_reply("dingtalk", "dingtalk-approvals", e.cfg, answer)
        assert answer.json()["timeStamp"] == str(ms(NOW))  # camelCase, unlike the query's timestamp
        assert answer.elapsed_s < DEADLINE_S
        assert await e.events() == [] and e.fake.calls == []


async def test_dingtalk_d_a_check_url_vector_is_answered_through_the_app() -> None:
    """The official D-A request, byte for byte, to a source with D-A's credentials."""
    data = tomllib.loads((FIXTURES / "native-dingtalk.toml").read_text(encoding="utf-8"))
    data["sources"][0]["app_key"] = "ding6ccabc44d2c8d38b"
    env = ENV | {"DINGTALK_CALLBACK_TOKEN": "mryue",
                 "DINGTALK_CALLBACK_AES_KEY": "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"}
    cfg = config.from_dict(data, env=env)
    encrypt = ("0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4y"
               "hELOFchzNukR+t8SB/qk4ROMu3")
    async with running(cfg, now=datetime.fromtimestamp(1608001896.814, UTC)) as e:
        query = {"msg_signature": "03044561471240d4a14bb09372dfcfd4fd0e40cb", "timestamp": "1608001896814",
                 "nonce": "WL4PK6yA"}
        answer = await e.send("POST", "dingtalk-approvals", query, {"Content-Type": "application/json"},
                              dumps({"encrypt": encrypt}))
        assert_success_reply("dingtalk", "dingtalk-approvals", cfg, answer)


@pytest.mark.parametrize("name", ["feishu-plain", "feishu-approvals"])
async def test_feishu_challenge_plain_and_encrypted(name: str) -> None:
    async with running(load_cfg("feishu")) as e:
        plaintext = b'{"challenge":"ajls384kdjx98XX","token":"vt_test_token","type":"url_verification"}'
        answer = await e.deliver(name, plaintext)
        assert answer.status == 200 and answer.content_type == "application/json"
        assert answer.json() == {"challenge": "ajls384kdjx98XX"}
        assert answer.elapsed_s < DEADLINE_S
        assert await e.events() == [] and e.fake.calls == []


async def test_feishu_f_b_encrypted_challenge_vector_without_signature_headers() -> None:
    body = (b'{"encrypt":"AAECAwQFBgcICQoLDA0ODw9mLTIAZS9jAmGTQ1wAhHpnBHVL2wRjH9rPunQdQC1vhrBk0wLCLXlUpBdzcFTudl5xyjggz'
            b'QIkOQ4COTrPUeuqmih1UWJ9Rsf3bSkYbOP9MHQEH2F+wk6B9zZcBdI0AQ=="}')
    async with running(load_cfg("feishu")) as e:
        answer = await e.send("POST", "feishu-approvals", {}, {"Content-Type": "application/json"}, body)
        assert answer.status == 200 and answer.json() == {"challenge": "ajls384kdjx98XX"}


async def test_feishu_challenge_with_the_wrong_token_is_401() -> None:
    async with running(load_cfg("feishu")) as e:
        plaintext = b'{"challenge":"x","token":"not-the-token","type":"url_verification"}'
        assert_error(await e.deliver("feishu-plain", plaintext), 401, "verification_token")


async def test_wecom_get_echostr_is_answered_in_plain_text() -> None:
    async with running(load_cfg("wecom")) as e:
        answer = await e.deliver("wecom-approvals", b"4868163428351249637")
        assert answer.status == 200 and answer.content_type == "text/plain"
        assert answer.body == b"4868163428351249637"  # no quotes, no BOM, no newline
        assert answer.elapsed_s < DEADLINE_S
        assert await e.events() == [] and e.fake.calls == []


async def test_wecom_w_f_get_vector_with_a_percent_encoded_echostr() -> None:
    """W-F as WeCom sends it: the echostr percent-encoded in the raw URL, decoded once by aiohttp."""
    echostr = "BDXwBah1UBgzbW/KNrMgV6t+8IWooW/vwL7NxUeSQu1TBcwJIw+Nxjv5UIadLYWZTmNxJnvAvPdkCrWoMhw0fA=="
    async with running(load_cfg("wecom"), now=datetime.fromtimestamp(1571732300, UTC)) as e:
        url = ("/webhooks/wecom-approvals?msg_signature=88080caa2cbf5c66bca496b7d0e09eaf43c70520"
               f"&timestamp=1571732300&nonce=99887766&echostr={quote(echostr, safe='')}")
        resp = await e.client.get(url)
        assert resp.status == 200 and await resp.read() == b"4868163428351249637"


# ------------------------------------------------------------------ events: answer, store, dedupe


async def test_each_platform_answers_an_event_in_its_format_and_stores_it(env: tuple[str, Env]) -> None:
    platform, e = env
    name = SOURCES[platform]
    answer = await e.deliver(name, pending_event(platform, NOW))
    assert_success_reply(platform, name, e.cfg, answer)
    assert answer.elapsed_s < DEADLINE_S
    [stored] = await e.events()
    ev = stored.event
    assert ev.source == name and ev.status is Status.PENDING and ev.unresolved is None
    expected = {"dingtalk": ("manager75",), "feishu": ("manager01", "manager02"),
                "wecom": ("ding_lisi", "ding_wangwu")}[platform]
    assert ev.recipients == expected and ev.title and ev.url
    assert ev.occurred_at == NOW.replace(microsecond=0) or ev.occurred_at == NOW
    assert e.fake.calls == []  # nothing but verify / decrypt / store in the request


async def test_the_vectors_d_e_f_c_w_e_through_the_app() -> None:
    """The reference's built approval vectors, exact bytes, each stored as the event it describes."""
    d_e = (
        "GCr6999U/V4/3veZ85Bxl/HN5zR96rr7I++Z8YjKpT4B9DEnB9c+AtGVHryK1mKhyKFwCsXr3GCOleXDV5PXB9PGrBu5eN/fEZqa"
        "VPQoc2r+n1S3Bk+8T8/Qp8OmkoCD6i+KiiLNBAQHlr4m6w7E+MgsDFl5l47IBNNOB5qWIFBQV2b5TQY7ItBbyrgaEtP/eDu+gSfo"
        "gG5ZEDt+x7RQHkbSc9jTfQsRno5jzHTLM+d5OjI4M8/bV4xk0i9v/0UvurZKAsEFSBFDAxLk4UH9NazBntAz10ESJU3og8CODTQc"
        "jrVBhhO/UvCluPw8qYdDGOv8TeB0RVBLhA4K2m4udS6NQ4VxrRM8+4dfomP5NLvkfMSVYJ6l+URBv9FUlvgkf6UiPjO/W3DAnK7q"
        "0xiLR47aNAhaOBq7uFjVO9Hptt2l2WAEcBd+kxKroMe6ER3kXbqIYxUarJhT50WEB4SXNwXnPLR/E1BpBrun4I8nuGLqfB1+oRTJ"
        "UvDwGxnwOw2HwDqYVxqKCX85oaJQauGEbtxc+O86x6doLKf9cc/VM8UtNvU/JYfMkl7Re1BUBr+JTxvtvyT40bbYrxtcZiw6Z0w8"
        "iLt4v+FOp4xvXplQOcl5kttC0Fs3W6Vv5v+3WfTw7pdyjGPGpvsbDyTe8yRHROpUshreM0+njXDtuZKD1OA="
    )
    async with running(load_cfg("dingtalk"), now=datetime.fromtimestamp(1663143335.6, UTC)) as e:
        query = {"msg_signature": "00b7246a6fe6c8b3aba4c54b034c7181062fb424", "timestamp": "1663143335600",
                 "nonce": "nonce123"}
        answer = await e.send("POST", "dingtalk-approvals", query, {"Content-Type": "application/json"},
                              dumps({"encrypt": d_e}))
        assert_success_reply("dingtalk", "dingtalk-approvals", e.cfg, answer)
        [stored] = await e.events()
        assert stored.event.event_id == "c7c7120f2c0741900ebdba0318c8" and stored.event.status is Status.APPROVED
        assert stored.event.title == "报销-测试" and stored.event.recipients == ("manager75",)

    f_c = (FIXTURES / "native-feishu-instance.json").read_bytes().rstrip(b"\n")
    async with running(load_cfg("feishu"), now=datetime.fromtimestamp(1666079208, UTC)) as e:
        source = e.source("feishu-approvals")
        iv = bytes(range(16, 32))
        body = dumps({"encrypt": nc.feishu_encrypt(nc.feishu_key("test key"), f_c, iv)})
        headers = {"Content-Type": "application/json", "X-Lark-Request-Timestamp": "1666079208",
                   "X-Lark-Request-Nonce": "a1b2c3d4",
                   "X-Lark-Signature": "363fbc6fcec4e4a1293617f43d0c9cba100d1a18bf1ffd7cd2633077353b439c"}
        answer = await e.send("POST", source.name, {}, headers, body)
        assert_success_reply("feishu", source.name, e.cfg, answer)
        [stored] = await e.events()
        assert stored.event.event_id == "bc447199585340d1f3728d26b1c0297a"  # the envelope's uuid
        assert stored.event.status is Status.APPROVED
        assert stored.event.title == "飞书审批 81D31358-93AF-92D6-7425-01A5D67C4E71"

    w_e = (
        "/K4xJYsBwQssQzE/v2nbvG//geNqYgLcsQd7zOTJWKK9bw83h2k45tp+masTXSqIKQl/k/dAnZlqSKkqiW9c2PVLfkm1FP/IVtqk"
        "Q5gnCY7QuU05QpFCeNx8VKUw5FZfs4wepvW0hg9tS3euXvid9ITSMV8fZf3HOjFZokjBXVKCK9rJVdvEHMYWvKGa1m4L3PDqp7ZA"
        "s/ghzcr9I2+6be29SpiSDG47rw8KIItdTjNEWU8Epi2T6SKnuYMA+rMJ0IEUhFzXf11WpZN8hi8PoRfbRuWAi9xBbRgc25Yb6HB/"
        "qXXc1kmxAYvhP479cmjllN37cw2ClpozqP/71xcyEu0zO+tLNWllxXe6EpdK2PUs5MAIAO1FVFx2dEe8pTqxwGYRL/4ckWzyCZr1"
        "R6JfiNmU6rOP0Lg1jOSq4C0Tlibz1W3iR2n4w1FluQEBaoXr20yzhRG3gm1Fl7yOwQlqAdnQ6tfjzXcXtCKGueUr/Sr/omoQbb14"
        "jEprHzA+yUJzmh5/9l9ECDKCpXooezyh+0oHehBxboAR63Hf+kZC3xTnJH0c1yMrmI447yU53OLeNi9gzZ6DD/DgimVUO5GDTCmo"
        "ox1TCL/iCv3FTWWQRr7Bsmi8DaCuDMrF1330QU7unumFsfSqL+PABaMEEpPQm7nEQ3+o58Nm/5K1EYhc95KFqSdBYJIlA2bdjL22"
        "qUu3QyLJxt6r5LGKknvuxTDr/YVMrtmiA1gdC9tGvagdApQ3v/BGyE6mB0aON5CYLwBGBWCGa9TPvI4HCxGRlKGXI3djCAN3XgI4"
        "xvj1jxFGPH9oL/yvB7z5v9cc3DIKgX3k1NVAm48Q7iFbDdnWTBK7v3YeXCF0XfUzYo8FD/7AKfmmSTcCGrwDO5cGzjkV8HZa9m9D"
        "ZChRYtVu5nn2HiH8cvBpCQThQSh9/jm8aOF8MOg="
    )
    async with running(load_cfg("wecom"), now=datetime.fromtimestamp(1571732273, UTC)) as e:
        query = {"msg_signature": "b01d1635dd523d36cf550f6191a69f7508802c11", "timestamp": "1571732273",
                 "nonce": "1597212914"}
        body = (f"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName><AgentID><![CDATA[3010040]]></AgentID>"
                f"<Encrypt><![CDATA[{w_e}]]></Encrypt></xml>").encode()
        answer = await e.send("POST", "wecom-approvals", query, {"Content-Type": "text/xml"}, body)
        assert_success_reply("wecom", "wecom-approvals", e.cfg, answer)
        [stored] = await e.events()
        assert stored.event.event_id == "ww1436e0e65a779aee:202506110001:2:1571732272"
        assert stored.event.status is Status.APPROVED
        # W-E names no approver: the source's recipients_path finds none, so the event is kept as unresolved
        assert stored.event.recipients == () and "recipients_path" in (stored.event.unresolved or "")


async def test_a_duplicate_delivery_is_stored_once_and_still_answered_with_success(env: tuple[str, Env]) -> None:
    platform, e = env
    name = SOURCES[platform]
    plaintext = pending_event(platform, NOW)
    first = await e.deliver(name, plaintext)
    e.clock.advance(15)  # a retry: re-encrypted, re-signed, another nonce, same event
    second = await e.deliver(name, plaintext)
    for answer in (first, second):
        assert_success_reply(platform, name, e.cfg, answer)
    assert first.body != second.body or platform != "dingtalk"  # a fresh encrypted reply each time
    [stored] = await e.events()
    assert stored.duplicates == 1


async def test_task_and_reminder_events_are_recorded_and_change_nothing() -> None:
    async with running(load_cfg("wecom")) as e:
        answer = await e.deliver("wecom-approvals", wecom_event(1, 5, at=NOW))  # 催办: a reminder
        assert_success_reply("wecom", "wecom-approvals", e.cfg, answer)
        [stored] = await e.events()
        assert stored.event.status is None and "reminder" in (stored.event.note or "")


# ------------------------------------------------------------------ failures


def _flip_char(text: str, index: int) -> str:
    ch = text[index]
    return text[:index] + ("A" if ch != "A" else "B") + text[index + 1:]


def tamper_ciphertext(request: tuple[str, dict[str, str], dict[str, str], bytes]):
    """Change one character of the ciphertext; keep the platform's signature as it was."""
    method, query, headers, body = request
    if method == "GET":
        return method, query | {"echostr": _flip_char(query["echostr"], 10)}, headers, body
    text = body.decode()
    start = text.index("encrypt\":\"") + 10 if text.startswith("{") else text.index("<Encrypt><![CDATA[") + 18
    return method, query, headers, _flip_char(text, start + 60).encode()  # inside the 2nd AES block


async def test_a_tampered_body_is_401(env: tuple[str, Env]) -> None:
    platform, e = env
    name = SOURCES[platform]
    answer = await e.deliver(name, pending_event(platform, NOW), tamper=tamper_ciphertext)
    assert_error(answer, 401, "does not match")  # verified before decrypting: never "bad padding" here
    assert await e.events() == []


async def test_feishu_body_reserialised_is_401() -> None:
    """Feishu signs the raw body: the same ciphertext with a space added no longer matches."""
    def reserialise(request):
        method, query, headers, body = request
        return method, query, headers, body.replace(b'{"encrypt":', b'{"encrypt": ')

    async with running(load_cfg("feishu")) as e:
        answer = await e.deliver("feishu-approvals", pending_event("feishu", NOW), tamper=reserialise)
        assert_error(answer, 401, "X-Lark-Signature does not match")
        assert await e.events() == []


async def test_feishu_ciphertext_swapped_for_another_message_is_401() -> None:
    async with running(load_cfg("feishu")) as e:
        source = e.source("feishu-approvals")
        _, _, _, other = native.encode_request(source.native, approved_event("feishu", NOW), NOW)

        def swap(request):
            method, query, headers, _ = request
            return method, query, headers, other

        answer = await e.deliver(source.name, pending_event("feishu", NOW), tamper=swap)
        assert_error(answer, 401, "X-Lark-Signature")
        assert await e.events() == []


async def test_feishu_plain_event_with_the_wrong_token_is_401() -> None:
    async with running(load_cfg("feishu")) as e:
        answer = await e.deliver("feishu-plain", feishu_event("PENDING", at=NOW, token="forged"))
        assert_error(answer, 401, "verification_token")
        assert await e.events() == []


@pytest.mark.parametrize("platform", ["dingtalk", "wecom"])
async def test_a_message_for_another_receive_id_is_400_naming_it(platform: str) -> None:
    async with running(load_cfg(platform)) as e:
        source = e.source(SOURCES[platform])
        other = dataclasses.replace(source.native, keys=dataclasses.replace(source.native.keys,
                                                                            receive_id="ding-someone-else"))
        request = native.encode_request(other, pending_event(platform, NOW), NOW)
        answer = await e.send(request[0], source.name, *request[1:])
        assert_error(answer, 400, "wrong receive id", "ding-someone-else")
        assert await e.events() == []


def _wx_encrypt_raw(aes_key: str, buf: bytes) -> str:
    key = nc.wx_key(aes_key)
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(buf) + enc.finalize()).decode()


def _feishu_encrypt_raw(encrypt_key: str, buf: bytes) -> str:
    key, iv = nc.feishu_key(encrypt_key), bytes(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(buf) + enc.finalize()).decode()


def signed_request(platform: str, source: SourceConfig, encrypt: str, at: datetime):
    """A correctly signed request carrying `encrypt`, whatever it decrypts to."""
    keys = source.native.keys
    if platform == "feishu":
        body = dumps({"encrypt": encrypt})
        ts, nonce = str(int(at.timestamp())), "n0nce"
        return "POST", {}, {"Content-Type": "application/json", "X-Lark-Request-Timestamp": ts,
                            "X-Lark-Request-Nonce": nonce,
                            "X-Lark-Signature": nc.feishu_signature(ts, nonce, keys.encrypt_key.reveal(), body)}, body
    ts = str(ms(at) if platform == "dingtalk" else int(at.timestamp()))
    query = {"msg_signature": nc.wx_signature(keys.token.reveal(), ts, "n0nce", encrypt), "timestamp": ts,
             "nonce": "n0nce"}
    if platform == "dingtalk":
        return "POST", query, {"Content-Type": "application/json"}, dumps({"encrypt": encrypt})
    body = f"<xml><ToUserName><![CDATA[x]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
    return "POST", query, {"Content-Type": "text/xml"}, body


async def test_bad_padding_is_400_naming_it(env: tuple[str, Env]) -> None:
    platform, e = env
    source = e.source(SOURCES[platform])
    if platform == "feishu":
        encrypt = _feishu_encrypt_raw("test key", b'{"uuid":"x"}' + bytes(4))  # last byte 0: no PKCS#7 padding
    else:
        aes_key = ENV["DINGTALK_CALLBACK_AES_KEY" if platform == "dingtalk" else "WECOM_ENCODING_AES_KEY"]
        msg = b'{"EventType":"check_url"}'
        buf = bytes(16) + len(msg).to_bytes(4, "big") + msg + source.native.keys.receive_id.encode()
        buf += bytes([40]) * (32 - len(buf) % 32)  # 40 > 32: not a pad value the scheme allows
        encrypt = _wx_encrypt_raw(aes_key, buf)
    request = signed_request(platform, source, encrypt, NOW)
    answer = await e.send(request[0], source.name, *request[1:])
    assert_error(answer, 400, "bad padding")
    assert await e.events() == []


async def test_truncated_ciphertext_is_400_naming_it(env: tuple[str, Env]) -> None:
    platform, e = env
    source = e.source(SOURCES[platform])
    method, query, headers, body = native.encode_request(source.native, pending_event(platform, NOW), NOW)
    whole = json.loads(body)["encrypt"] if body.startswith(b"{") else body.decode().split("CDATA[")[-1].split("]")[0]
    cut = base64.b64encode(base64.b64decode(whole)[:-5]).decode()  # lost its tail: not whole AES blocks
    request = signed_request(platform, source, cut, NOW)
    answer = await e.send(request[0], source.name, *request[1:])
    assert_error(answer, 400, "truncated ciphertext")
    assert await e.events() == []


async def test_a_stale_timestamp_is_401(env: tuple[str, Env]) -> None:
    platform, e = env
    name = SOURCES[platform]
    tolerance = e.source(name).timestamp_tolerance_s
    old = NOW - timedelta(seconds=tolerance + 60)
    answer = await e.deliver(name, pending_event(platform, old), at=old)
    assert_error(answer, 401, "stale or replayed")
    assert await e.events() == []
    # just inside the tolerance is fine: the sender's clock may be a little off either way
    recent = NOW + timedelta(seconds=tolerance - 60)
    assert (await e.deliver(name, pending_event(platform, recent), at=recent)).status == 200


async def test_failures_are_json_bodies_and_fast(env: tuple[str, Env]) -> None:
    platform, e = env
    name = SOURCES[platform]
    method = "GET" if platform == "wecom" else "POST"
    answer = await e.send(method, name, {}, {"Content-Type": "application/json"}, b"{}")
    assert answer.status in (400, 401) and answer.content_type == "application/json"
    assert answer.json()["message"] and answer.elapsed_s < DEADLINE_S


# ------------------------------------------------------------------ unresolved recipients


async def test_unresolved_recipients_are_stored_then_recorded_as_unresolved_by_the_decider() -> None:
    async with running(load_cfg("wecom")) as e:
        plaintext = wecom_event(1, 1, at=NOW, approvers=("SunBa",))  # SunBa is not in id_map
        answer = await e.deliver("wecom-approvals", plaintext)
        assert_success_reply("wecom", "wecom-approvals", e.cfg, answer)  # stored: WeCom must not retry it
        [stored] = await e.events()
        assert stored.event.recipients == () and stored.event.extra.get("unmapped_ids") == "SunBa"
        assert "id_map has no DingTalk userid for wecom user SunBa" in (stored.event.unresolved or "")

        worker = e.client.app[bridge_app.WORKER]
        await worker.run(burst=True)
        processed = await e.store.get_event("wecom-approvals", stored.event.event_id)
        assert processed is not None and processed.outcome == store.Outcome.UNRESOLVED
        assert "id_map has no DingTalk userid for wecom user SunBa" in (processed.reason or "")
        assert e.fake.calls == [] and await e.store.list_jobs() == []


async def test_dingtalk_event_without_an_applicant_is_unresolved_with_the_reason() -> None:
    async with running(load_cfg("dingtalk")) as e:
        answer = await e.deliver("dingtalk-approvals", dingtalk_event("start", at=NOW, staff=None))
        assert_success_reply("dingtalk", "dingtalk-approvals", e.cfg, answer)
        await e.client.app[bridge_app.WORKER].run(burst=True)
        [processed] = await e.events()
        assert processed.outcome == store.Outcome.UNRESOLVED
        assert "names no applicant" in (processed.reason or "")
        assert e.fake.calls == []


async def test_no_secret_reaches_the_logs_on_success_or_failure() -> None:
    from structlog.testing import capture_logs

    async with running(load_cfg("wecom")) as e:
        with capture_logs() as logs:
            await e.deliver("wecom-approvals", pending_event("wecom", NOW))
            await e.deliver("wecom-approvals", pending_event("wecom", NOW), tamper=tamper_ciphertext)
            await e.deliver("wecom-approvals", b"4868163428351249637")
    events = [entry["event"] for entry in logs]
    assert {"webhook.accepted", "webhook.rejected", "webhook.handshake"} <= set(events)
    text = repr(logs)
    for secret in ENV.values():
        assert secret not in text
