"""Delivering: the outbox worker.

One loop does two things whenever it is woken (a webhook was stored, a job was created) or its poll
interval passes: it lets the `Decider` process new events, then claims due jobs and runs them
concurrently, each under a lease. Jobs of one approval run one at a time in order (the store's claim
guarantees it), so an update never overtakes the send that creates its task_id.

Each job kind is one DingTalk call:
- send: asyncsend_v2 with the notice's stored message (byte-identical on every retry); the task_id is
  stored the moment DingTalk returns it, and a check job is scheduled.
- check: getsendprogress until done (bounded, backing off), then getsendresult; the delivery result is
  stored on the notice and recipients not reached are logged and counted.
- update: status_bar/update; past the 7-day window the update is recorded as expired, not retried.
- recall: recall; past the 24-hour window (or when DingTalk refuses it as too old) the status bar is set
  to the revoked label instead, and the notice says why.

Transient failures are retried with exponential backoff and full jitter; permanent ones and exhausted
retries go to the dead letters with the last error. `run(burst=True)` drains everything due and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from bridge import errors, service, store
from bridge.clock import Clock
from bridge.config import Config
from bridge.records import JobKind
from bridge.retry import RetryPolicy

log = structlog.get_logger("bridge.worker")


class DingTalk(Protocol):
    """The part of `bridge.dingtalk.Client` the worker uses."""

    async def send(self, msg: Any, *, userids: Any = ...) -> int: ...
    async def get_send_progress(self, task_id: int) -> Any: ...
    async def get_send_result(self, task_id: int) -> Any: ...
    async def update_status_bar(self, task_id: int, status_value: str, status_bg: str | None = None) -> None: ...
    async def recall(self, task_id: int) -> None: ...


class Observer:
    """Hooks for metrics; the default does nothing."""

    def job_retried(self, kind: str) -> None: ...

    def job_dead(self, kind: str) -> None: ...

    def job_done(self, kind: str, outcome: str) -> None: ...

    def recipients_not_reached(self, reason: str, count: int) -> None: ...


@dataclass
class RunStats:
    events: int = 0
    jobs: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Finish:
    outcome: str = "ok"
    notice: store.NoticeChange | None = None
    new_jobs: tuple[store.NewJob, ...] = ()
    journal: tuple[store.NewJournal, ...] = ()


class Worker:
    def __init__(
        self,
        st: store.Store,
        client: DingTalk,
        cfg: Config,
        clock: Clock,
        *,
        decider: service.Decider | None = None,
        policy: RetryPolicy | None = None,
        observer: Any = None,
    ) -> None:
        self.store = st
        self.client = client
        self.cfg = cfg
        self.clock = clock
        self.decider = decider or service.Decider(st, cfg, clock)
        w = cfg.worker
        self.policy = policy or RetryPolicy(base_s=w.retry_base_s, cap_s=w.retry_cap_s, max_attempts=w.max_attempts)
        self.observer = observer or Observer()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.running = False
        self.last_loop_at: datetime | None = None

    # --- control ---------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New work was committed in this process: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self, *, burst: bool = False) -> RunStats:
        """Process events and jobs until stopped; with burst=True, until nothing is due, then return."""
        stats = RunStats()
        self.running = True
        self._stopping = False
        try:
            while not self._stopping:
                self._wake.clear()
                self.last_loop_at = self.clock.now()
                try:
                    processed = await self.decider.process_pending()
                    stats.events += len(processed)
                    claimed = await self._claim_and_start(stats)
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
            await self._drain_on_exit()
            self.running = False

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
        free = self.cfg.worker.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        jobs = await self.store.claim_jobs(self.clock.now(), self.cfg.worker.lease_s, free)
        for job in jobs:
            if job.id in self._tasks:
                # its lease ran out while this process is still working on it (a DingTalk call slower than
                # lease_s): the task that holds it will finish it; a second one would call DingTalk twice
                continue
            task = asyncio.create_task(self._run_job(job, stats), name=f"job-{job.id}")
            self._tasks[job.id] = task
            task.add_done_callback(lambda _t, jid=job.id: self._tasks.pop(jid, None))
        stats.jobs += len(jobs)
        return len(jobs)

    # --- one job ---------------------------------------------------------------------------------------
    async def _run_job(self, job: store.Job, stats: RunStats) -> None:
        ctx = dict(source=job.source, approval_id=job.approval_id, job_id=job.id, job_kind=job.kind)
        if job.event_id:
            ctx["event_id"] = job.event_id
        structlog.contextvars.bind_contextvars(**ctx)
        try:
            try:
                finish = await self._execute(job)
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
            stats.outcomes[f"{job.kind}:{finish.outcome}"] = stats.outcomes.get(f"{job.kind}:{finish.outcome}", 0) + 1
            self.observer.job_done(job.kind, finish.outcome)
            if finish.new_jobs:
                self.wake()
        except errors.StorageUnavailable as exc:
            log.error("job.storage_unavailable", error=str(exc))
        finally:
            structlog.contextvars.unbind_contextvars(*ctx)

    async def _failed(self, job: store.Job, exc: Exception, stats: RunStats) -> None:
        now = self.clock.now()
        message = _describe(exc)
        if isinstance(exc, _NotYet):  # a progress check that must look again: not a failure
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
                journal=[self._journal(job, "job.retry_scheduled",
                                       f"{job.kind} attempt {job.attempts} failed: {message}; retry in {delay:.1f}s",
                                       attempt=job.attempts, delay_s=round(delay, 3))],
            )
            stats.retried += 1
            self.observer.job_retried(job.kind)
            log.warning("job.retry_scheduled", attempt=job.attempts, delay_s=round(delay, 3), **_log_fields(fields))
            return
        reason = "permanent error" if not isinstance(exc, errors.TransientDingTalkError) else "retries exhausted"
        await self.store.bury_job(
            job.id, now, message,
            journal=[self._journal(job, "job.dead", f"{job.kind} dead after {job.attempts} attempts ({reason}): "
                                   f"{message}", attempt=job.attempts)],
        )
        stats.dead += 1
        self.observer.job_dead(job.kind)
        log.error("job.dead", attempt=job.attempts, reason=reason, **_log_fields(fields))

    def _journal(self, job: store.Job, kind: str, message: str, *, task_id: int | None = None,
                 **data: Any) -> store.NewJournal:
        return store.NewJournal(kind=kind, message=message, source=job.source, approval_id=job.approval_id,
                                event_id=job.event_id, job_id=job.id, task_id=task_id, data=data)

    async def _notice(self, job: store.Job) -> store.Notice:
        for n in await self.store.notices_for(job.source, job.approval_id):
            if n.id == job.notice_id:
                return n
        raise errors.BridgeError(f"job {job.id}: notice {job.notice_id} not found")

    async def _execute(self, job: store.Job) -> _Finish:
        handler = {JobKind.SEND: self._send, JobKind.CHECK: self._check, JobKind.UPDATE: self._update,
                   JobKind.RECALL: self._recall}[job.kind]
        return await handler(job, await self._notice(job))

    async def _send(self, job: store.Job, notice: store.Notice) -> _Finish:
        if notice.task_id is not None:
            return _Finish(outcome="skipped")  # already sent (a retried job after a crash past the commit)
        task_id = await self.client.send(notice.msg, userids=notice.userids)
        now = self.clock.now()
        structlog.contextvars.bind_contextvars(task_id=task_id)
        log.info("dingtalk.sent", userids=len(notice.userids), status_value=notice.status_value)
        check = store.NewJob(
            kind=JobKind.CHECK, lock_key=None, notice_id=notice.id, payload={"task_id": task_id},
            run_at=now + timedelta(seconds=self.cfg.worker.check_delay_s), event_id=job.event_id,
        )
        return _Finish(
            notice=store.NoticeChange(notice_id=notice.id, state="sent", task_id=task_id, sent_at=now),
            new_jobs=(check,),
            journal=(self._journal(job, "dingtalk.sent", f"card sent to {','.join(notice.userids)} "
                                   f"({notice.status_value}), task_id {task_id}", task_id=task_id),),
        )

    async def _update(self, job: store.Job, notice: store.Notice) -> _Finish:
        value, bg = job.payload["status_value"], job.payload.get("status_bg")
        return await self._set_status_bar(job, notice, value, bg, note=None)

    async def _set_status_bar(self, job: store.Job, notice: store.Notice, value: str, bg: str | None,
                              note: str | None) -> _Finish:
        if notice.state == "recalled":
            return _Finish(outcome="skipped", journal=(self._journal(
                job, "job.skipped", "card already recalled: nothing to update", task_id=notice.task_id),))
        if notice.task_id is None:
            raise errors.BridgeError(f"notice {notice.id} has no task_id: its send has not happened")
        structlog.contextvars.bind_contextvars(task_id=notice.task_id)
        now = self.clock.now()
        age = (now - notice.sent_at).total_seconds() if notice.sent_at else 0.0
        if age > self.cfg.dingtalk.update_window_s:
            why = (f"status bar not updated to {value}: the card was sent {_human(age)} ago, past DingTalk's "
                   f"{_human(self.cfg.dingtalk.update_window_s)} update window")
            log.warning("dingtalk.update_expired", age_s=int(age))
            return _Finish(outcome="expired", notice=store.NoticeChange(notice_id=notice.id, note=why),
                           journal=(self._journal(job, "dingtalk.update_expired", why, task_id=notice.task_id),))
        await self.client.update_status_bar(notice.task_id, value, bg)
        log.info("dingtalk.status_bar_updated", status_value=value, status_bg=bg)
        return _Finish(
            outcome="fallback" if note else "ok",
            notice=store.NoticeChange(notice_id=notice.id, status_value=value, status_bg=bg, updated_at=now,
                                      note=note),
            journal=(self._journal(job, "dingtalk.status_bar_updated", note or f"status bar → {value} ({bg})",
                                   task_id=notice.task_id),),
        )

    async def _recall(self, job: store.Job, notice: store.Notice) -> _Finish:
        if notice.state == "recalled":
            return _Finish(outcome="skipped")
        if notice.task_id is None:
            raise errors.BridgeError(f"notice {notice.id} has no task_id: its send has not happened")
        structlog.contextvars.bind_contextvars(task_id=notice.task_id)
        now = self.clock.now()
        age = (now - notice.sent_at).total_seconds() if notice.sent_at else 0.0
        value, bg = job.payload["fallback_status_value"], job.payload.get("fallback_status_bg")
        if age > self.cfg.dingtalk.recall_window_s:
            why = (f"not recalled: the card was sent {_human(age)} ago, past DingTalk's "
                   f"{_human(self.cfg.dingtalk.recall_window_s)} recall window; status bar set to {value} instead")
            log.warning("dingtalk.recall_fallback", age_s=int(age))
            return await self._set_status_bar(job, notice, value, bg, note=why)
        try:
            await self.client.recall(notice.task_id)
        except errors.PermanentDingTalkError as exc:
            if exc.errcode != 400002:
                raise
            why = (f"DingTalk refused the recall ({exc.errcode}: {exc.errmsg}); status bar set to {value} instead")
            log.warning("dingtalk.recall_fallback", errcode=exc.errcode)
            return await self._set_status_bar(job, notice, value, bg, note=why)
        log.info("dingtalk.recalled")
        return _Finish(
            notice=store.NoticeChange(notice_id=notice.id, state="recalled", recalled_at=now),
            journal=(self._journal(job, "dingtalk.recalled", f"card recalled (task_id {notice.task_id})",
                                   task_id=notice.task_id),),
        )

    async def _check(self, job: store.Job, notice: store.Notice) -> _Finish:
        task_id = int(job.payload["task_id"])
        structlog.contextvars.bind_contextvars(task_id=task_id)
        progress = await self.client.get_send_progress(task_id)
        if not progress.done:
            if job.attempts >= self.cfg.worker.check_max_attempts:
                why = f"send still in progress after {job.attempts} checks ({progress.percent}%): gave up checking"
                log.warning("dingtalk.check_gave_up", percent=progress.percent)
                return _Finish(outcome="gave_up", notice=store.NoticeChange(notice_id=notice.id, note=why))
            raise _NotYet(f"send in progress ({progress.percent}%)")
        result = await self.client.get_send_result(task_id)
        delivery = result.to_dict()
        missing = list(result.not_reached)
        self.observer.recipients_not_reached("invalid", len(result.invalid_user_id_list))
        self.observer.recipients_not_reached("failed", len(result.failed_user_id_list))
        for entry in result.forbidden_list:
            self.observer.recipients_not_reached(f"forbidden:{entry.code}", 1)
        journal: list[store.NewJournal] = []
        if missing:
            forbidden = {e.userid: e.code for e in result.forbidden_list}
            log.warning("dingtalk.recipients_not_reached", invalid=list(result.invalid_user_id_list),
                        forbidden=forbidden, failed=list(result.failed_user_id_list))
            journal.append(self._journal(job, "dingtalk.recipients_not_reached",
                                         f"not reached: invalid={list(result.invalid_user_id_list)} "
                                         f"forbidden={forbidden} failed={list(result.failed_user_id_list)}",
                                         task_id=task_id))
        else:
            log.info("dingtalk.delivered", read=len(result.read_user_id_list), unread=len(result.unread_user_id_list))
        duplicates = [e.userid for e in result.forbidden_list if e.code in _DUPLICATE_CONTENT_CODES]
        note = None
        if duplicates:
            note = (f"DingTalk filtered {len(duplicates)} recipient(s) as duplicate content ({', '.join(duplicates)}):"
                    " they already got identical content today, e.g. from an earlier attempt of this send whose"
                    " answer was lost in a crash; this task's status bar will not reach them")
        return _Finish(notice=store.NoticeChange(notice_id=notice.id, delivery=delivery, note=note),
                       journal=tuple(journal))


_DUPLICATE_CONTENT_CODES = frozenset({"143106", "143206"})  # same content to the same user on the same day


class _NotYet(errors.TransientDingTalkError):
    """The send is still in progress; look again later."""


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _log_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and k != "message"}


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"
