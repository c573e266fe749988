"""Operator actions over HTTP, shared by the admin API (JSON) and the console (forms and redirects).

Each function reads the ids from the request's path, calls `bridge.operate`, wakes the worker and logs once;
what it cannot do it raises as `Refused` (status, code, message), which each face answers its own way
(`json_error` for the admin API, `console.auth.refuse` for the console). So both faces check a job id the
same way, name a missing approval the same way, and log the same event with `via` saying which face it was.
"""

from __future__ import annotations

from aiohttp import web

from bridge import events, logs, operate, store
from bridge.appkeys import CLOCK, CONFIG, STORE, WAKE
from bridge.records import JobState

log = logs.get_logger("bridge.operator")

MAX_JOB_ID = 2**63 - 1  # past a 64-bit integer the database cannot even look it up


class Refused(Exception):
    """An operator action refused: the HTTP status, a stable error code and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def job_id_of(raw: str) -> int | None:
    """A job id as written in a path or a form: a whole number from 1 to MAX_JOB_ID, else None."""
    job_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_JOB_ID)) else 0
    return job_id if 1 <= job_id <= MAX_JOB_ID else None


def _approval_key(request: web.Request) -> tuple[str, str]:
    return request.match_info["source"], request.match_info["approval_id"]


async def recall(request: web.Request, *, via: str) -> events.ApprovalEvent:
    """A manual recall of the approval in the path, stored as an operator's `deleted` event."""
    source, approval_id = _approval_key(request)
    try:
        event = await operate.request_recall(request.app[STORE], source, approval_id, request.app[CLOCK].now())
    except operate.NotFound as exc:
        raise Refused(404, "not_found", str(exc)) from None
    request.app[WAKE]()
    log.info("operator.recall_requested", source=source, approval_id=approval_id, event_id=event.event_id,
             via=via)
    return event


async def resync(request: web.Request, *, via: str) -> list[int]:
    """Re-apply the current status of the approval in the path to every card it has; the new job ids."""
    source, approval_id = _approval_key(request)
    try:
        ids = await operate.request_resync(request.app[CONFIG], request.app[STORE], source, approval_id,
                                           request.app[CLOCK].now())
    except operate.NotFound as exc:
        raise Refused(404, "not_found", str(exc)) from None
    request.app[WAKE]()
    log.info("operator.resync_requested", source=source, approval_id=approval_id, jobs=len(ids), via=via)
    return ids


async def retry_job(request: web.Request, *, by: str) -> tuple[store.Job, int]:
    """Put the dead job in the path back in the queue: the job and how many were revived (0 or 1)."""
    raw = request.match_info["job_id"]
    job_id = job_id_of(raw)
    if job_id is None:
        raise Refused(400, "bad_request", f"job id must be an integer between 1 and {MAX_JOB_ID}")
    st = request.app[STORE]
    job = await st.get_job(job_id)
    if job is None:
        raise Refused(404, "not_found", f"no job {job_id}")
    if job.state != JobState.DEAD:
        raise Refused(409, "not_dead", f"job {job_id} is {job.state}; only dead jobs can be retried")
    n = await operate.retry_dead(st, request.app[CLOCK].now(), job_id, by=by)
    request.app[WAKE]()
    return job, n
