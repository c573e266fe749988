"""The console's pure parts: the login throttle, times and the "since" parser, reading failures from the journal."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.console import throttle
from bridge.console.overview import failure_of
from bridge.console.throttle import FREE_FAILURES, MAX_DELAY_S, LoginThrottle
from bridge.console.times import BadTime, parse_since, time_tag
from bridge.records import JournalEntry

# --- the login throttle ---------------------------------------------------------------------------------


def test_free_failures_then_a_delay_that_doubles_up_to_the_cap() -> None:
    t, now = LoginThrottle(), 100.0
    for _ in range(FREE_FAILURES):
        assert t.wait(None, now) == 0
        v = t.failed(None, now)
        assert v.retry_after_s == 0 and not v.in_burst
    delays = []
    for _ in range(10):
        v = t.failed(None, now)
        delays.append(v.retry_after_s)
        assert t.wait(None, now) == pytest.approx(v.retry_after_s)
        now += v.retry_after_s  # the next attempt comes exactly when the form opens again
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and max(delays) == MAX_DELAY_S == delays[-1]


def test_a_burst_is_reported_once_and_forgotten_after_a_quiet_period() -> None:
    t, now = LoginThrottle(), 0.0
    started = []
    for i in range(30):
        v = t.failed(None, now + i * 100)
        started.append(v.burst_started)
    assert started.count(True) == 1
    later = now + 30 * 100 + throttle.QUIET_S + MAX_DELAY_S + 1
    assert t.wait(None, later) == 0
    v = t.failed(None, later)
    assert v.failures == 1 and not v.in_burst


def test_a_known_device_is_not_held_up_by_the_shared_bucket() -> None:
    t, now = LoginThrottle(), 0.0
    for _ in range(FREE_FAILURES + 8):
        t.failed(None, now)
    assert t.wait(None, now) > 0  # every unknown browser waits
    assert t.wait("operator-laptop", now) == 0  # the operator's browser does not
    for _ in range(FREE_FAILURES + 1):
        t.failed("stolen-cookie", now)
    assert t.wait("stolen-cookie", now) > 0 and t.wait("operator-laptop", now) == 0
    t.succeeded("stolen-cookie")
    assert t.wait("stolen-cookie", now) == 0


def test_memory_is_bounded() -> None:
    t = LoginThrottle()
    for i in range(throttle.MAX_DEVICES * 3):
        t.failed(f"device-{i}", float(i))
    assert t.devices == throttle.MAX_DEVICES


# --- times ------------------------------------------------------------------------------------------------


def test_since_accepts_iso_times_and_dates_and_refuses_the_rest() -> None:
    assert parse_since("") is None and parse_since("  ") is None
    assert parse_since("2026-11-29") == datetime(2026, 11, 29, tzinfo=UTC)
    assert parse_since("2026-11-29T08:00+08:00") == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    assert parse_since("2026-11-29 08:00:00") == datetime(2026, 11, 29, 8, tzinfo=UTC)
    assert parse_since("2026-11-29T00:00:00Z") == datetime(2026, 11, 29, tzinfo=UTC)
    for bad in ("yesterday", "1.5", "2026-13-01", "29/11/2026"):
        with pytest.raises(BadTime):
            parse_since(bad)


def test_time_tag_is_utc_on_the_server_with_the_iso_value_for_the_browser() -> None:
    shanghai = timezone(timedelta(hours=8))
    tag = time_tag(datetime(2026, 12, 1, 10, 0, tzinfo=shanghai))
    assert tag == ('<time datetime="2026-12-01T02:00:00+00:00" title="2026-12-01 02:00:00 UTC">'
                   '2026-12-01 02:00:00 UTC</time>')
    assert time_tag("2026-12-01T10:00:00+08:00") == tag
    assert time_tag(None) == "" and time_tag("") == ""
    assert time_tag("<not a time>") == "<span>&lt;not a time&gt;</span>"


# --- failures read from the journal ----------------------------------------------------------------------

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_failures_carry_their_code_from_data_or_from_older_lines_text() -> None:
    f = failure_of(JournalEntry(id=1, at=AT, kind="job.retry_scheduled", source="erp", message="whatever",
                                data={"code": "90018", "error": "DingTalkThrottled"}))
    assert f is not None and f.code == "90018" and f.throttled and not f.dead and f.source == "erp"
    old = JournalEntry(id=2, at=AT, kind="job.dead", source="erp",
                       message="send dead after 3 attempts (permanent error): asyncsend_v2 failed errcode=88 "
                               "sub_code=40035 errmsg='bad'")
    f = failure_of(old)
    assert f is not None and f.code == "40035" and f.dead and not f.throttled
    f = failure_of(JournalEntry(id=3, at=AT, kind="job.retry_scheduled", message="failed errcode=90018 errmsg=''"))
    assert f is not None and f.throttled
    f = failure_of(JournalEntry(id=4, at=AT, kind="job.dead", message="x failed errcode=90020"))
    assert f is not None and not f.throttled  # the monthly quota: waiting does not help
    assert failure_of(JournalEntry(id=5, at=AT, kind="job.dead", message="crashed: KeyError")) is None
    assert failure_of(JournalEntry(id=6, at=AT, kind="dingtalk.sent", message="errcode=1")) is None


async def test_failed_attempts_record_their_app_and_the_overview_counts_per_app() -> None:
    from dataclasses import replace

    from bridge import errors, worker
    from bridge.clock import FakeClock
    from bridge.config import SourceConfig
    from bridge.console.overview import _per_app
    from bridge.dingtalk.apps import AppClients
    from bridge.dingtalk.fake import FakeDingTalk
    from bridge.events import Status
    from bridge.store.memory import MemoryStore
    from tests.unit.helpers import event
    from tests.unit.test_apps_worker import with_apps

    clock, st = FakeClock(), MemoryStore()
    await st.open()
    hr, sales = FakeDingTalk(), FakeDingTalk()
    cfg = with_apps("hr", "sales")
    cfg = replace(cfg, sources=(*cfg.sources, SourceConfig(name="crm", signature="none", app="sales")))
    sales.fail_next("send", errors.DingTalkThrottled(call="asyncsend_v2", errcode=90018),
                    errors.PermanentDingTalkError(call="asyncsend_v2", errcode=40035))
    w = worker.Worker(st, AppClients({"hr": hr, "sales": sales}, cfg), cfg, clock)
    await st.add_event(replace(event(Status.PENDING, n=2), source="crm"), b"{}", clock.now())
    await w.run(burst=True)
    clock.advance(60)
    await w.run(burst=True)
    lines = [e for e in await st.journal_tail(100) if e.kind in ("job.retry_scheduled", "job.dead")]
    assert [(e.kind, e.data.get("code"), e.data.get("app")) for e in lines] == [
        ("job.retry_scheduled", "90018", "sales"), ("job.dead", "40035", "sales")]
    failures = [f for f in (failure_of(e, cfg.app_of) for e in lines) if f is not None]
    html = _per_app(cfg, await st.list_jobs("dead"), failures, Counter())
    sales_row = next(r for r in html.split("<tr>") if "<strong>sales</strong>" in r)
    hr_row = next(r for r in html.split("<tr>") if "<strong>hr</strong>" in r)
    cells = [c.removeprefix("<td>") for c in sales_row.split("</td>")[1:-1]]
    assert cells == ["2", "crm", "1", "1", "1", "1", "0"]  # agent, sources, dead, errors, throttled, died, orphaned
    assert "默认 default" in hr_row and "<td>erp</td>" in hr_row
    legacy = JournalEntry(id=9, at=AT, kind="job.dead", source="crm", message="x failed errcode=40035")
    f = failure_of(legacy, cfg.app_of)
    assert f is not None and f.app == "sales"  # a line from before apps were recorded: its source's app
    await st.close()
