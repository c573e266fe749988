"""The logs of a whole scripted life, as JSON lines: no secret anywhere, dotted event names, context on every line.

The life: accepted, duplicate and rejected webhooks (one signed with a wrong secret, one carrying the admin
token by mistake), the worker sending and updating cards, a refused access token and its refresh, a job that
dies, and admin calls with the bearer token (plus one with a wrong token). The scrubber in bridge.logs is a
safety net; here it knows no secret at all, so the test proves bridge never hands one to a logger.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import structlog

from bridge import logs
from bridge.config import SourceConfig
from bridge.secret import Secret
from bridge.simulator.model import FaultPlan
from bridge.sources import signatures
from tests.integration.test_admin import ADMIN_TOKEN, AUTH, Harness, body, make_harness

pytestmark = pytest.mark.integration

DOTTED = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON logs into a StringIO; structlog, stdlib logging and the scrubber are put back afterwards."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    quieted = [logging.getLogger(name) for name in ("aiohttp.access", "statemachine")]
    saved_quiet = [lg.level for lg in quieted]
    saved_secrets = logs.scrubber.values
    logs.scrubber.values = ()
    stream = io.StringIO()
    logs.configure(fmt="json", level="debug", stream=stream)
    try:
        yield stream
    finally:
        structlog.configure(**saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for lg, level in zip(quieted, saved_quiet, strict=True):
            lg.setLevel(level)
        logs.scrubber.values = saved_secrets


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with make_harness() as h:
        yield h


async def whole_life(h: Harness) -> list[str]:
    """Run the scripted life; returns every access token DingTalk (the simulator) handed out."""
    issued: list[str] = []
    original = h.sim.gettoken

    def gettoken(appkey: str | None, appsecret: str | None) -> tuple[str, int]:
        token, ttl = original(appkey, appsecret)
        issued.append(token)
        return token, ttl

    h.sim.gettoken = gettoken  # type: ignore[method-assign]
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("token",), calls=("asyncsend_v2",), limit=1))
    assert await h.post(body("PO-L1", "pending", 0)) == 202
    assert await h.post(body("PO-L2", "pending", 1, recipients=("user03",))) == 202
    await h.settle()
    h.sim.clear_faults()
    assert await h.post(body("PO-L1", "approved", 5, card=False)) == 202
    assert await h.post(body("PO-L1", "approved", 5, card=False)) == 200
    await h.settle()
    assert await h.post(body("PO-L1", "pending", 2, card=False)) == 202  # stale
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("errcode_-1",), calls=("status_bar_update",)))
    assert await h.post(body("PO-L2", "rejected", 6, card=False)) == 202
    await h.settle()
    h.sim.clear_faults()
    # rejected webhooks: wrong secret, the admin token in a header, a bad body, an unknown source
    raw = body("PO-L3", "pending", 0)
    wrong = SourceConfig(name="erp", signature="standard-webhooks",
                         secrets=(Secret("whsec_d3Jvbmcta2V5LTAxMjM0NTY3ODk="),))
    headers = {"Content-Type": "application/json", **signatures.sign_headers(wrong, raw, h.clock.now())}
    assert await h.post(raw, headers=headers) == 401
    assert await h.post(raw, headers={"Content-Type": "application/json", **AUTH}) == 401
    assert await h.post(b'{"approval_id": "x", "status": "pending"', headers=None) == 400
    src = h.cfg.source("oa")
    assert src is not None
    assert await h.post(body("PO-L4", "pending", 0), source="oa",
                        headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"}) == 401
    # the operator looks around and fixes things
    assert (await h.get("/approvals/erp/PO-L1"))[0] == 200
    assert (await h.get("/approvals?status=approved"))[0] == 200
    status, dead = await h.get("/jobs?state=dead")
    assert status == 200 and dead["count"] == 1
    assert (await h.call(f"/jobs/{dead['jobs'][0]['id']}/retry"))[0] == 200
    assert (await h.call("/approvals/erp/PO-L1/resync"))[0] == 202
    assert (await h.call("/approvals/erp/PO-L1/recall"))[0] == 202
    assert (await h.get("/jobs", headers={"Authorization": "Bearer not-the-token-1234"}))[0] == 401
    await h.settle()
    assert (await h.get("/readyz", headers={}))[0] == 503  # the worker is not running in this harness
    assert (await h.http.get("/metrics")).status == 200
    assert len(issued) >= 2
    return issued


def parse(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert len(lines) > 30
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # pragma: no cover - the assertion below reports it
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return out


async def test_no_secret_or_token_appears_in_the_logs_of_a_whole_life(harness: Harness,
                                                                       log_stream: io.StringIO) -> None:
    h = harness
    issued = await whole_life(h)
    text = log_stream.getvalue()
    secrets = [h.cfg.dingtalk.app_secret.reveal(), ADMIN_TOKEN, "not-the-token-1234",
               *(s.reveal() for src in h.cfg.sources for s in src.secrets), *issued]
    for secret in secrets:
        assert secret not in text, secret
        assert json.dumps(secret)[1:-1] not in text
    # the base64 key material of the standard-webhooks secret must not leak either
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in text
    assert "appsecret" not in text.lower()


async def test_every_line_is_json_with_a_dotted_event_name(harness: Harness, log_stream: io.StringIO) -> None:
    await whole_life(harness)
    lines = parse(log_stream)
    for line in lines:
        assert DOTTED.match(line["event"]), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical")
        assert line["timestamp"].endswith("Z")
    names = {line["event"] for line in lines}
    for expected in ("webhook.accepted", "webhook.duplicate", "webhook.rejected", "event.applied", "event.stale",
                     "dingtalk.token_refreshed", "dingtalk.sent", "dingtalk.call_failed", "dingtalk.status_bar_updated",
                     "job.retry_scheduled", "job.dead", "admin.unauthorized", "admin.job_retried",
                     "operator.resync_requested", "operator.recall_requested", "dingtalk.recalled"):
        assert expected in names, (expected, sorted(names))


async def test_lines_of_a_request_or_job_carry_their_context(harness: Harness, log_stream: io.StringIO) -> None:
    await whole_life(harness)
    lines = parse(log_stream)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    for name in ("webhook.accepted", "webhook.duplicate", "event.applied", "event.stale"):
        for line in by_event[name]:
            assert line["source"] == "erp" and line["approval_id"].startswith("PO-L") and line["event_id"], line
    for line in by_event["webhook.rejected"]:
        assert line["source"] in ("erp", "oa"), line
    # every line logged while a job runs names the job, its approval and event; DingTalk lines the task
    job_lines = [line for line in lines if "job_id" in line]
    assert len(job_lines) >= 10
    for line in job_lines:
        assert line["source"] == "erp" and line["approval_id"].startswith("PO-L") and line["job_kind"], line
        if "event_id" in line:  # a resync's jobs answer no event
            assert line["event_id"].startswith((line["approval_id"], "operator-recall-")), line
        else:
            assert line["event"] == "dingtalk.status_bar_updated", line
    for name in ("dingtalk.sent", "dingtalk.status_bar_updated", "dingtalk.recalled", "job.dead"):
        for line in by_event[name]:
            assert isinstance(line["task_id"], int) and "job_id" in line, line
    for name in ("dingtalk.sent", "dingtalk.call_failed", "job.retry_scheduled", "job.dead"):
        assert all("job_id" in line for line in by_event[name]), name
    for line in by_event["admin.job_retried"]:
        assert isinstance(line["job_id"], int)
    for name in ("operator.recall_requested", "operator.resync_requested"):
        [line] = by_event[name]
        assert (line["source"], line["approval_id"], line["via"]) == ("erp", "PO-L1", "admin API")


def test_the_scrubber_masks_registered_secrets_and_secret_looking_keys(log_stream: io.StringIO) -> None:
    logs.register_secrets(["s3cr3t-value-42"])
    log = structlog.get_logger("bridge.test")
    log.warning("test.leak", url="https://x/gettoken?appsecret=s3cr3t-value-42", access_token="tok-123456",
                task_id=42, event_id="e-1")
    [line] = parse_all(log_stream)
    assert line["url"] == "https://x/gettoken?appsecret=****" and line["access_token"] == "****"
    assert line["task_id"] == 42 and line["event_id"] == "e-1"


def parse_all(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_native_keys_and_the_stream_client_secret_are_scrubbed(log_stream: io.StringIO) -> None:
    """What `bridge serve` registers (app.secret_values) covers every native credential: a log line that
    carries one by mistake shows **** instead."""
    from bridge import config
    from bridge.app import secret_values

    env = {"APP": "app-secret-0001", "DT_TOKEN": "dt-callback-token-0002", "FS_TOKEN": "fs-verify-token-0003",
           "FS_KEY": "fs-encrypt-key-0004", "STREAM": "stream-client-secret-0005",
           "AES": "abcdefghij" * 4 + "xyz"}
    cfg = config.from_dict({
        "dingtalk": {"app_key": "k", "app_secret": "env:APP", "agent_id": 1},
        "sources": [
            {"name": "dt", "format": "dingtalk", "token": "env:DT_TOKEN", "aes_key": "env:AES",
             "app_key": "dingsnotzck6pm5veliw", "notify": "applicant"},
            {"name": "fs", "format": "feishu", "verification_token": "env:FS_TOKEN", "encrypt_key": "env:FS_KEY",
             "notify": "fixed", "recipients": ["manager01"], "url_template": "https://x/{instance_code}"},
            {"name": "st", "format": "dingtalk", "transport": "stream", "client_id": "dingapp",
             "client_secret": "env:STREAM", "notify": "applicant"},
        ]}, env=env)
    registered = secret_values(cfg)
    assert set(env.values()) <= set(registered)
    logs.register_secrets(registered)
    log = structlog.get_logger("bridge.test")
    for value in env.values():
        log.warning("test.leak", detail=f"upstream said: {value}!", url=f"wss://gw/connect?x={value}")
    text = log_stream.getvalue()
    assert len(parse_all(log_stream)) == len(env)
    for value in env.values():
        assert value not in text, value


def test_a_module_logger_follows_every_new_configuration(log_stream: io.StringIO) -> None:
    """bridge's module loggers keep their bound logger between lines, but not across a new configuration:
    a line goes where and at the level the configuration of the moment says, and captured logs see it."""
    log = logs.get_logger("bridge.test")
    log.info("first.line")
    second = io.StringIO()
    logs.configure(fmt="json", level="warning", stream=second)
    log.info("dropped.line")
    log.warning("second.line", approval_id="PO-1")
    with structlog.testing.capture_logs() as captured:
        log.warning("captured.line")
    log.warning("third.line")
    assert [json.loads(line)["event"] for line in log_stream.getvalue().splitlines()] == ["first.line"]
    lines = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [(d["event"], d["logger"], d["level"]) for d in lines] == [
        ("second.line", "bridge.test", "warning"), ("third.line", "bridge.test", "warning")]
    assert [c["event"] for c in captured] == ["captured.line"]


def test_a_bridge_logger_writes_what_structlog_writes(log_stream: io.StringIO) -> None:
    """`bridge.logs.Logger` runs the configured chain itself while it is the one `configure` installed: the
    line it writes is the line structlog's own bound logger writes for the same call, field for field and in
    the same order (the timestamps aside), context, scrubbing and non-ASCII text included."""
    assert logs._chain is not None and logs._chain.installed()  # the path under test is the one taken
    logs.register_secrets(["s3cr3t-value-42"])
    ours, theirs = logs.get_logger("bridge.same"), structlog.get_logger("bridge.same")
    token = logs.bind_request(source="erp", approval_id="PO-1")
    with structlog.contextvars.bound_contextvars(job_id=7):
        for log in (ours, theirs):
            log.info("webhook.accepted", status="pending", title="采购申请", app_secret="x1",
                     detail="said s3cr3t-value-42", amount=1.5, recipients=["u1"], obj=object)
            log.debug("test.debug", n=1)
            log.error("test.error", problems=None)
    logs.reset_request(token)
    lines = parse_all(log_stream)
    assert len(lines) == 6
    for line in lines:
        line.pop("timestamp")
    assert [list(line.items()) for line in lines[:3]] == [list(line.items()) for line in lines[3:]]
    first = lines[0]
    assert (first["source"], first["approval_id"], first["job_id"]) == ("erp", "PO-1", 7)
    assert first["app_secret"] == "****" and first["detail"] == "said ****" and first["title"] == "采购申请"


def test_timestamps_are_written_as_structlog_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`add_timestamp` replaces `TimeStamper(fmt="iso", utc=True)` on the hot path: same text for the same
    instant, with and without microseconds, across a second, a day and a leap day."""
    import datetime as dt
    import time

    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    for text in ("2026-12-02T12:56:31.712405", "2026-12-02T12:56:31", "2028-02-29T23:59:59.999999",
                 "2029-01-01T00:00:00.000001", "1999-12-31T23:59:59"):
        instant = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        unix_us = int(instant.timestamp()) * 1_000_000 + instant.microsecond

        class Frozen(dt.datetime):
            at = instant

            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> Frozen:
                return cast(Frozen, cls.at)

        monkeypatch.setattr(dt, "datetime", Frozen)
        expected = stamper(None, "info", {})["timestamp"]
        monkeypatch.undo()
        assert logs.iso_utc(unix_us) == expected, text
        monkeypatch.setattr(time, "time_ns", lambda ns=unix_us * 1000: ns)
        assert logs.add_timestamp(None, "info", {})["timestamp"] == expected
        monkeypatch.undo()


def test_what_a_request_binds_is_gone_when_it_ends(log_stream: io.StringIO) -> None:
    log = logs.get_logger("bridge.test")
    outer = logs.bind_request(source="erp")
    logs.bind_request(approval_id="PO-1", event_id="e-1")
    log.info("inside.line")
    logs.reset_request(outer)
    log.info("after.line")
    inside, after = parse_all(log_stream)
    assert (inside["source"], inside["approval_id"], inside["event_id"]) == ("erp", "PO-1", "e-1")
    assert not {"source", "approval_id", "event_id"} & set(after)
