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
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from bridge import errors, store
from bridge.config import Config
from bridge.dingtalk.apps import AppClients
from bridge.dingtalk.wire import SEND, STATUS_BAR
from bridge.records import JobKind

__all__ = ["Handoff", "Prefetching"]

_CALLS: Mapping[str, str] = {JobKind.SEND: SEND, JobKind.UPDATE: STATUS_BAR}  # the call a due job starts with
# The kinds a process runs `[worker] calls_in_flight` at a time (Worker._exposed) and how many of one it holds
# at once: those in its gate and one ready behind them, so the gate never waits for a claim. More would only
# wait in the gate, in slots that the other kinds (other DingTalk endpoints, with their own rate budget) could use.
GATED: tuple[JobKind, ...] = (JobKind.SEND, JobKind.UPDATE)
GATED_READY = 1


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
    _kinds: dict[int, str]  # the kind of each running job, by id

    def _start(self, jobs: list[store.Job], stats: Any, notices: Mapping[int, store.Notice] | None = None) -> int:
        raise NotImplementedError  # Worker: one task per job

    def _handed_stats(self) -> Any:
        raise NotImplementedError  # Worker: the running pass's RunStats

    def _free(self) -> int:
        """Slots neither running a job nor granted to a decision in flight."""
        return self.cfg.worker.concurrency - len(self._tasks) - self._reserved

    def _kind_room(self, free: int) -> dict[str, int]:
        """How many jobs of each kind this process can start soon, within `free` slots (the claim by kind,
        `Store.claim_jobs`): of a gated kind, its calls in flight and GATED_READY more; of the others, every free
        slot. So a backlog of sends does not fill the slots with sends waiting for the send gate while updates
        and checks of other approvals wait behind them."""
        busy = Counter(self._kinds.values())
        ahead = self.cfg.worker.calls_in_flight + GATED_READY
        return {k.value: max(0, min(free, ahead - busy[k.value])) if k in GATED else max(0, free)
                for k in JobKind}

    def reserve(self, decision: store.Decision) -> int:
        """Free slots for a decision to claim its due jobs into (none while stopping), as many as of its due jobs'
        kinds can start soon (`_kind_room`); their DingTalk calls' rate slots are reserved meanwhile, so that
        round trip overlaps the decision's write."""
        free = self._free()
        room = self._kind_room(free)
        due = []
        for job in decision.jobs:
            if job.run_at is None and room.get(job.kind, 0) > 0:
                room[job.kind] -= 1
                due.append(job.kind)
        granted = 0 if self._stopping or not due else max(0, min(len(due), free))
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
