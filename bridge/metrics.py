"""Prometheus metrics, one registry per app (so tests can build many apps).

Label values stay bounded: sources (configured), outcomes, states, DingTalk call names and error codes,
never approval ids, event ids or userids. Job gauges are read from the store at scrape time, so they are
right even when another process (the CLI) changed the jobs.
"""

from __future__ import annotations

import platform
from datetime import datetime

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from bridge import __version__, store
from bridge.config_model import DEFAULT_APP
from bridge.dingtalk.apps import is_throttle_code
from bridge.records import JobState

# `_created` series double the output and nobody alerts on them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """All of bridge's metrics. Implements the hook protocols of the DingTalk client, the decider and
    the worker, so those modules never import prometheus_client."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The process itself (CPU seconds, RSS, open fds, start time; python_info; garbage collections), on
        # this app's registry so one scrape of /metrics has everything.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:
            GCCollector(registry=r)
        self.build = Info("bridge_build", "The running bridge: version, Python and store kind (always 1)",
                          registry=r)
        self.set_build_info("unknown")
        self.webhooks = Counter(
            "bridge_webhooks_received", "Webhook requests answered, by source and HTTP status", ["source", "code"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "bridge_ingest_seconds", "Time from a webhook's arrival to its answer", ["source"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.events = Counter("bridge_events", "Processed events by outcome", ["outcome"], registry=r)
        self.transitions = Counter(
            "bridge_transitions", "Approval state transitions", ["from_state", "to_state"], registry=r
        )
        self.calls = Counter(
            "bridge_dingtalk_calls", "DingTalk calls by app, call name and result code (0 = success)",
            ["app", "call", "code"], registry=r,
        )
        self.call_seconds = Histogram(
            "bridge_dingtalk_call_seconds", "DingTalk call latency, by app and call", ["app", "call"],
            buckets=_LATENCY_BUCKETS, registry=r
        )
        self.throttled = Counter("bridge_dingtalk_throttled", "DingTalk calls refused as throttled (900xx, IP ban)",
                                 ["app", "call"], registry=r)
        self.token_refreshes = Counter("bridge_dingtalk_token_refreshes", "Access tokens fetched, by app", ["app"],
                                       registry=r)
        self.retries = Counter("bridge_job_retries", "Job attempts that failed and were rescheduled", ["kind"],
                               registry=r)
        self.dead = Counter("bridge_jobs_dead", "Jobs moved to the dead letters", ["kind"], registry=r)
        self.jobs_done = Counter("bridge_jobs_done", "Jobs finished, by kind and outcome", ["kind", "outcome"],
                                 registry=r)
        self.not_reached = Counter(
            "bridge_recipients_not_reached",
            "Recipients DingTalk did not deliver to, by reason (invalid, forbidden:<code>, failed)",
            ["reason"],
            registry=r,
        )
        self.jobs = Gauge("bridge_jobs", "Jobs by state", ["state"], registry=r)
        self.pruned = Counter("bridge_pruned_rows", "Rows deleted by retention, by kind (journal, inbox, audit, jobs)",
                              ["kind"], registry=r)
        self.orphaned = Gauge("bridge_orphaned_notices",
                              "Cards DingTalk filtered as duplicate content whose task_id reaches nobody", registry=r)
        self.held_off_seconds = Counter(
            "bridge_worker_held_off_seconds", "Seconds the worker waited for the receiver's webhooks (bridge.priority)",
            registry=r)
        self.orphans_found = Counter("bridge_notices_orphaned", "Sends found orphaned (duplicate content, 143106)",
                                     registry=r)
        self.ready = Gauge("bridge_ready", "1 when every /readyz check passes, else 0", registry=r)
        self.readiness = Gauge("bridge_readiness_check", "Each /readyz check: 1 passing, 0 failing", ["check"],
                               registry=r)
        self.stream_up = Gauge("bridge_stream_connected", "1 while the source's DingTalk Stream connection is open",
                               ["source"], registry=r)
        self.stream_reconnects = Counter("bridge_stream_reconnects", "Stream reconnects, by reason",
                                         ["source", "reason"], registry=r)
        self.stream_acks = Counter("bridge_stream_acks", "Stream EVENT acks sent, by status (SUCCESS, LATER)",
                                   ["source", "status"], registry=r)
        self.stream_redeliveries = Counter(
            "bridge_stream_redeliveries", "Stream events received again that the inbox already held", ["source"],
            registry=r)
        self.oldest_pending = Gauge(
            "bridge_oldest_pending_job_age_seconds", "Age of the oldest due pending job (0 when none)", registry=r
        )
        # `.labels()` builds a key and takes a lock on every call: the webhook path keeps its children
        self._webhook_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def set_build_info(self, store_kind: str) -> None:
        """bridge_build_info{version, python, store} 1: which build answers, and on which store."""
        self.build.info({"version": __version__, "python": platform.python_version(), "store": store_kind})

    # --- dingtalk.CallObserver -------------------------------------------------------------------------
    def call_finished(self, call: str, code: str, seconds: float, app: str = DEFAULT_APP) -> None:
        self.calls.labels(app=app, call=call, code=code).inc()
        self.call_seconds.labels(app=app, call=call).observe(seconds)
        if is_throttle_code(code):
            self.throttled.labels(app=app, call=call).inc()

    def token_refreshed(self, app: str = DEFAULT_APP) -> None:
        self.token_refreshes.labels(app=app).inc()

    # --- service.DecisionObserver ---------------------------------------------------------------------
    def event_processed(self, outcome: str) -> None:
        self.events.labels(outcome=outcome).inc()

    def transition(self, from_state: str, to_state: str) -> None:
        self.transitions.labels(from_state=from_state, to_state=to_state).inc()

    # --- job_observer.JobObserver ----------------------------------------------------------------------
    def job_retried(self, kind: str) -> None:
        self.retries.labels(kind=kind).inc()

    def job_dead(self, kind: str) -> None:
        self.dead.labels(kind=kind).inc()

    def job_done(self, kind: str, outcome: str) -> None:
        self.jobs_done.labels(kind=kind, outcome=outcome).inc()

    def recipients_not_reached(self, reason: str, count: int) -> None:
        if count:
            self.not_reached.labels(reason=reason).inc(count)

    def notice_orphaned(self) -> None:
        self.orphans_found.inc()

    def held_off(self, seconds: float) -> None:
        self.held_off_seconds.inc(seconds)

    # --- retention.PruneObserver -----------------------------------------------------------------------
    def rows_pruned(self, kind: str, count: int) -> None:
        self.pruned.labels(kind=kind).inc(count)
    # --- sources.stream.StreamObserver ------------------------------------------------------------------
    def stream_connected(self, source: str, connected: bool) -> None:
        self.stream_up.labels(source=source).set(1 if connected else 0)

    def stream_reconnect(self, source: str, reason: str) -> None:
        self.stream_reconnects.labels(source=source, reason=reason[:40]).inc()

    def stream_ack(self, source: str, status: str) -> None:
        self.stream_acks.labels(source=source, status=status).inc()

    def stream_redelivery(self, source: str) -> None:
        self.stream_redeliveries.labels(source=source).inc()

    # --- web hooks -------------------------------------------------------------------------------------
    def webhook_answered(self, source: str, code: int, seconds: float) -> None:
        children = self._webhook_children.get((source, code))
        if children is None:  # sources are configured and codes few, so this stays small
            children = (self.webhooks.labels(source=source, code=str(code)), self.ingest_seconds.labels(source=source))
            self._webhook_children[(source, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_job_counts(self, counts: store.JobCounts, now: datetime) -> None:
        for state in tuple(JobState):
            self.jobs.labels(state=state).set(getattr(counts, state))
        age = (now - counts.oldest_pending_run_at).total_seconds() if counts.oldest_pending_run_at else 0.0
        self.oldest_pending.set(max(0.0, age))
        self.orphaned.set(counts.orphaned)

    def set_readiness(self, checks: dict[str, bool]) -> None:
        for name, ok in checks.items():
            self.readiness.labels(check=name).set(1 if ok else 0)
        self.ready.set(1 if all(checks.values()) else 0)
