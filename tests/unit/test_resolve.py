"""Recipients by mobile number or unionid: parsing, the resolver's cache and TTLs, and the send job using it."""

from __future__ import annotations

import random

import pytest

from bridge import errors, recipients, worker
from bridge.clock import FakeClock
from bridge.config import DingTalkConfig
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status, parse_canonical
from bridge.resolve import Resolver
from bridge.retry import RetryPolicy
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config
from tests.unit.test_worker import Counting

DIRECTORY = {"mobile:13800138000": "manager01", "unionid:UN-2": "manager02", "mobile:13900139000": "manager01"}


def test_prefixed_recipients_parse_and_plain_userids_do_not() -> None:
    ref = recipients.parse("mobile:13800138000")
    assert ref is not None and ref.kind is recipients.RecipientKind.MOBILE and ref.value == "13800138000"
    assert recipients.parse("unionid:abc").kind is recipients.RecipientKind.UNIONID  # type: ignore[union-attr]
    assert recipients.parse("manager01") is None and recipients.parse("dept:3") is None
    assert recipients.problem("mobile:+86-13800138000") is None
    assert "phone number" in (recipients.problem("mobile:abc") or "")
    assert "unionid" in (recipients.problem("unionid:") or "")


def test_a_canonical_event_accepts_prefixed_recipients_and_names_a_bad_one() -> None:
    body = {"event_id": "e1", "approval_id": "PO-1", "status": "pending", "occurred_at": "2026-11-29T02:00:00Z",
            "title": "t", "url": "https://erp.example.com/1",
            "recipients": ["mobile:13800138000", "unionid:UN-2", "manager4"]}
    ev = parse_canonical("erp", body)
    assert ev.recipients == ("mobile:13800138000", "unionid:UN-2", "manager4")
    with pytest.raises(errors.EventInvalid) as bad:
        parse_canonical("erp", {**body, "recipients": ["mobile:not-a-number"]})
    assert "recipients[0]" in str(bad.value)


@pytest.fixture
async def resolver(clock: FakeClock):
    st = MemoryStore()
    fake = FakeDingTalk(directory=dict(DIRECTORY))
    cfg = DingTalkConfig(recipient_ttl_s=3600, unknown_recipient_ttl_s=60)
    return Resolver(st, fake, clock, cfg), st, fake


async def test_resolve_looks_up_once_then_uses_the_shared_cache_until_the_ttl_passes(resolver, clock) -> None:
    r, st, fake = resolver
    given = ["mobile:13800138000", "user9", "unionid:UN-2", "mobile:13900139000"]
    found = await r.resolve(given)
    assert found.userids == ("manager01", "user9", "manager02")  # two numbers of one person: sent once
    assert found.resolved == {"mobile:13800138000": "manager01", "unionid:UN-2": "manager02",
                              "mobile:13900139000": "manager01"}
    assert found.unknown == {} and found.looked_up == 3
    assert set(st.resolutions) == {"default/mobile:13800138000", "default/unionid:UN-2", "default/mobile:13900139000"}
    again = await r.resolve(given)
    assert again.userids == found.userids and again.looked_up == 0 and len(fake.calls) == 3
    clock.advance(3601)
    assert (await r.resolve(["mobile:13800138000"])).looked_up == 1


async def test_an_unknown_number_is_recorded_cached_briefly_and_does_not_block_the_others(resolver, clock) -> None:
    r, st, fake = resolver
    found = await r.resolve(["mobile:13000000000", "unionid:UN-2"])
    assert found.userids == ("manager02",)
    assert "60121" in found.unknown["mobile:13000000000"]
    assert st.resolutions["default/mobile:13000000000"].userid is None
    clock.advance(30)
    assert (await r.resolve(["mobile:13000000000"])).looked_up == 0
    clock.advance(31)  # past unknown_recipient_ttl_s: someone may have joined since
    fake.directory["mobile:13000000000"] = "newcomer"
    assert (await r.resolve(["mobile:13000000000"])).userids == ("newcomer",)


async def test_other_errors_fail_the_lookup_so_the_send_job_retries(resolver) -> None:
    r, st, fake = resolver
    fake.fail_next("getbymobile", errors.DingTalkThrottled(call="getbymobile", errcode=88, sub_code="90018"))
    with pytest.raises(errors.DingTalkThrottled):
        await r.resolve(["mobile:13800138000"])
    fake.fail_next("getbymobile", errors.PermanentDingTalkError(call="getbymobile", errcode=60011, errmsg="no perm"))
    with pytest.raises(errors.PermanentDingTalkError):
        await r.resolve(["mobile:13800138000"])
    assert st.resolutions == {}


async def test_unknown_codes_are_configurable(clock) -> None:
    fake = FakeDingTalk()
    fake.fail_next("getbyunionid", errors.PermanentDingTalkError(call="getbyunionid", errcode=33012, errmsg="x"))
    r = Resolver(MemoryStore(), fake, clock, DingTalkConfig(unknown_user_codes=(33012,)))
    assert "33012" in (await r.resolve(["unionid:zz"])).unknown["unionid:zz"]


