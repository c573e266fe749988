"""The worker against a fake DingTalk client and the in-memory store, on a fake clock."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge import errors, store, worker
from bridge.clock import FakeClock
from bridge.dingtalk import client as dingtalk
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.retry import RetryPolicy
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config


class Counting(worker.JobObserver):
    def __init__(self) -> None:
        self.retried: list[str] = []
        self.dead: list[str] = []
        self.not_reached: dict[str, int] = {}

    def job_retried(self, kind: str) -> None:
        self.retried.append(kind)

    def job_dead(self, kind: str) -> None:
        self.dead.append(kind)

    def recipients_not_reached(self, reason: str, count: int) -> None:
        if count:
            self.not_reached[reason] = self.not_reached.get(reason, 0) + count


@pytest.fixture
async def env(clock: FakeClock):
    st = MemoryStore()
    await st.open()
    fake = FakeDingTalk()
    cfg = make_config()
    obs = Counting()
    w = worker.Worker(st, fake, cfg, clock, policy=RetryPolicy(1.0, 60.0, 4, rng=random.Random(7)), observer=obs)
    yield st, fake, w, clock, obs
    await st.close()


async def put(st: MemoryStore, clock: FakeClock, *events) -> None:
    for ev in events:
        await st.add_event(ev, b"{}", clock.now())


async def test_send_stores_task_ids_then_checks_delivery(env) -> None:
    st, fake, w, clock, _ = env
    await put(st, clock, event(Status.PENDING, n=7))
    stats = await w.run(burst=True)
    assert stats.events == 1
    sends = fake.named("send")
    assert [c.args["userids"] for c in sends] == [
        ("user01", "user02", "user03", "user04", "user05"), ("user06", "user07")]
    notices = await st.notices_for("erp", "PO-1")
    assert [n.task_id for n in notices] == [900_000_000_001, 900_000_000_002]
    assert all(n.state == "sent" and n.sent_at == clock.now() for n in notices)
    assert fake.named("getsendprogress") == []  # checks are due check_delay_s later
    clock.advance(2.0)
    await w.run(burst=True)
    assert len(fake.named("getsendresult")) == 2
    assert all(n.delivery is not None for n in await st.notices_for("erp", "PO-1"))


async def test_update_waits_for_the_send_that_creates_its_task_id(env) -> None:
    st, fake, w, clock, _ = env
    fake.fail_next("send", errors.DingTalkServerError(call="asyncsend_v2", errcode=-1))
    await put(st, clock, event(Status.PENDING, n=1), event(Status.APPROVED, minutes=1, card=False))
    await w.run(burst=True)
    assert [c.name for c in fake.calls] == ["send"]  # failed; the update must not run before it
    clock.advance(120)
    await w.run(burst=True)
    names = [c.name for c in fake.calls if c.name in ("send", "status_bar_update")]
    assert names == ["send", "send", "status_bar_update"]
    update = fake.named("status_bar_update")[0]
    assert update.args == {"task_id": 900_000_000_001, "status_value": "已同意", "status_bg": "0xFF78C06E"}


async def test_retried_send_is_byte_identical(env) -> None:
    st, fake, w, clock, obs = env
    fake.fail_next("send", errors.DingTalkNetworkError(call="asyncsend_v2"),
                   errors.DingTalkThrottled(call="asyncsend_v2", errcode=88, sub_code="90018", retry_after=1.0))
    await put(st, clock, event(Status.PENDING, n=2))
    for _ in range(3):
        await w.run(burst=True)
        clock.advance(120)
    sends = fake.named("send")
    assert len(sends) == 3 and sends[0].args == sends[1].args == sends[2].args
    assert obs.retried == ["send", "send"]


async def test_permanent_error_goes_dead_and_blocks_until_retried(env) -> None:
    st, fake, w, clock, obs = env
    fake.fail_next("send", errors.PermanentDingTalkError(call="asyncsend_v2", errcode=40035, errmsg="不合法的参数"))
    await put(st, clock, event(Status.PENDING, n=1), event(Status.APPROVED, minutes=1, card=False))
    await w.run(burst=True)
    dead = await st.list_jobs(store.JobState.DEAD)
    assert [j.kind for j in dead] == ["send"] and "40035" in (dead[0].last_error or "")
    assert obs.dead == ["send"]
    # a later event is still recorded, but its update waits behind the dead send
    await put(st, clock, event(Status.REVOKED, minutes=2, card=False))
    clock.advance(3600)
    await w.run(burst=True)
    assert fake.named("status_bar_update") == []
    assert (await st.get_approval("erp", "PO-1")).status == "revoked"
    assert await st.retry_dead(clock.now(), dead[0].id) == 1
    await w.run(burst=True)
    assert [c.args["status_value"] for c in fake.named("status_bar_update")] == ["已同意", "已撤销"]


async def test_exhausted_retries_go_dead(env) -> None:
    st, fake, w, clock, obs = env
    fake.fail_next("send", *[errors.DingTalkServerError(call="asyncsend_v2", http_status=502)] * 4)
    await put(st, clock, event(Status.PENDING, n=1))
    for _ in range(6):
        await w.run(burst=True)
        clock.advance(120)
    assert len(fake.named("send")) == 4
    [dead] = await st.list_jobs(store.JobState.DEAD)
    assert dead.attempts == 4
    assert obs.retried == ["send"] * 3 and obs.dead == ["send"]


async def test_recall_past_24h_falls_back_to_grey_status_bar(env) -> None:
    st, fake, w, clock, _ = env
    await put(st, clock, event(Status.PENDING, n=1))
    await w.run(burst=True)
    clock.advance(25 * 3600)
    await put(st, clock, event(Status.DELETED, minutes=1, card=False))
    await w.run(burst=True)
    assert fake.named("recall") == []
    [update] = fake.named("status_bar_update")
    assert update.args["status_value"] == "已撤销" and update.args["status_bg"] == "0xFF858E99"
    [notice] = await st.notices_for("erp", "PO-1")
    assert "recall window" in (notice.note or "") and notice.status_value == "已撤销"


async def test_recall_refused_by_dingtalk_falls_back(env) -> None:
    st, fake, w, clock, _ = env
    await put(st, clock, event(Status.PENDING, n=1))
    await w.run(burst=True)
    fake.fail_next("recall", errors.PermanentDingTalkError(call="recall", errcode=400002,
                                                           errmsg="agentId不合法或taskId不合法"))
    await put(st, clock, event(Status.DELETED, minutes=1, card=False))
    await w.run(burst=True)
    assert len(fake.named("recall")) == 1 and len(fake.named("status_bar_update")) == 1
    assert await st.list_jobs(store.JobState.DEAD) == []


async def test_recall_within_window(env) -> None:
    st, fake, w, clock, _ = env
    await put(st, clock, event(Status.PENDING, n=1))
    await w.run(burst=True)
    await put(st, clock, event(Status.DELETED, minutes=1, card=False))
    await w.run(burst=True)
    assert [c.args["task_id"] for c in fake.named("recall")] == [900_000_000_001]
    [notice] = await st.notices_for("erp", "PO-1")
    assert notice.state == "recalled" and notice.recalled_at == clock.now()


async def test_update_past_7_days_is_recorded_as_expired(env) -> None:
    st, fake, w, clock, _ = env
    await put(st, clock, event(Status.PENDING, n=1))
    await w.run(burst=True)
    clock.advance(8 * 86400)
    await put(st, clock, event(Status.APPROVED, minutes=1, card=False))
    await w.run(burst=True)
    assert fake.named("status_bar_update") == []
    [update] = [j for j in await st.jobs_for("erp", "PO-1") if j.kind == store.JobKind.UPDATE]
    assert update.state == store.JobState.DONE and update.outcome == "expired"
    [notice] = await st.notices_for("erp", "PO-1")
    assert "update window" in (notice.note or "")


async def test_recipients_not_reached_are_stored_and_counted(env) -> None:
    st, fake, w, clock, obs = env
    fake.results[900_000_000_001] = dingtalk.SendResult(
        invalid_user_id_list=("user01",), unread_user_id_list=("user02",),
        forbidden_list=(dingtalk.ForbiddenEntry(code="143106", count=1, userid="user03"),),
        forbidden_user_id_list=("user03",),
    )
    await put(st, clock, event(Status.PENDING, n=3))
    await w.run(burst=True)
    clock.advance(5)
    await w.run(burst=True)
    [notice] = await st.notices_for("erp", "PO-1")
    assert notice.delivery is not None
    assert notice.delivery["invalid_user_id_list"] == ["user01"]
    assert "duplicate content (user03)" in (notice.note or "")
    assert obs.not_reached == {"invalid": 1, "forbidden:143106": 1}


async def test_progress_checks_back_off_and_give_up(env) -> None:
    st, fake, w, clock, _ = env
    fake.progress_status = 1
    await put(st, clock, event(Status.PENDING, n=1))
    await w.run(burst=True)
    for _ in range(6):
        clock.advance(60)
        await w.run(burst=True)
    assert len(fake.named("getsendprogress")) == 3  # check_max_attempts
    assert fake.named("getsendresult") == []
    [check] = [j for j in await st.jobs_for("erp", "PO-1") if j.kind == store.JobKind.CHECK]
    assert check.state == store.JobState.DONE and check.outcome == "gave_up"


async def test_job_of_a_crashed_worker_comes_back_after_its_lease(env) -> None:
    st, fake, w, clock, _ = env
    await put(st, clock, event(Status.PENDING, n=1))
    await w.decider.process_pending()
    claimed = await st.claim_jobs(clock.now(), 60.0, 10)  # a worker that then dies
    assert [j.kind for j in claimed] == ["send"]
    await w.run(burst=True)
    assert fake.named("send") == []
    clock.advance(61)
    await w.run(burst=True)
    assert len(fake.named("send")) == 1


async def test_wake_and_stop(env, clock: FakeClock) -> None:
    import asyncio

    st, fake, w, clock, _ = env
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0)
    await put(st, clock, event(Status.PENDING, n=1))
    w.wake()
    for _ in range(100):
        if fake.named("send"):
            break
        await asyncio.sleep(0.01)
    assert len(fake.named("send")) == 1
    w.stop()
    await asyncio.wait_for(task, 5)
    assert not w.running


async def test_a_job_reclaimed_after_its_lease_while_still_running_here_is_not_started_twice(env) -> None:
    import asyncio

    st, fake, w, clock, _ = env
    release = asyncio.Event()
    original_send = fake.send

    async def slow_send(msg, **kw):
        await release.wait()
        return await original_send(msg, **kw)

    fake.send = slow_send  # type: ignore[method-assign]
    await put(st, clock, event(Status.PENDING, n=1))
    await w.decider.process_pending()
    stats = worker.RunStats()
    assert await w._claim_and_start(stats) == 1
    await asyncio.sleep(0)
    clock.advance(w.cfg.worker.lease_s + 1)  # the call outlives its lease
    await w._claim_and_start(stats)  # the store hands the job out again...
    assert len(w._tasks) == 1  # ...but this process is already on it
    release.set()
    await asyncio.gather(*w._tasks.values())
    assert len(fake.named("send")) == 1


async def test_an_unexpected_error_in_one_loop_iteration_does_not_stop_the_worker(env) -> None:
    import asyncio

    st, fake, w, clock, _ = env
    real = w.decider.process_pending
    calls = {"n": 0}

    async def flaky(limit: int = 200):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("Connection closed")  # e.g. a read racing a reconnect
        return await real(limit)

    w.decider.process_pending = flaky  # type: ignore[method-assign]
    w.cfg = replace(w.cfg, worker=replace(w.cfg.worker, poll_interval_s=0.01))
    await put(st, clock, event(Status.PENDING, n=1))
    task = asyncio.create_task(w.run())
    for _ in range(200):
        if fake.named("send"):
            break
        await asyncio.sleep(0.01)
    w.stop()
    await asyncio.wait_for(task, 5)
    assert calls["n"] >= 2 and len(fake.named("send")) == 1


async def test_the_heartbeat_extends_the_leases_of_running_jobs(env) -> None:
    import asyncio

    st, fake, w, clock, _ = env
    release = asyncio.Event()
    original_send = fake.send

    async def slow_send(msg, **kw):
        await release.wait()
        return await original_send(msg, **kw)

    fake.send = slow_send  # type: ignore[method-assign]
    await put(st, clock, event(Status.PENDING, n=1))
    await w.decider.process_pending()
    assert await w.beat() == 0  # nothing running: nothing to extend
    assert await w._claim_and_start(worker.RunStats()) == 1
    [job_id] = list(w._tasks)
    clock.advance(w.cfg.worker.lease_s * 0.9)
    assert await w.beat() == 1
    job = await st.get_job(job_id)
    assert job is not None and job.lease_until == clock.now() + timedelta(seconds=w.cfg.worker.lease_s)
    clock.advance(w.cfg.worker.lease_s * 0.5)  # past the first lease, within the extended one
    assert await st.claim_jobs(clock.now(), w.cfg.worker.lease_s, 10) == []
    release.set()
    await asyncio.gather(*w._tasks.values())


async def test_run_beats_every_third_of_a_lease(env) -> None:
    import asyncio

    st, fake, w, clock, _ = env
    release = asyncio.Event()
    original_send = fake.send

    async def slow_send(msg, **kw):
        await release.wait()
        return await original_send(msg, **kw)

    fake.send = slow_send  # type: ignore[method-assign]
    w.cfg = replace(w.cfg, worker=replace(w.cfg.worker, lease_s=0.03, poll_interval_s=0.01))
    await put(st, clock, event(Status.PENDING, n=1))
    task = asyncio.create_task(w.run())
    extended = None
    for _ in range(300):
        jobs = [j for j in st.jobs.values() if j.state == store.JobState.RUNNING]
        first_lease = jobs[0].created_at + timedelta(seconds=0.03) if jobs else None
        if jobs and first_lease is not None and jobs[0].lease_until is not None and jobs[0].lease_until > first_lease:
            extended = jobs[0]  # a heartbeat after the clock moved wrote a later lease than the claim's
            break
        if jobs:
            clock.advance(1.0)  # a later heartbeat writes a later lease
        await asyncio.sleep(0.01)
    release.set()
    w.stop()
    await asyncio.wait_for(task, 5)
    assert extended is not None and extended.attempts == 1  # extended, not claimed again


async def test_jobs_keep_being_claimed_while_the_decider_works_through_a_long_batch(env, clock: FakeClock) -> None:
    """A backlog of undecided events must not starve delivery: while the loop waits on a slow decision batch,
    each finished job claims the next one itself (one job at a time here, so the second send proves it)."""
    import asyncio

    from bridge import service

    st, fake, _, clock, _ = env
    cfg = make_config()
    cfg = replace(cfg, worker=replace(cfg.worker, concurrency=1))
    release = asyncio.Event()

    class SlowBatches(service.Decider):
        calls = 0

        async def process_pending(self, limit: int = 200) -> list[service.Processed]:
            SlowBatches.calls += 1
            out = await super().process_pending(limit)
            if SlowBatches.calls == 2:
                await release.wait()  # a long batch: the loop cannot claim until it returns
            return out

    w = worker.Worker(st, fake, cfg, clock, decider=SlowBatches(st, cfg, clock))
    await put(st, clock, event(Status.PENDING, n=1, approval_id="PO-1"), event(Status.PENDING, n=1, approval_id="PO-2"))
    task = asyncio.create_task(w.run())
    for _ in range(2000):  # event-loop turns, not time: the in-memory store never waits on anything
        if len(fake.named("send")) == 2:
            break
        await asyncio.sleep(0)
    sends = len(fake.named("send"))
    blocked = not release.is_set() and SlowBatches.calls == 2
    release.set()
    w.stop()
    await asyncio.wait_for(task, 5)
    assert blocked and sends == 2


async def test_a_decision_claims_its_send_for_the_running_worker(env) -> None:
    st, fake, w, clock, _ = env
    claims: list[list[str]] = []
    reads: list[str] = []
    real_claim, real_notices = st.claim_jobs, st.notices_for

    async def claim_jobs(now, lease_s, limit, kinds=None):
        jobs = await real_claim(now, lease_s, limit, kinds)
        claims.append([j.kind for j in jobs])
        return jobs

    async def notices_for(source, approval_id):
        reads.append(approval_id)
        return await real_notices(source, approval_id)

    st.claim_jobs, st.notices_for = claim_jobs, notices_for  # type: ignore[method-assign]
    await put(st, clock, event(Status.PENDING, n=1))
    stats = await w.run(burst=True)
    assert stats.events == 1 and stats.jobs == 1 and len(fake.named("send")) == 1
    assert all("send" not in kinds for kinds in claims)  # claimed by apply_decision_and_claim, not claim_jobs
    assert reads == []  # its notice came with the claim
    assert w._reserved == 0 and w.decider.taker is None  # every slot given back; no taker once stopped
    [send] = [j for j in await st.jobs_for("erp", "PO-1") if j.kind == store.JobKind.SEND]
    assert send.state == store.JobState.DONE and send.attempts == 1
