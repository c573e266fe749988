"""The webhook receiver through the real aiohttp app: every answer code, duplicates, durability."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from bridge import app as bridge_app
from bridge.clock import FakeClock
from bridge.config import Config, DingTalkConfig, ServerConfig, SourceConfig
from bridge.dingtalk.fake import FakeDingTalk
from bridge.secret import Secret
from bridge.sources import signatures
from bridge.store.memory import MemoryStore
from bridge.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


def config(**server: object) -> Config:
    return Config(
        server=ServerConfig(max_body_bytes=4096, **server),  # type: ignore[arg-type]
        dingtalk=DingTalkConfig(app_key="k", agent_id=1),
        sources=(
            SourceConfig(name="erp", signature="standard-webhooks", secrets=(Secret(SECRET),)),
            SourceConfig(name="oa", signature="hmac-sha256", secrets=(Secret("old-secret"), Secret("new-secret"))),
        ),
    )


def body(**overrides: object) -> bytes:
    data: dict[str, object] = {
        "event_id": "erp-000123", "approval_id": "PO-2026-0042", "status": "pending",
        "occurred_at": "2026-11-29T10:00:00+08:00", "title": "采购申请 PO-2026-0042",
        "recipients": ["manager7675", "user02"], "applicant": "张三", "url": "https://erp.example.com/po/42",
        "form": [{"key": "金额", "value": "12,000 元"}], "amount": {"num": "12000", "unit": "元"},
    }
    data.update(overrides)
    return json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False).encode()


def signed(source: SourceConfig, raw: bytes, at: datetime = NOW, msg_id: str | None = None) -> dict[str, str]:
    return {"Content-Type": "application/json", **signatures.sign_headers(source, raw, at, msg_id=msg_id)}


@pytest.fixture
async def env():
    cfg = config()
    st = MemoryStore()
    clock = FakeClock(NOW)
    application = bridge_app.create_app(cfg, store=st, clock=clock, client=FakeDingTalk(), run_worker=False)
    async with TestClient(TestServer(application)) as client:
        yield client, st, cfg


async def post(client: TestClient, cfg: Config, raw: bytes, source: str = "erp", **kw: object):
    headers = signed(cfg.source(source), raw, **kw)  # type: ignore[arg-type]
    resp = await client.post(f"/webhooks/{source}", data=raw, headers=headers)
    return resp.status, await resp.json()


async def test_accepted_then_duplicate(env) -> None:
    client, st, cfg = env
    status, answer = await post(client, cfg, body())
    assert status == 202 and answer["status"] == "accepted" and answer["event_id"] == "erp-000123"
    stored = await st.get_event("erp", "erp-000123")
    assert stored is not None and stored.event.recipients == ("manager7675", "user02")
    status, answer = await post(client, cfg, body())
    assert status == 200 and answer["status"] == "duplicate"
    assert (await st.get_event("erp", "erp-000123")).duplicates == 1


async def test_webhook_id_is_the_event_id_when_the_body_has_none(env) -> None:
    client, st, cfg = env
    status, answer = await post(client, cfg, body(event_id=None), msg_id="msg_abc")
    assert status == 202 and answer["event_id"] == "msg_abc"


@pytest.mark.parametrize("header", ["webhook-id", "svix-id", "Svix-Id"])
async def test_the_delivery_id_header_is_the_event_id_on_an_hmac_source(env, header: str) -> None:
    """Outside standard-webhooks the delivery id is taken as sent: webhook-id, or Svix's svix-id alias,
    so a redelivery with the same id is a duplicate."""
    client, st, cfg = env
    raw = body(event_id=None)
    headers = {"Content-Type": "application/json", header: "msg_2Kj",
               "X-Hub-Signature-256": signatures.sign_hmac_sha256("new-secret", raw)}
    first = await client.post("/webhooks/oa", data=raw, headers=headers)
    assert first.status == 202 and (await first.json())["event_id"] == "msg_2Kj"
    again = await client.post("/webhooks/oa", data=raw, headers=headers)
    assert again.status == 200 and (await again.json())["status"] == "duplicate"


async def test_webhook_id_wins_over_svix_id_and_neither_means_the_event_id_is_required(env) -> None:
    client, st, cfg = env
    raw = body(event_id=None)
    sig = {"Content-Type": "application/json", "X-Hub-Signature-256": signatures.sign_hmac_sha256("new-secret", raw)}
    both = await client.post("/webhooks/oa", data=raw, headers={**sig, "webhook-id": "w-1", "svix-id": "s-1"})
    assert both.status == 202 and (await both.json())["event_id"] == "w-1"
    neither = await client.post("/webhooks/oa", data=raw, headers={**sig, "webhook-id": " "})
    answer = await neither.json()
    assert neither.status == 400 and "webhook-id or svix-id" in json.dumps(answer)


async def test_hmac_source_with_rotated_secret(env) -> None:
    client, st, cfg = env
    raw = body()
    headers = {"Content-Type": "application/json",
               "X-Hub-Signature-256": signatures.sign_hmac_sha256("old-secret", raw)}
    resp = await client.post("/webhooks/oa", data=raw, headers=headers)
    assert resp.status == 202


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"approval_id": ', "JSON"),
        (b"[1, 2]", "object"),
    ],
)
async def test_malformed_json_is_400(env, raw: bytes, needle: str) -> None:
    client, st, cfg = env
    status, answer = await post(client, cfg, raw)
    assert status == 400 and needle in answer["message"]
    assert st.inbox == {} or len(st.inbox) == 0


async def test_invalid_event_names_every_bad_field(env) -> None:
    client, st, cfg = env
    status, answer = await post(client, cfg, body(status="approvedd", occurred_at="yesterday", recipients=[]))
    assert status == 400 and answer["error"] == "invalid_event"
    fields = {p["field"] for p in answer["problems"]}
    assert {"status", "occurred_at", "recipients"} <= fields


async def test_first_event_without_card_data_is_400_but_later_events_need_none(env) -> None:
    client, st, cfg = env
    status, answer = await post(client, cfg, body(title=None, recipients=None, url=None))
    assert status == 400
    assert {p["field"] for p in answer["problems"]} == {"title", "recipients", "url"}
    assert (await post(client, cfg, body()))[0] == 202
    later = body(event_id="erp-000124", status="approved", title=None, recipients=None, url=None)
    assert (await post(client, cfg, later))[0] == 202


async def test_signature_failures_are_401(env) -> None:
    client, st, cfg = env
    raw = body()
    headers = signed(cfg.source("erp"), raw)
    resp = await client.post("/webhooks/erp", data=raw + b" ", headers=headers)
    assert resp.status == 401 and (await resp.json())["error"] == "signature_invalid"
    resp = await client.post("/webhooks/erp", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 401
    status, answer = await post(client, cfg, raw, at=NOW - timedelta(minutes=10))
    assert status == 401 and "tolerance" in answer["message"]


async def test_unknown_source_too_large_and_not_json(env) -> None:
    client, st, cfg = env
    resp = await client.post("/webhooks/nope", data=body(), headers={"Content-Type": "application/json"})
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_source"
    resp = await client.post("/webhooks/..%2F..%2Fetc", data=body(), headers={"Content-Type": "application/json"})
    assert resp.status == 404 and "error" in await resp.json()
    big = body(content="x" * 5000)
    status, answer = await post(client, cfg, big)
    assert status == 413 and answer["error"] == "payload_too_large"
    raw = body()
    headers = signed(cfg.source("erp"), raw) | {"Content-Type": "text/plain"}
    resp = await client.post("/webhooks/erp", data=raw, headers=headers)
    assert resp.status == 415 and (await resp.json())["error"] == "unsupported_media_type"
    assert len(await st.events_for("erp", "PO-2026-0042")) == 0


async def test_other_methods_and_paths_answer_json(env) -> None:
    client, _, _ = env
    resp = await client.get("/webhooks/erp")
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    assert resp.headers["Allow"] == "POST"
    for method, path in (("GET", "/jobs/retry"), ("DELETE", "/approvals/erp/PO-1/recall"), ("POST", "/healthz")):
        resp = await client.request(method, path)
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed", path
        assert method not in resp.headers["Allow"] and resp.headers["Allow"], path
    resp = await client.get("/nowhere")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_storage_unavailable_is_503_and_never_a_false_202(env) -> None:
    client, st, cfg = env
    st.fail_writes = True
    status, answer = await post(client, cfg, body())
    assert status == 503 and answer["error"] == "storage_unavailable"
    st.fail_writes = False
    assert (await post(client, cfg, body()))[0] == 202


async def test_fifty_identical_deliveries_at_once_store_one_event(env) -> None:
    client, st, cfg = env
    results = await asyncio.gather(*(post(client, cfg, body()) for _ in range(50)))
    codes = sorted(code for code, _ in results)
    assert codes.count(202) == 1 and codes.count(200) == 49
    assert len(await st.events_for("erp", "PO-2026-0042")) == 1


async def test_rejections_are_logged_once_without_secrets(env) -> None:
    client, st, cfg = env
    raw = body()
    with capture_logs() as logs:
        await client.post("/webhooks/erp", data=raw + b"x", headers=signed(cfg.source("erp"), raw))
    rejected = [e for e in logs if e["event"] == "webhook.rejected"]
    assert len(rejected) == 1 and rejected[0]["status"] == 401
    assert SECRET not in json.dumps(logs, default=str) and "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in str(logs)


async def test_accepted_event_survives_reopening_sqlite(tmp_path: Path) -> None:
    cfg = config()
    path = tmp_path / "bridge.db"
    application = bridge_app.create_app(cfg, store=SQLiteStore(path), clock=FakeClock(NOW), client=FakeDingTalk(),
                                        run_worker=False)
    async with TestClient(TestServer(application)) as client:
        assert (await post(client, cfg, body()))[0] == 202
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        stored = await reopened.get_event("erp", "erp-000123")
        assert stored is not None and stored.event.title == "采购申请 PO-2026-0042"
    finally:
        await reopened.close()


# --- hostile values (bridge.event_checks, parse_json) ---------------------------------------------------------

@pytest.mark.parametrize(("overrides", "field", "needle"), [
    ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at", "not a valid RFC 3339 time"),
    ({"occurred_at": "9999-12-31T23:59:59-14:00"}, "occurred_at", "not a valid RFC 3339 time"),
    ({"occurred_at": "9999-12-31T23:59:59+00:00"}, "occurred_at", "ahead of bridge's clock"),
    ({"occurred_at": "2026-12-01T02:00:01+00:00"}, "occurred_at", "ahead of bridge's clock"),  # 2 days ahead
    ({"occurred_at": "2019-01-01T00:00:00+00:00"}, "occurred_at", "days in the past"),
    ({"title": "采购\x00申请"}, "title", "U+0000"),
    ({"title": "采购\r\n申请"}, "title", "U+000D"),
    ({"title": "采购\u202e申请"}, "title", "U+202E"),
    ({"recipients": ["user\u200b01"]}, "recipients[0]", ""),
    ({"url": "javascript:alert(1)"}, "url", "http(s)://"),
])
async def test_hostile_canonical_values_are_400_naming_the_field(env, overrides: dict[str, object], field: str,
                                                                 needle: str) -> None:
    client, st, cfg = env
    status, answer = await post(client, cfg, body(**overrides))
    assert status == 400, answer
    problems = {p["field"]: p["message"] for p in answer["problems"]}
    assert field in problems and needle in problems[field], problems
    assert len(await st.events_for("erp", "PO-2026-0042")) == 0


async def test_a_duplicate_json_key_is_refused(env) -> None:
    client, st, cfg = env
    raw = body().replace(b'"status": "pending"', b'"status": "pending", "status": "approved"')
    assert raw.count(b'"status"') == 2
    status, answer = await post(client, cfg, raw)
    assert status == 400 and answer["error"] == "malformed_payload" and "appears twice" in answer["message"]


@pytest.mark.parametrize("job_id", ["164975517790059855872", "9223372036854775808", "0", "-1", "１２"])
async def test_a_job_id_out_of_range_is_400_not_500(job_id: str) -> None:
    cfg = config(admin_token=Secret("adm-web-test-token-0123"))
    application = bridge_app.create_app(cfg, store=MemoryStore(), clock=FakeClock(NOW), client=FakeDingTalk(),
                                        run_worker=False)
    async with TestClient(TestServer(application)) as client:
        resp = await client.post(f"/jobs/{job_id}/retry", headers={"Authorization": "Bearer adm-web-test-token-0123"})
        assert resp.status == 400 and "between 1 and" in (await resp.json())["message"]
        resp = await client.post("/jobs/9223372036854775807/retry",
                                 headers={"Authorization": "Bearer adm-web-test-token-0123"})
        assert resp.status == 404


# --- rejections in the journal (bridge.rejections) ------------------------------------------------------------

async def test_rejections_reach_the_journal_aggregated_per_source_and_reason() -> None:
    cfg, st, clock = config(), MemoryStore(), FakeClock(NOW)
    application = bridge_app.create_app(cfg, store=st, clock=clock, client=FakeDingTalk(), run_worker=False)
    from bridge.appkeys import REJECTIONS

    async with TestClient(TestServer(application)) as client:
        raw = body()
        for _ in range(37):
            await client.post("/webhooks/erp", data=raw + b" ", headers=signed(cfg.source("erp"), raw))
        for name in ("nope", "other-unknown-" + "x" * 40):
            await client.post(f"/webhooks/{name}", data=raw)
        await client.post("/webhooks/erp", data=b"{bad", headers=signed(cfg.source("erp"), b"{bad"))
        rejections = application[REJECTIONS]
        assert not rejections.due() and await st.journal_tail(50) == []  # nothing written per request
        clock.advance(61)
        assert rejections.due()
        assert await rejections.flush() == 3
        lines = {j.message for j in await st.journal_tail(50)}
        assert lines == {"source erp: 37 signature failures in the last minute",
                         "source _unknown: 2 requests for an unknown source in the last minute",
                         "source erp: 1 malformed bodies in the last minute"}
        text = json.dumps([j.data for j in await st.journal_tail(50)])
        assert SECRET not in text and "nope" not in text and "采购" not in text
        assert await rejections.flush() == 0  # counted afresh
