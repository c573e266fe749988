"""The job handlers: what each outbox job kind does with DingTalk, one handler per kind.

Split from the worker so that "what a send / update / recall / check means" reads apart from "how jobs
are claimed, leased, run concurrently, retried and buried" (bridge.worker). A handler gets the claimed
job and its notice and returns a `Finish`: the job's outcome, the notice change, follow-up jobs and
journal lines, which the worker writes in one transaction. A handler raises to fail the job; the worker
decides between retry and dead letter from the exception (`NotYet` is "look again", not a failure).

- send: asyncsend_v2 with the notice's stored message (byte-identical on every retry); `mobile:` / `unionid:`
  recipients are resolved first (bridge.resolve; unknown ones are recorded and skipped, the rest are sent to);
  the task_id is stored the moment DingTalk returns it, and a check job is scheduled.
- check: getsendprogress until done (bounded, backing off), then getsendresult; the delivery result is
  stored on the notice and recipients not reached are logged and counted.
- update: status_bar/update; past the 7-day window the update is recorded as expired, not retried.
- recall: recall; past the 24-hour window (or when DingTalk refuses it as too old) the status bar is set
  to the revoked label instead, and the notice says why.

Orphaned cards: when a send reached DingTalk but its answer was lost (a crash, a timeout), the retry is
filtered as duplicate content (143106) and its task_id reaches nobody; the card the recipients hold is
the first attempt's, whose task_id bridge never learnt. `check` marks such a notice orphaned. With
`[worker] on_orphaned = "resend_distinct"` the next status change of an orphaned notice (an update, or a
recall, which cannot remove the unknown card) sends a new card instead: the stored message with the new
status bar, distinct content, so DingTalk delivers it; its task_id replaces the orphaned one. If the
status already changed before the check found the orphan, the check schedules that update at once.
See docs/design.md (orphaned cards) for why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import structlog

from bridge import errors, logs
from bridge.clock import Clock
from bridge.config import DEFAULT_APP, DingTalkConfig, WorkerConfig
from bridge.decide import lock_key
from bridge.dingtalk.wire import DUPLICATE_CONTENT_CODES, RECALL_REFUSED, SendProgress, SendResult
from bridge.records import Job, JobKind, NewJob, NewJournal, Notice, NoticeChange, NoticeState, OrphanPolicy
from bridge.resolve import Resolved, Resolver

__all__ = ["HANDLERS", "DingTalk", "Finish", "Handler", "JobContext", "NotReachedHook", "NotYet", "describe",
           "failure_data", "journal"]

log = logs.get_logger("bridge.worker")


class DingTalk(Protocol):
    """The part of `bridge.dingtalk.Client` the handlers use (the fake client satisfies it too)."""

    async def send(self, msg: Mapping[str, Any], *, userids: Sequence[str] = ...) -> int: ...
    async def get_send_progress(self, task_id: int) -> SendProgress: ...
    async def get_send_result(self, task_id: int) -> SendResult: ...
    async def update_status_bar(self, task_id: int, status_value: str, status_bg: str | None = None) -> None: ...
    async def recall(self, task_id: int) -> None: ...
    async def userid_by_mobile(self, mobile: str) -> str: ...
    async def userid_by_unionid(self, unionid: str) -> str: ...


class NotReachedHook(Protocol):
    """The metrics hooks a handler calls: recipients a send did not reach, by reason; a send found orphaned."""

    def recipients_not_reached(self, reason: str, count: int) -> None: ...

    def notice_orphaned(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Finish:
    """How a handled job ends; the worker writes all of it with the job's completion."""

    outcome: str = "ok"  # ok | skipped | expired | fallback | gave_up
    notice: NoticeChange | None = None
    new_jobs: tuple[NewJob, ...] = ()
    journal: tuple[NewJournal, ...] = ()


