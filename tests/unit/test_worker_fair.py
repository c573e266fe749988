"""The claim fair by kind, at the worker: a backlog of sends does not hold back the status-bar updates of other
approvals (the fake DingTalk's send endpoint is slow, its status-bar endpoint is not; the clock is a fake)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from bridge import store, worker
from bridge.clock import FakeClock
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config

SENDS, UPDATES = 50, 5


class SlowSends(FakeDingTalk):
    """A send endpoint that answers only when `flowing` is set (its rate budget used up, DingTalk slow)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def send(self, msg: Mapping[str, Any], *, userids: Sequence[str] = (), dept_ids: Sequence[int] = (),
                   to_all_user: bool = False) -> int:
        await self.flowing.wait()
        return await super().send(msg, userids=userids, dept_ids=dept_ids, to_all_user=to_all_user)


async def test_due_updates_start_while_a_backlog_of_sends_waits_on_dingtalk(clock: FakeClock) -> None:
    st = MemoryStore()
    await st.open()
    fake = SlowSends()
    cfg = make_config()  # [worker] concurrency = 4
    w = worker.Worker(st, fake, cfg, clock)
    try:
        for i in range(UPDATES):  # five cards already sent
            await st.add_event(event(Status.PENDING, n=1, approval_id=f"U-{i}"), b"{}", clock.now())
        await w.run(burst=True)
        assert len(fake.named("send")) == UPDATES
        fake.flowing.clear()
        # then 50 new approvals (older) and the five approvals' decisions (newer), decided before the worker runs:
        # 50 due sends and 5 due updates in the store, the sends first in (run_at, id) order (the first cards' delivery
        # checks are due later: the clock does not move)
        for i in range(SENDS):
            await st.add_event(event(Status.PENDING, n=1, approval_id=f"S-{i}"), b"{}", clock.now())
        for i in range(UPDATES):
            await st.add_event(event(Status.APPROVED, minutes=1, card=False, approval_id=f"U-{i}"), b"{}",
                               clock.now())
        await w.decider.process_pending()
        due = [j for j in st.jobs.values() if j.state == store.JobState.PENDING and j.run_at <= clock.now()]
        assert sorted(j.kind for j in due) == ["send"] * SENDS + ["update"] * UPDATES
        assert max(j.id for j in due if j.kind == "send") < min(j.id for j in due if j.kind == "update")

        running = asyncio.create_task(w.run())
        for _ in range(5000):  # event-loop turns, not time: the in-memory store and the fake never wait
            if len(fake.named("status_bar_update")) == UPDATES:
                break
            await asyncio.sleep(0)
        updated = len(fake.named("status_bar_update"))
        sent_meanwhile = len(fake.named("send")) - UPDATES
        held = {j.kind for j in st.jobs.values() if j.state == store.JobState.RUNNING}
        fake.flowing.set()
        w.stop()
        await asyncio.wait_for(running, 5)
    finally:
        await st.close()
    assert updated == UPDATES  # every update ran while the first send of the backlog was still waiting on DingTalk
    assert sent_meanwhile == 0 and held == {"send"}  # the sends had not drained: a few of them held, no more


def test_a_decision_claims_its_due_jobs_only_as_far_as_their_kinds_have_room(clock: FakeClock) -> None:
    """The hand-off (bridge.handoff.reserve): with two sends held (one in the send gate, one ready behind it),
    a new card's send is left for a later claim, while an update of another approval still gets its slot."""
    w = worker.Worker(MemoryStore(), FakeDingTalk(), make_config(), clock)
    w._kinds = {1: store.JobKind.SEND, 2: store.JobKind.SEND}
    w._tasks = dict.fromkeys(w._kinds, None)  # type: ignore[arg-type]  # two of the four slots taken

    def decision(kind: str) -> store.Decision:
        return store.Decision(inbox_id=1, outcome=store.Outcome.APPLIED, reason=None, from_status="new",
                              to_status="pending", approval=None, new_notices=[],
                              jobs=[store.NewJob(kind=kind, lock_key="erp:X", notice_id=1)])

    assert w.reserve(decision(store.JobKind.SEND)) == 0 and w._reserved == 0
    assert w.reserve(decision(store.JobKind.UPDATE)) == 1 and w._reserved == 1
    w.take(1, None)
    assert w._reserved == 0


class CountedSends(SlowSends):
    """SlowSends that counts the sends out at once (called, not answered yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = self.most_out = 0

    async def send(self, msg: Mapping[str, Any], *, userids: Sequence[str] = (), dept_ids: Sequence[int] = (),
                   to_all_user: bool = False) -> int:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            return await super().send(msg, userids=userids, dept_ids=dept_ids, to_all_user=to_all_user)
        finally:
            self.out -= 1


async def _most_sends_out(clock: FakeClock, calls_in_flight: int) -> tuple[int, int]:
    """10 due sends of 10 approvals, DingTalk not answering: how many are out at once, and how many jobs held."""
    st = MemoryStore()
    await st.open()
    fake = CountedSends()
    fake.flowing.clear()
    base = make_config()
    cfg = dataclasses.replace(base, worker=dataclasses.replace(base.worker, concurrency=8,
                                                              calls_in_flight=calls_in_flight))
    w = worker.Worker(st, fake, cfg, clock)
    try:
        for i in range(10):
            await st.add_event(event(Status.PENDING, n=1, approval_id=f"S-{i}"), b"{}", clock.now())
        await w.decider.process_pending()
        running = asyncio.create_task(w.run())
        for _ in range(2000):  # event-loop turns: nothing here waits on time
            await asyncio.sleep(0)
        held = sum(1 for j in st.jobs.values() if j.state == store.JobState.RUNNING)
        most = fake.most_out
        fake.flowing.set()
        w.stop()
        await asyncio.wait_for(running, 5)
        await w.run(burst=True)
        assert len(fake.named("send")) == 10  # all sent in the end
    finally:
        await st.close()
    return most, held


async def test_one_send_is_out_at_dingtalk_at_a_time_by_default(clock: FakeClock) -> None:
    assert await _most_sends_out(clock, 1) == (1, 2)  # one out, one ready behind it


async def test_calls_in_flight_lets_that_many_sends_out_at_once(clock: FakeClock) -> None:
    assert await _most_sends_out(clock, 3) == (3, 4)  # three out (a kill may repeat three), one ready
