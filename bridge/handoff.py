"""The hand-off from a decision to the running worker: the jobs a decision claims for the worker's free slots.

A decision that creates jobs due now (a new card's send, a status bar update) claims them in its own write
(`Store.apply_decision_and_claim`) when the running worker has free slots, and the worker starts them at once
with the notices that write returned: on PostgreSQL that saves the claim_jobs and notices_for round trips of the
idle 202 → DingTalk path (docs/performance.md). Meanwhile the calls' rate slots are reserved ahead
(`Client.prefetch`), so that round trip overlaps the decision's. `Handoff` is the worker's side of
`bridge.service.JobTaker`, as a base class of `bridge.worker.Worker`, which owns the state it reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from bridge import errors, store
from bridge.config import Config
from bridge.dingtalk.apps import AppClients
from bridge.dingtalk.wire import SEND, STATUS_BAR
from bridge.records import JobKind

__all__ = ["Handoff", "Prefetching"]

_CALLS: Mapping[str, str] = {JobKind.SEND: SEND, JobKind.UPDATE: STATUS_BAR}  # the call a due job starts with


@runtime_checkable
class Prefetching(Protocol):
    """A DingTalk client that can reserve a call's rate slot ahead (`bridge.dingtalk.Client.prefetch`)."""

    def prefetch(self, call: str) -> None: ...


class Handoff:
    """`reserve` and `take` (bridge.service.JobTaker) over the worker's slots."""

    cfg: Config
    clients: AppClients[Any]
    _tasks: dict[int, asyncio.Task[None]]
    _stopping: bool
    _reserved: int  # slots granted to decisions whose write is in flight

    def _start(self, jobs: list[store.Job], stats: Any, notices: Mapping[int, store.Notice] | None = None) -> int:
        raise NotImplementedError  # Worker: one task per job

    def _handed_stats(self) -> Any:
        raise NotImplementedError  # Worker: the running pass's RunStats

    def _free(self) -> int:
        """Slots neither running a job nor granted to a decision in flight."""
        return self.cfg.worker.concurrency - len(self._tasks) - self._reserved

    def reserve(self, decision: store.Decision) -> int:
        """Free slots for a decision to claim its due jobs into (none while stopping); their DingTalk calls' rate
        slots are reserved meanwhile, so that round trip overlaps the decision's write."""
        due = [job.kind for job in decision.jobs if job.run_at is None]
        granted = 0 if self._stopping or not due else max(0, min(len(due), self._free()))
        if granted and decision.approval is not None:
            self._prefetch(decision.approval.source, due)
        self._reserved += granted
        return granted

    def take(self, granted: int, applied: store.Applied | None) -> None:
        """A decision's write is done: its reserved slots are free again, and the jobs it claimed start now."""
        self._reserved -= granted
        if applied is not None and applied.claimed:
            self._start(list(applied.claimed), self._handed_stats(), applied.notices)

    def _prefetch(self, source: str, kinds: list[str]) -> None:
        try:
            client = self.clients.get(self.clients.app_of_source(source))
        except errors.BridgeError:
            return  # no app for the source: the job fails and says so
        if isinstance(client, Prefetching):
            for call in {_CALLS[k] for k in kinds if k in _CALLS}:
                client.prefetch(call)