class NotYet(errors.TransientDingTalkError):
    """The send is still in progress; look again later."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What the handlers need besides the job: the client, the clock, DingTalk's windows and the check pacing."""

    client: DingTalk
    clock: Clock
    dingtalk: DingTalkConfig
    worker: WorkerConfig
    observer: NotReachedHook
    resolver: Resolver | None = None  # turns mobile:/unionid: recipients into userids (None: sends them as given)
    app: str = DEFAULT_APP  # the DingTalk app `client` belongs to: stored on the notice at its send


Handler = Callable[[JobContext, Job, Notice], Awaitable[Finish]]


def describe(exc: BaseException) -> str:
    """An exception as a journal or log line names it: its message, else its class."""
    return str(exc) or type(exc).__name__


def failure_data(exc: Exception) -> dict[str, Any]:
    """What a journal line keeps about a failure, so the console can count DingTalk errors by code and app
    from the store (right for a fleet of workers): the most specific code, the exception's class and the app
    `_execute` bound for the job (absent when the job failed before its app was known)."""
    data: dict[str, Any] = {"error": type(exc).__name__}
    if isinstance(exc, errors.DingTalkError):
        data["code"] = exc.code
    if app := structlog.contextvars.get_contextvars().get("app"):
        data["app"] = str(app)
    return data


def journal(job: Job, kind: str, message: str, *, task_id: int | None = None, **data: Any) -> NewJournal:
    """A journal line about `job`, carrying its ids so the approval view can show it in place."""
    return NewJournal(kind=kind, message=message, source=job.source, approval_id=job.approval_id,
                      event_id=job.event_id, job_id=job.id, task_id=task_id, data=data)


async def send(cx: JobContext, job: Job, notice: Notice) -> Finish:
    """Send the stored card; a notice that already has a task_id was sent before a crash: skip it."""
    if notice.task_id is not None:
        return Finish(outcome="skipped")
    userids, record, lines = notice.userids, None, []
    if cx.resolver is not None and Resolver.needed(notice.userids):
        found = await cx.resolver.resolve(notice.userids)
        userids, record = found.userids, _recipients_record(found)
        if found.unknown:
            cx.observer.recipients_not_reached("unresolved", len(found.unknown))
            lines.append(journal(job, "dingtalk.recipients_unresolved", "not sent to " + "; ".join(
                f"{k}: {why}" for k, why in found.unknown.items())))
        if not userids:
            why = "not sent: none of its recipients is known to DingTalk (see unresolved_recipients)"
            return Finish(outcome="unresolved", notice=NoticeChange(notice_id=notice.id, delivery=record, note=why),
                          journal=tuple(lines))
    task_id = await cx.client.send(notice.msg, userids=userids)
    now = cx.clock.now()
    structlog.contextvars.bind_contextvars(task_id=task_id)
    log.info("dingtalk.sent", userids=len(userids), status_value=notice.status_value)
    check = NewJob(
        kind=JobKind.CHECK, lock_key=None, notice_id=notice.id, payload={"task_id": task_id},
        run_at=now + timedelta(seconds=cx.worker.check_delay_s), event_id=job.event_id,
    )
    return Finish(
        notice=NoticeChange(notice_id=notice.id, state=NoticeState.SENT, task_id=task_id, sent_at=now,
                            delivery=record, app=cx.app),
        new_jobs=(check,),
        journal=(*lines, journal(job, "dingtalk.sent", f"card sent to {','.join(userids)} "
                                 f"({notice.status_value}), task_id {task_id}", task_id=task_id)),
    )


async def update(cx: JobContext, job: Job, notice: Notice) -> Finish:
    """Turn the card's status bar to the payload's label and colour."""
    value, bg = job.payload["status_value"], job.payload.get("status_bg")
    if _resends(cx, notice):
        return await _resend_distinct(cx, job, notice, value, bg)
    return await _set_status_bar(cx, job, notice, value, bg, note=None)