# --- the send job --------------------------------------------------------------------------------------------
@pytest.fixture
async def env(clock: FakeClock):
    st = MemoryStore()
    fake = FakeDingTalk(directory=dict(DIRECTORY))
    obs = Counting()
    w = worker.Worker(st, fake, make_config(), clock, policy=RetryPolicy(1.0, 60.0, 4, rng=random.Random(7)),
                      observer=obs)
    return st, fake, w, clock, obs


async def test_the_send_resolves_records_and_skips_the_unknown_and_the_check_keeps_the_record(env) -> None:
    st, fake, w, clock, obs = env
    ev = event(Status.PENDING, recipients=("mobile:13800138000", "mobile:13000000000", "user7"))
    await st.add_event(ev, b"{}", clock.now())
    await w.run(burst=True)
    [send] = fake.named("send")
    assert send.args["userids"] == ("manager01", "user7")
    [n] = await st.notices_for("erp", "PO-1")
    assert n.state == "sent" and n.userids == ("mobile:13800138000", "mobile:13000000000", "user7")
    assert n.delivery is not None and n.delivery["resolved_recipients"] == {"mobile:13800138000": "manager01"}
    assert list(n.delivery["unresolved_recipients"]) == ["mobile:13000000000"]
    assert obs.not_reached == {"unresolved": 1}
    assert any(e.kind == "dingtalk.recipients_unresolved" and "mobile:13000000000" in e.message
               for e in await st.journal())
    clock.advance(5)
    await w.run(burst=True)
    [checked] = await st.notices_for("erp", "PO-1")
    assert checked.delivery is not None and "read_user_id_list" in checked.delivery
    assert list(checked.delivery["unresolved_recipients"]) == ["mobile:13000000000"]


async def test_a_card_whose_recipients_are_all_unknown_is_not_sent_and_its_updates_are_skipped(env) -> None:
    st, fake, w, clock, _ = env
    await st.add_event(event(Status.PENDING, recipients=("mobile:13000000000",)), b"{}", clock.now())
    await st.add_event(event(Status.APPROVED, minutes=1, card=False), b"{}", clock.now())
    await w.run(burst=True)
    assert fake.named("send") == [] and fake.named("status_bar_update") == []
    [n] = await st.notices_for("erp", "PO-1")
    assert n.task_id is None and n.note is not None and "none of its recipients" in n.note
    jobs = await st.jobs_for("erp", "PO-1")
    assert [(j.kind, j.state, j.outcome) for j in jobs] == [("send", "done", "unresolved"),
                                                           ("update", "done", "skipped")]


async def test_a_throttled_lookup_retries_the_send_and_a_cached_answer_needs_no_second_lookup(env) -> None:
    st, fake, w, clock, obs = env
    fake.fail_next("getbyunionid", errors.DingTalkThrottled(call="getbyunionid", errcode=88, sub_code="90018"))
    await st.add_event(event(Status.PENDING, recipients=("mobile:13800138000", "unionid:UN-2")), b"{}", clock.now())
    await w.run(burst=True)
    assert fake.named("send") == [] and obs.retried == ["send"]
    clock.advance(120)
    await w.run(burst=True)
    assert [c.args["userids"] for c in fake.named("send")] == [("manager01", "manager02")]
    assert len(fake.named("getbymobile")) == 1 and len(fake.named("getbyunionid")) == 2


def test_config_reads_the_resolution_settings() -> None:
    from bridge.config import from_dict
    from bridge.errors import ConfigError

    base = {"dingtalk": {"app_key": "k", "app_secret": "s", "agent_id": 1},
            "sources": [{"name": "erp", "signature": "none"}]}
    cfg = from_dict(base, env={})
    assert (cfg.dingtalk.recipient_ttl_s, cfg.dingtalk.unknown_user_codes) == (86400, (60121,))
    tuned = from_dict({**base, "dingtalk": {**base["dingtalk"], "recipient_ttl_s": 60,
                                            "unknown_user_codes": [60121, 33012]}}, env={})
    assert (tuned.dingtalk.recipient_ttl_s, tuned.dingtalk.unknown_user_codes) == (60, (60121, 33012))
    with pytest.raises(ConfigError, match="unknown_user_codes"):
        from_dict({**base, "dingtalk": {**base["dingtalk"], "unknown_user_codes": "60121"}}, env={})


async def test_the_cache_is_per_app_since_userids_are_per_org(clock) -> None:
    """One number is another userid in another org: a lookup through app hr never answers app sales."""
    st = MemoryStore()
    hr, sales = FakeDingTalk(directory={"mobile:13800138000": "hr-user"}), \
        FakeDingTalk(directory={"mobile:13800138000": "sales-user"})
    cfg = DingTalkConfig()
    assert (await Resolver(st, hr, clock, cfg, app="hr").resolve(["mobile:13800138000"])).userids == ("hr-user",)
    found = await Resolver(st, sales, clock, cfg, app="sales").resolve(["mobile:13800138000"])
    assert found.userids == ("sales-user",) and found.looked_up == 1
    assert set(st.resolutions) == {"hr/mobile:13800138000", "sales/mobile:13800138000"}
