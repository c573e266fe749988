"""Delivering: the outbox worker.

One loop does two things whenever it is woken (a webhook was stored, a job was created) or its poll
interval passes: it lets the `Decider` process new events, then claims due jobs and runs them
concurrently, each under a lease. Jobs of one approval run one at a time in order (the store's claim
guarantees it), so an update never overtakes the send that creates its task_id.

What each job kind does with DingTalk lives in bridge.jobs (one handler per kind); this module keeps
the claiming, the leases, the concurrency and the retry-or-bury decision around them.

Transient failures are retried with exponential backoff and full jitter; permanent ones and exhausted
retries go to the dead letters with the last error. `run(burst=True)` drains everything due and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from bridge import errors, logs, service, store
from bridge.clock import Clock
from bridge.config import Config
from bridge.dingtalk.apps import AppClients
from bridge.handoff import GATED, Handoff
from bridge.job_observer import IgnoreJobs, JobObserver
from bridge.jobs import HANDLERS, DingTalk, Finish, JobContext, NotYet, describe, failure_data, journal
from bridge.priority import PROBE_S, IntakeFirst
from bridge.records import JobKind
from bridge.resolve import Resolver
from bridge.retention import PruneObserver, Retention
from bridge.retry import RetryPolicy

__all__ = ["DingTalk", "JobObserver", "RunStats", "Worker"]

log = logs.get_logger("bridge.worker")


@dataclass
class RunStats:
    events: int = 0
    jobs: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Worker(Handoff):
    """Runs the decider and the due jobs until stopped. One per process; several processes may share a
    store, since the store's claim hands each job to one of them at a time."""

    def __init__(
        self,
        st: store.Store,
        client: DingTalk | AppClients[DingTalk],
        cfg: Config,
        clock: Clock,
        *,
        decider: service.Decider | None = None,
        policy: RetryPolicy | None = None,
        observer: JobObserver | None = None,
        prune_observer: PruneObserver | None = None,
        intake: IntakeFirst | None = None,
    ) -> None:
        self.store = st
        # one client per DingTalk app; a single client given (tests) serves every configured app
        self.clients: AppClients[DingTalk] = client if isinstance(client, AppClients) else AppClients.same(client, cfg)
        self.cfg = cfg
        self.clock = clock
        self.decider = decider or service.Decider(st, cfg, clock)
        self.lease_s = cfg.worker.lease_s  # of the jobs a decision claims for this worker (bridge.handoff)
        self._reserved = 0
        w = cfg.worker
        self.policy = policy or RetryPolicy(base_s=w.retry_base_s, cap_s=w.retry_cap_s, max_attempts=w.max_attempts)
        self.observer: JobObserver = observer or IgnoreJobs()
        self._wake = asyncio.Event()
        # the arrivals of this process's receiver, which this worker gives way to (bridge.priority)
        self.intake = intake or IntakeFirst(cfg.worker.intake_priority_s)
        self._stopping = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._kinds: dict[int, str] = {}  # the kind of each job in _tasks (the claim by kind counts them)
        self._claiming = asyncio.Lock()
        # A kill -9 repeats every send or update whose request had left but whose result was not committed yet.
        # `calls_in_flight` (default 1) of each at a time per process between "request leaves" and "result
        # committed" bounds that to as many sends and updates per kill (tests/acceptance/test_fleet.py counts the
        # repeats). One in flight makes at most 1 / (answer time) calls per second per endpoint: no limit next to
        # the simulator's ~2 ms, but ~10/s against DingTalk answering in 100 ms, under its 20/s; hence the knob.
        # The claim asks for no more of these kinds than can start soon (bridge.handoff.GATED_READY).
        self._exposed: dict[str, asyncio.Semaphore] = {
            kind: asyncio.Semaphore(cfg.worker.calls_in_flight) for kind in GATED}
        # set while the decider works through a batch of events (a big one takes a while): a job finishing
        # meanwhile claims the next ones itself, or a backlog of undecided events would starve delivery
        self._deciding: RunStats | None = None
        self.running = False
        self.retention = Retention(st, clock, cfg.worker, prune_observer)
        self.contexts = {
            name: JobContext(client=c, clock=clock, dingtalk=cfg.dingtalk, worker=cfg.worker, observer=self.observer,
                             resolver=Resolver(st, c, clock, cfg.dingtalk, app=name), app=name)
            for name, c in self.clients}

    # --- control ---------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New work was committed in this process: look now instead of at the next poll."""
        self._wake.set()

    async def _after_webhooks(self) -> None:
        """Wait while webhooks arrive and keep a core busy without this worker, at most intake_priority_s."""
        wait_s = PROBE_S
        while not self._stopping and self.intake.arriving(self.clock.monotonic()):
            started, cpu = self.clock.monotonic(), self.clock.cpu()
            await self.clock.sleep(wait_s)
            now = self.clock.monotonic()
            share = (self.clock.cpu() - cpu) / (now - started) if now > started else 0.0
            self.observer.held_off(now - started)
            wait_s = self.intake.wait_s(now, share)
            if wait_s <= 0:
                return

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self, *, burst: bool = False) -> RunStats:
        """Process events and jobs until stopped; with burst=True, until nothing is due, then return."""
        stats = RunStats()
        self.running = True
        self._stopping = False
        self.decider.taker = self  # while running, a decision claims its due jobs into free slots (reserve/take)
        beating = None if burst else asyncio.create_task(self._heartbeat(), name="bridge-worker-heartbeat")
        try:
            while not self._stopping:
                if not burst:
                    await self._after_webhooks()
                self._wake.clear()
                try:
                    self._deciding = stats
                    try:
                        processed = await self.decider.process_pending()
                    finally:
                        self._deciding = None
                    stats.events += len(processed)
                    claimed = await self._claim_and_start(stats)
                    await self.retention.tick()
                except errors.StorageUnavailable as exc:
                    log.error("worker.storage_unavailable", error=str(exc))
                    if burst:
                        raise
                    await self._idle(self.cfg.worker.poll_interval_s)
                    continue
                except Exception:
                    # never let one bad iteration stop delivery for good: log it, wait a poll, go on
                    log.exception("worker.loop_failed")
                    if burst:
                        raise
                    await self._idle(self.cfg.worker.poll_interval_s)
                    continue
                if processed and not claimed:
                    continue  # decisions may have created jobs that are due now
                if burst:
                    if claimed or self._tasks:
                        if self._tasks and not claimed:
                            await asyncio.wait(list(self._tasks.values()), return_when=asyncio.FIRST_COMPLETED)
                        continue
                    return stats
                if not claimed:
                    await self._idle(self.cfg.worker.poll_interval_s)
            return stats
        finally:
            self.decider.taker = None
            await self._drain_on_exit()
            if beating is not None:
                beating.cancel()
            self.running = False

    async def beat(self) -> int:
        """Extend the leases of the jobs this process is running (see `_heartbeat`); how many were extended."""
        if not self._tasks:
            return 0
        return await self.store.extend_leases(list(self._tasks), self.clock.now(), self.cfg.worker.lease_s)

    async def _heartbeat(self) -> None:
        """Every third of a lease, extend the running jobs' leases: a slow DingTalk call's job is not handed to
        another process, while a killed process stops beating and its jobs come back when their leases pass."""
        while True:
            await asyncio.sleep(self.cfg.worker.lease_s / 3)
            try:
                await self.beat()
            except errors.StorageUnavailable as exc:
                log.warning("worker.heartbeat_failed", error=str(exc))

    async def _idle(self, wait_s: float) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        waits += list(self._tasks.values())
        try:
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waits[0].cancel()

    async def _drain_on_exit(self, grace_s: float | None = None) -> None:
        if not self._tasks:
            return
        grace = self.cfg.server.shutdown_timeout_s if grace_s is None else grace_s
        _, pending = await asyncio.wait(list(self._tasks.values()), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _claim_and_start(self, stats: RunStats) -> int:
        async with self._claiming:  # one claim at a time, so `free` counts the jobs the previous one started
            free = self._free()
            if free <= 0:
                return 0
            self._reserved += free  # while this claim is out, a decision's hand-off cannot promise these slots too
            try:
                jobs = await self.store.claim_jobs(self.clock.now(), self.cfg.worker.lease_s, free,
                                                   self._kind_room(free))
            finally:
                self._reserved -= free
            return self._start(jobs, stats)

    def _handed_stats(self) -> RunStats:
        return self._deciding or RunStats()

    def _start(self, jobs: list[store.Job], stats: RunStats,
               notices: Mapping[int, store.Notice] | None = None) -> int:
        for job in jobs:
            if job.id in self._tasks:
                # its lease ran out while this process is still working on it (a DingTalk call slower than
                # lease_s): the task that holds it will finish it; a second one would call DingTalk twice
                continue
            known = None if notices is None or job.notice_id is None else notices.get(job.notice_id)
            task = asyncio.create_task(self._run_job(job, stats, known), name=f"job-{job.id}")
            self._tasks[job.id] = task
            self._kinds[job.id] = job.kind
            task.add_done_callback(self._forget(job.id))
        stats.jobs += len(jobs)
        return len(jobs)

    def _forget(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        """The done-callback that drops a finished job's task, freeing its concurrency slot."""
        def forget(_task: asyncio.Task[None]) -> None:
            self._free_slot(job_id)

        return forget

    def _free_slot(self, job_id: int) -> None:
        """A job's task and its kind forgotten together (the claim by kind counts `_kinds`)."""
        self._tasks.pop(job_id, None)
        self._kinds.pop(job_id, None)

    # --- one job ---------------------------------------------------------------------------------------
    async def _run_job(self, job: store.Job, stats: RunStats, notice: store.Notice | None = None) -> None:
        ctx = dict(source=job.source, approval_id=job.approval_id, job_id=job.id, job_kind=job.kind)
        if job.event_id:
            ctx["event_id"] = job.event_id
        structlog.contextvars.bind_contextvars(**ctx)
        try:
            async with contextlib.AsyncExitStack() as exposed:
                if (gate := self._exposed.get(job.kind)) is not None:
                    await exposed.enter_async_context(gate)
                try:
                    finish = await self._execute(job, notice)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.store.release_job(job.id, self.clock.now()))
                    log.info("job.released")
                    raise
                except errors.StorageUnavailable as exc:
                    log.error("job.storage_unavailable", error=str(exc))
                    return  # the lease runs out and the job is claimed again
                except Exception as exc:
                    await self._failed(job, exc, stats)
                    return
                await self.store.finish_job(
                    job.id, self.clock.now(), outcome=finish.outcome, notice=finish.notice,
                    new_jobs=finish.new_jobs, journal=finish.journal,
                )
                stats.done += 1
                key = f"{job.kind}:{finish.outcome}"
                stats.outcomes[key] = stats.outcomes.get(key, 0) + 1
                self.observer.job_done(job.kind, finish.outcome)
                if finish.new_jobs:
                    self.wake()
        except errors.StorageUnavailable as exc:
            log.error("job.storage_unavailable", error=str(exc))
        finally:
            structlog.contextvars.unbind_contextvars(*ctx, "app")
        await self._refill(job.id)

    async def _refill(self, job_id: int) -> None:
        """While the loop is busy deciding, a finished job's slot is filled at once instead of after the batch
        (bench/backlog.py --deciding: with a backlog of undecided events, delivery had all but stopped)."""
        stats = self._deciding
        if stats is None or self._stopping:
            return
        self._free_slot(job_id)  # this task is done with its job: its slot is free
        try:
            await self._claim_and_start(stats)
        except errors.StorageUnavailable as exc:
            log.error("worker.storage_unavailable", error=str(exc))
        except Exception:
            log.exception("worker.loop_failed")

    async def _failed(self, job: store.Job, exc: Exception, stats: RunStats) -> None:
        now = self.clock.now()
        message = describe(exc)
        if isinstance(exc, NotYet):  # a progress check that must look again: not a failure
            delay = min(60.0, self.cfg.worker.check_delay_s * 2 ** max(0, job.attempts - 1))
            await self.store.retry_job(job.id, now, now + timedelta(seconds=delay), message)
            log.debug("dingtalk.check_again", delay_s=delay, progress=message)
            return
        fields = exc.as_dict() if isinstance(exc, errors.DingTalkError) else {"error": type(exc).__name__}
        if not isinstance(exc, errors.BridgeError):
            log.exception("job.crashed", error=message)
        delay = self.policy.next_delay(job.attempts, exc)
        if delay is not None:
            run_at = now + timedelta(seconds=delay)
            await self.store.retry_job(
                job.id, now, run_at, message,
                journal=[journal(job, "job.retry_scheduled",
                                 f"{job.kind} attempt {job.attempts} failed: {message}; retry in {delay:.1f}s",
                                 attempt=job.attempts, delay_s=round(delay, 3), **failure_data(exc))],
            )
            stats.retried += 1
            self.observer.job_retried(job.kind)
            log.warning("job.retry_scheduled", attempt=job.attempts, delay_s=round(delay, 3), **_log_fields(fields))
            return
        reason = "permanent error" if not isinstance(exc, errors.TransientDingTalkError) else "retries exhausted"
        await self.store.bury_job(
            job.id, now, message,
            journal=[journal(job, "job.dead", f"{job.kind} dead after {job.attempts} attempts ({reason}): "
                             f"{message}", attempt=job.attempts, **failure_data(exc))],
        )
        stats.dead += 1
        self.observer.job_dead(job.kind)
        log.error("job.dead", attempt=job.attempts, reason=reason, **_log_fields(fields))

    async def _notice(self, job: store.Job) -> store.Notice:
        for n in await self.store.notices_for(job.source, job.approval_id):
            if n.id == job.notice_id:
                return n
        raise errors.BridgeError(f"job {job.id}: notice {job.notice_id} not found")

    async def _execute(self, job: store.Job, known: store.Notice | None = None) -> Finish:
        """Run the job's handler on its notice (an unknown kind raises, failing the job, not the loop); `known`:
        the notice as read when the job was claimed with its decision (else it is read now)."""
        handler = HANDLERS[JobKind(job.kind)]
        notice = known if known is not None else await self._notice(job)
        app = self.clients.app_of_notice(notice)  # a new card: its source's app; a sent one: the app that sent it
        structlog.contextvars.bind_contextvars(app=app)
        cx = self.contexts.get(app)
        if cx is None:
            raise errors.BridgeError(f"card {notice.id} was sent through DingTalk app {app!r}, which is no longer "
                                     f"configured (apps: {', '.join(self.contexts)})")
        return await handler(cx, job, notice)


def _log_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and k != "message"}