async def recall(cx: JobContext, job: Job, notice: Notice) -> Finish:
    """Recall the card; when DingTalk no longer can (window passed, or it refuses), grey its status bar instead."""
    if notice.state == NoticeState.RECALLED:
        return Finish(outcome="skipped")
    if _never_sendable(notice):
        return _skip_unsent(job)
    value, bg = job.payload["fallback_status_value"], job.payload.get("fallback_status_bg")
    if _resends(cx, notice):  # recalling the orphaned task would leave the card they hold: tell them instead
        return await _resend_distinct(cx, job, notice, value, bg)
    task_id = _sent_task_id(notice)
    now = cx.clock.now()
    age = _age_s(cx, notice)
    window = cx.dingtalk.recall_window_s
    if age > window:
        why = (f"not recalled: the card was sent {_human(age)} ago, past DingTalk's "
               f"{_human(window)} recall window; status bar set to {value} instead")
        log.warning("dingtalk.recall_fallback", age_s=int(age))
        return await _set_status_bar(cx, job, notice, value, bg, note=why)
    try:
        await cx.client.recall(task_id)
    except errors.PermanentDingTalkError as exc:
        if exc.errcode != RECALL_REFUSED:
            raise
        why = f"DingTalk refused the recall ({exc.errcode}: {exc.errmsg}); status bar set to {value} instead"
        log.warning("dingtalk.recall_fallback", errcode=exc.errcode)
        return await _set_status_bar(cx, job, notice, value, bg, note=why)
    log.info("dingtalk.recalled")
    return Finish(
        notice=NoticeChange(notice_id=notice.id, state=NoticeState.RECALLED, recalled_at=now),
        journal=(journal(job, "dingtalk.recalled", f"card recalled (task_id {task_id})", task_id=task_id),),
    )


async def check(cx: JobContext, job: Job, notice: Notice) -> Finish:
    """Poll the send's progress (raising `NotYet` while it runs), then store who it reached and who not."""
    task_id = int(job.payload["task_id"])
    structlog.contextvars.bind_contextvars(task_id=task_id)
    progress = await cx.client.get_send_progress(task_id)
    if not progress.done:
        if job.attempts >= cx.worker.check_max_attempts:
            why = f"send still in progress after {job.attempts} checks ({progress.percent}%): gave up checking"
            log.warning("dingtalk.check_gave_up", percent=progress.percent)
            return Finish(outcome="gave_up", notice=NoticeChange(notice_id=notice.id, note=why))
        raise NotYet(f"send in progress ({progress.percent}%)")
    result = await cx.client.get_send_result(task_id)
    _count_not_reached(cx.observer, result)
    lines: list[NewJournal] = []
    if result.not_reached:
        forbidden = {e.userid: e.code for e in result.forbidden_list}
        log.warning("dingtalk.recipients_not_reached", invalid=list(result.invalid_user_id_list),
                    forbidden=forbidden, failed=list(result.failed_user_id_list))
        lines.append(journal(job, "dingtalk.recipients_not_reached",
                             f"not reached: invalid={list(result.invalid_user_id_list)} "
                             f"forbidden={forbidden} failed={list(result.failed_user_id_list)}", task_id=task_id))
    else:
        log.info("dingtalk.delivered", read=len(result.read_user_id_list), unread=len(result.unread_user_id_list))
    delivery = {**result.to_dict(), **{k: v for k, v in (notice.delivery or {}).items() if k in _RECIPIENT_KEYS}}
    change = NoticeChange(notice_id=notice.id, delivery=delivery, note=_duplicates_note(result))
    if not _duplicates(result.to_dict()):
        return Finish(notice=change, journal=tuple(lines))
    return _orphaned(cx, job, notice, task_id, change, lines)


HANDLERS: Mapping[JobKind, Handler] = {
    JobKind.SEND: send,
    JobKind.UPDATE: update,
    JobKind.RECALL: recall,
    JobKind.CHECK: check,
}


