"""/metrics after a scripted run, parsed with prometheus-client's own parser and checked for exact counts.

The run: accepted, duplicate and rejected webhooks, applied / stale / unchanged events, a refused access
token, an invalid recipient, a status bar update that fails until its job is dead, and pending jobs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bridge.appkeys import WORKER
from bridge.simulator.model import FaultPlan
from tests.integration.test_admin import AUTH, Harness, body, make_harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with make_harness() as h:
        yield h


def samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(series: dict[str, list[Sample]], name: str, **labels: str) -> float:
    found = [s.value for s in series.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found)


def label_values(series: dict[str, list[Sample]], names: Iterable[str]) -> set[str]:
    return {v for n in names for s in series.get(n, []) for v in s.labels.values()}


async def scrape(h: Harness) -> dict[str, list[Sample]]:
    resp = await h.http.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return samples(await resp.text())


async def scripted_run(h: Harness) -> None:
    h.sim.invalid_userids.add("ghost01")
    # 4 new approvals; the first send finds its token refused once and fetches another one
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("token",), calls=("asyncsend_v2",), limit=1))
    for i in range(1, 5):
        rec = ("user01", "ghost01") if i == 4 else ("user01", "user02")
        assert await h.post(body(f"PO-{i}", "pending", i, recipients=rec)) == 202
    await h.settle()
    h.sim.clear_faults()
    assert await h.post(body("PO-1", "approved", 10, card=False)) == 202
    assert await h.post(body("PO-2", "rejected", 11, card=False)) == 202
    assert await h.post(body("PO-1", "approved", 10, card=False)) == 200  # duplicate
    await h.settle()
    assert await h.post(body("PO-1", "pending", 2, card=False)) == 202  # older than the approval: stale
    assert await h.post(body("PO-3", "pending", 12, card=False)) == 202  # same status again: unchanged
    await h.settle()
    # status bar updates fail with HTTP 500 until the job is dead (max_attempts 3 → 2 retries)
    h.sim.set_faults(FaultPlan(rate=1.0, kinds=("http_500",), calls=("status_bar_update",)))
    assert await h.post(body("PO-4", "approved", 13, card=False)) == 202
    await h.settle()
    h.sim.clear_faults()
    # rejected webhooks
    raw = body("PO-9", "pending", 1)
    assert await h.post(raw, headers={"Content-Type": "application/json", "webhook-id": "msg_1",
                                      "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}) == 401
    assert await h.post(b'{"approval_id": ', headers=None) == 400
    resp = await h.http.post("/webhooks/nope", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 404
    # one more new approval, left pending (its send is due but nobody runs the worker)
    assert await h.post(body("PO-5", "pending", 14)) == 202
    await h.app[WORKER].decider.process_pending()
    h.clock.advance(42)


async def test_metrics_after_a_scripted_run(harness: Harness) -> None:
    h = harness
    await scripted_run(h)
    m = await scrape(h)

    # webhooks by source and code
    assert value(m, "bridge_webhooks_received_total", source="erp", code="202") == 10
    assert value(m, "bridge_webhooks_received_total", source="erp", code="200") == 1
    assert value(m, "bridge_webhooks_received_total", source="erp", code="401") == 1
    assert value(m, "bridge_webhooks_received_total", source="erp", code="400") == 1
    assert value(m, "bridge_webhooks_received_total", source="_unknown", code="404") == 1
    assert value(m, "bridge_ingest_seconds_count", source="erp") == 13
    # events by outcome, transitions
    assert value(m, "bridge_events_total", outcome="applied") == 8
    assert value(m, "bridge_events_total", outcome="stale") == 1
    assert value(m, "bridge_events_total", outcome="unchanged") == 1
    assert value(m, "bridge_transitions_total", from_state="new", to_state="pending") == 5
    assert value(m, "bridge_transitions_total", from_state="pending", to_state="approved") == 2
    assert value(m, "bridge_transitions_total", from_state="pending", to_state="rejected") == 1
    # DingTalk calls by call and code
    assert value(m, "bridge_dingtalk_calls_total", call="asyncsend_v2", code="0") == 4
    # the refused token was shared by the sends in flight: each is refused once, then one refresh serves all
    refused = value(m, "bridge_dingtalk_calls_total", call="asyncsend_v2", code="40014")
    assert 1 <= refused <= 4
    assert value(m, "bridge_dingtalk_calls_total", call="gettoken", code="0") == 2
    assert value(m, "bridge_dingtalk_token_refreshes_total") == 2
    assert value(m, "bridge_dingtalk_calls_total", call="status_bar_update", code="0") == 2
    failed_bars = [s for s in m["bridge_dingtalk_calls_total"]
                   if s.labels["call"] == "status_bar_update" and s.labels["code"].startswith("http_5")]
    assert sum(s.value for s in failed_bars) == 3
    assert value(m, "bridge_dingtalk_calls_total", call="getsendresult", code="0") == 4
    assert value(m, "bridge_dingtalk_call_seconds_count", call="asyncsend_v2") == 4 + refused
    assert value(m, "bridge_dingtalk_calls_total", call="getsendprogress", code="0") == 4
    # retries, dead letters, finished jobs
    assert value(m, "bridge_job_retries_total", kind="update") == 2
    assert value(m, "bridge_jobs_dead_total", kind="update") == 1
    assert value(m, "bridge_jobs_done_total", kind="send", outcome="ok") == 4
    assert value(m, "bridge_jobs_done_total", kind="check", outcome="ok") == 4
    assert value(m, "bridge_jobs_done_total", kind="update", outcome="ok") == 2
    # recipients not reached
    assert value(m, "bridge_recipients_not_reached_total", reason="invalid") == 1
    # job gauges are read from the store at scrape time
    assert value(m, "bridge_jobs", state="dead") == 1
    assert value(m, "bridge_jobs", state="pending") == 1
    assert value(m, "bridge_jobs", state="running") == 0
    assert value(m, "bridge_jobs", state="done") == 10
    assert value(m, "bridge_oldest_pending_job_age_seconds") == 42.0


async def test_label_values_stay_bounded(harness: Harness) -> None:
    h = harness
    await scripted_run(h)
    m = await scrape(h)
    labels = label_values(m, m)
    for needle in ("PO-", "user01", "ghost01", "msg_", "nope"):
        assert not any(needle in v for v in labels), (needle, sorted(labels))
    allowed = {"source", "code", "outcome", "from_state", "to_state", "call", "kind", "reason", "state", "le", "check",
               "app"}  # app: the configured DingTalk apps' names
    process = {"version", "python", "store", "generation", "implementation", "major", "minor", "patchlevel"}
    assert {k for name, series in m.items() for s in series for k in s.labels
            if not name.startswith(("python_", "bridge_build_info"))} <= allowed
    assert {k for name, series in m.items() for s in series for k in s.labels} <= allowed | process
    assert not any(name.endswith("_created") for name in m)


async def test_metrics_are_served_without_auth_and_expose_no_secrets(harness: Harness) -> None:
    h = harness
    await scripted_run(h)
    resp = await h.http.get("/metrics")
    text = await resp.text()
    for secret in (h.cfg.dingtalk.app_secret.reveal(), h.cfg.server.admin_token.reveal(),  # type: ignore[union-attr]
                   *(s.reveal() for src in h.cfg.sources for s in src.secrets)):
        assert secret not in text
    assert json.dumps(text)  # plain text, parseable above


async def test_job_gauges_follow_the_store_on_every_scrape(harness: Harness) -> None:
    h = harness
    m = await scrape(h)
    assert value(m, "bridge_jobs", state="pending") == 0
    assert value(m, "bridge_oldest_pending_job_age_seconds") == 0
    assert await h.post(body("PO-G", "pending", 0)) == 202
    await h.app[WORKER].decider.process_pending()
    h.clock.advance(7)
    m = await scrape(h)
    assert value(m, "bridge_jobs", state="pending") == 1
    assert value(m, "bridge_oldest_pending_job_age_seconds") == 7
    await h.settle()
    m = await scrape(h)
    assert value(m, "bridge_jobs", state="pending") == 0 and value(m, "bridge_jobs", state="done") == 2


async def test_process_metrics_and_build_info_are_on_the_apps_registry(harness: Harness) -> None:
    import platform

    from bridge import __version__

    m = await scrape(harness)
    [build] = m["bridge_build_info"]
    assert build.value == 1
    assert build.labels == {"version": __version__, "python": platform.python_version(), "store": "memory"}
    assert value(m, "process_resident_memory_bytes") > 1_000_000
    assert value(m, "process_open_fds") >= 3 and "process_cpu_seconds_total" in m
    assert "python_info" in m and "python_gc_collections_total" in m


async def test_admin_answers_are_utf8_json_with_chinese_as_it_is(harness: Harness) -> None:
    h = harness
    assert await h.post(body("PO-CN", "pending")) == 202
    await h.settle()
    resp = await h.http.get("/approvals", headers=AUTH)
    assert resp.status == 200 and resp.charset == "utf-8"
    raw = await resp.read()
    assert "采购申请 PO-CN".encode() in raw and b"\\u" not in raw
    resp = await h.http.get("/approvals/erp/无此审批", headers=AUTH)
    raw = await resp.read()
    assert resp.status == 404 and "无此审批".encode() in raw and b"\\u" not in raw


async def test_readiness_and_orphaned_notices_are_exported(harness: Harness) -> None:
    m = await scrape(harness)  # the harness runs no worker: /readyz fails on it, and so does bridge_ready
    ready = await harness.http.get("/readyz")
    assert ready.status == 503 and (await ready.json())["failing"] == ["worker"]
    assert value(m, "bridge_ready") == 0
    assert value(m, "bridge_readiness_check", check="worker") == 0
    assert value(m, "bridge_readiness_check", check="storage") == 1
    assert value(m, "bridge_readiness_check", check="dingtalk_token") == 1
    assert "bridge_orphaned_notices" in m and value(m, "bridge_orphaned_notices") == 0