async def _set_status_bar(cx: JobContext, job: Job, notice: Notice, value: str, bg: str | None,
                          note: str | None) -> Finish:
    """The status bar update shared by `update` and the recall fallback (`note` says why it stands in)."""
    if notice.state == NoticeState.RECALLED:
        return Finish(outcome="skipped", journal=(journal(
            job, "job.skipped", "card already recalled: nothing to update", task_id=notice.task_id),))
    if _never_sendable(notice):
        return _skip_unsent(job)
    task_id = _sent_task_id(notice)
    now = cx.clock.now()
    age = _age_s(cx, notice)
    window = cx.dingtalk.update_window_s
    if age > window:
        why = (f"status bar not updated to {value}: the card was sent {_human(age)} ago, past DingTalk's "
               f"{_human(window)} update window")
        log.warning("dingtalk.update_expired", age_s=int(age))
        return Finish(outcome="expired", notice=NoticeChange(notice_id=notice.id, note=why),
                      journal=(journal(job, "dingtalk.update_expired", why, task_id=task_id),))
    await cx.client.update_status_bar(task_id, value, bg)
    log.info("dingtalk.status_bar_updated", status_value=value, status_bg=bg)
    return Finish(
        outcome="fallback" if note else "ok",
        notice=NoticeChange(notice_id=notice.id, status_value=value, status_bg=bg, updated_at=now, note=note),
        journal=(journal(job, "dingtalk.status_bar_updated", note or f"status bar → {value} ({bg})",
                         task_id=task_id),),
    )


_RECIPIENT_KEYS = ("resolved_recipients", "unresolved_recipients")


def _recipients_record(found: Resolved) -> dict[str, Any]:
    """What the send learnt about its mobile:/unionid: recipients, kept in the notice's delivery record."""
    return {"resolved_recipients": dict(found.resolved), "unresolved_recipients": dict(found.unknown)}


def _never_sendable(notice: Notice) -> bool:
    """A card whose send found none of its recipients in DingTalk's directory: there is nothing to update."""
    return notice.task_id is None and bool((notice.delivery or {}).get("unresolved_recipients"))


def _skip_unsent(job: Job) -> Finish:
    return Finish(outcome="skipped", journal=(journal(
        job, "job.skipped", f"{job.kind}: the card was never sent (no recipient resolved): nothing to change"),))


def _sent_task_id(notice: Notice) -> int:
    """The task_id to act on, bound to the log context; a notice without one was never sent (a bug upstream:
    the lock key runs a card's send before its update or recall)."""
    if notice.task_id is None:
        raise errors.BridgeError(f"notice {notice.id} has no task_id: its send has not happened")
    structlog.contextvars.bind_contextvars(task_id=notice.task_id)
    return notice.task_id


def _age_s(cx: JobContext, notice: Notice) -> float:
    return (cx.clock.now() - notice.sent_at).total_seconds() if notice.sent_at else 0.0


def _count_not_reached(observer: NotReachedHook, result: SendResult) -> None:
    observer.recipients_not_reached("invalid", len(result.invalid_user_id_list))
    observer.recipients_not_reached("failed", len(result.failed_user_id_list))
    for entry in result.forbidden_list:
        observer.recipients_not_reached(f"forbidden:{entry.code}", 1)


def _duplicates_note(result: SendResult) -> str | None:
    """Why some recipients will never see this task's status bar: DingTalk dropped them as duplicate content."""
    duplicates = [e.userid for e in result.forbidden_list if e.code in DUPLICATE_CONTENT_CODES]
    if not duplicates:
        return None
    return (f"DingTalk filtered {len(duplicates)} recipient(s) as duplicate content ({', '.join(duplicates)}):"
            " they already got identical content today, e.g. from an earlier attempt of this send whose"
            " answer was lost in a crash; this task's status bar will not reach them")


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


# --- orphaned cards -----------------------------------------------------------------------------------------
def _duplicates(delivery: Mapping[str, Any] | None) -> list[str]:
    """Recipients DingTalk filtered as duplicate content, from a stored getsendresult."""
    entries = (delivery or {}).get("forbidden_list") or ()
    return [str(e["userid"]) for e in entries if str(e.get("code")) in DUPLICATE_CONTENT_CODES]


def _sent_status(notice: Notice) -> str | None:
    """The status bar the notice's stored message carried when it was sent."""
    bar = (notice.msg.get("oa") or {}).get("status_bar") or {}
    value = bar.get("status_value")
    return str(value) if value is not None else None


def _resends(cx: JobContext, notice: Notice) -> bool:
    return notice.orphaned_at is not None and cx.worker.on_orphaned == OrphanPolicy.RESEND_DISTINCT


def _orphaned(cx: JobContext, job: Job, notice: Notice, task_id: int, change: NoticeChange,
              lines: list[NewJournal]) -> Finish:
    """Mark the notice orphaned; if its status moved on since the send, bring the resend forward."""
    now = cx.clock.now()
    cx.observer.notice_orphaned()
    log.warning("notice.orphaned", policy=cx.worker.on_orphaned)
    lines.append(journal(job, "notice.orphaned",
                         f"orphaned: DingTalk filtered this send as duplicate content, so task_id {task_id} reaches "
                         f"nobody (an earlier attempt's answer was lost); policy {cx.worker.on_orphaned}",
                         task_id=task_id))
    follow: tuple[NewJob, ...] = ()
    moved = notice.status_value is not None and notice.status_value != _sent_status(notice)
    if moved and cx.worker.on_orphaned == OrphanPolicy.RESEND_DISTINCT and notice.state != NoticeState.RECALLED:
        follow = (NewJob(kind=JobKind.UPDATE, lock_key=lock_key(job.source, job.approval_id), notice_id=notice.id,
                         payload={"status_value": notice.status_value, "status_bg": notice.status_bg},
                         event_id=job.event_id),)
    return Finish(outcome="orphaned", notice=NoticeChange(
        notice_id=notice.id, delivery=change.delivery, note=change.note, orphaned_at=now), new_jobs=follow,
        journal=tuple(lines))


def distinct_msg(msg: Mapping[str, Any], value: str, bg: str | None) -> dict[str, Any]:
    """The stored card with the new status bar: other content than the filtered card, so it is delivered."""
    oa = dict(msg.get("oa") or {})
    oa["status_bar"] = {"status_value": value, **({"status_bg": bg} if bg else {})}
    return {**msg, "oa": oa}


async def _resend_distinct(cx: JobContext, job: Job, notice: Notice, value: str, bg: str | None) -> Finish:
    """Send the card again, with the new status, to the recipients the orphaned send never reached."""
    userids = _duplicates(notice.delivery) or list(notice.userids)
    task_id = await cx.client.send(distinct_msg(notice.msg, value, bg), userids=userids)
    now = cx.clock.now()
    structlog.contextvars.bind_contextvars(task_id=task_id)
    log.warning("notice.resent", userids=len(userids), status_value=value)
    check_job = NewJob(kind=JobKind.CHECK, lock_key=None, notice_id=notice.id, payload={"task_id": task_id},
                       run_at=now + timedelta(seconds=cx.worker.check_delay_s), event_id=job.event_id)
    return Finish(
        outcome="resent",
        notice=NoticeChange(notice_id=notice.id, task_id=task_id, status_value=value, status_bg=bg, sent_at=now,
                            updated_at=now, clear_orphaned=True, app=cx.app,
                            note=f"orphaned card resent as a new card ({value}), task_id {task_id}"),
        new_jobs=(check_job,),
        journal=(journal(job, "notice.resent", f"orphaned card: sent a new, distinct card ({value}) to "
                         f"{','.join(userids)}, task_id {task_id}; the one they hold cannot be updated",
                         task_id=task_id),),
    )
