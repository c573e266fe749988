"""bridge.dingtalk.tokens: one gettoken per app per expiry for several processes on one store (each "process"
here is a TokenRegistry of its own on one MemoryStore, on one FakeClock), waiters wait, a refused token is
replaced once fleet-wide, a crashed or failing refresher blocks nobody, and the row holds no secret."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bridge.clock import FakeClock
from bridge.dingtalk.tokens import POLL_MAX_S, TOKEN_LEASE_S, TokenRegistry, TokenSeal, app_key_hash
from bridge.errors import DingTalkNetworkError
from bridge.secret import Secret
from bridge.store.memory import MemoryStore

BASE, APP, SECRET = "http://dingtalk.test", "dingappkey", Secret("app-secret-0123456789")
KEY = app_key_hash(BASE, APP)


class GetToken:
    """A fake gettoken: counts calls, hands out TOKEN-1, TOKEN-2, … (each after one loop turn), can fail."""

    def __init__(self, lifetime_s: float = 7200.0) -> None:
        self.calls = 0
        self.lifetime_s = lifetime_s
        self.fail = False

    async def __call__(self) -> tuple[str, float]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.fail:
            raise DingTalkNetworkError("gettoken could not reach DingTalk", call="gettoken")
        return f"TOKEN-{self.calls}", self.lifetime_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def st() -> MemoryStore:
    return MemoryStore()



async def test_concurrent_callers_in_three_processes_share_one_gettoken(st: MemoryStore, clock: FakeClock) -> None:
    fetch = GetToken()
    entries = [TokenRegistry(st, owner=f"p{i}").entry(BASE, APP, SECRET, clock) for i in range(3)]
    got = await asyncio.gather(*(e.get(fetch) for e in entries for _ in range(5)))
    assert set(got) == {"TOKEN-1"} and fetch.calls == 1
    assert [e.fetched for e in entries].count(1) == 1


async def test_refresh_ten_minutes_before_expiry_is_one_gettoken_for_the_fleet(st: MemoryStore,
                                                                             clock: FakeClock) -> None:
    fetch = GetToken()
    a = TokenRegistry(st, owner="a").entry(BASE, APP, SECRET, clock)
    b = TokenRegistry(st, owner="b").entry(BASE, APP, SECRET, clock)
    assert await a.get(fetch) == await b.get(fetch) == "TOKEN-1"
    clock.advance(7200 - 600 - 1)
    assert await b.get(fetch) == "TOKEN-1" and fetch.calls == 1
    clock.advance(2)
    assert await asyncio.gather(a.get(fetch), b.get(fetch)) == ["TOKEN-2", "TOKEN-2"]
    assert fetch.calls == 2


async def test_a_short_lived_token_is_refreshed_at_half_its_lifetime(st: MemoryStore, clock: FakeClock) -> None:
    fetch = GetToken(lifetime_s=20)
    a = TokenRegistry(st, owner="a").entry(BASE, APP, SECRET, clock)
    b = TokenRegistry(st, owner="b").entry(BASE, APP, SECRET, clock)
    await a.get(fetch)
    clock.advance(9)
    assert await b.get(fetch) == "TOKEN-1"  # adopted from the row, refreshes at the same point as a
    clock.advance(1.5)
    assert await asyncio.gather(a.get(fetch), b.get(fetch)) == ["TOKEN-2", "TOKEN-2"] and fetch.calls == 2


async def test_a_refused_token_is_replaced_once_for_the_fleet(st: MemoryStore, clock: FakeClock) -> None:
    fetch = GetToken()
    a = TokenRegistry(st, owner="a").entry(BASE, APP, SECRET, clock)
    b = TokenRegistry(st, owner="b").entry(BASE, APP, SECRET, clock)
    assert await a.get(fetch) == await b.get(fetch) == "TOKEN-1"
    assert await a.get(fetch, stale="TOKEN-1") == "TOKEN-2"  # a saw 40014
    assert await b.get(fetch, stale="TOKEN-1") == "TOKEN-2"  # b saw it too: a's new token, no gettoken
    assert fetch.calls == 2
    assert await b.get(fetch, force=True) == "TOKEN-3" and await a.get(fetch, stale="TOKEN-2") == "TOKEN-3"
    assert fetch.calls == 3


async def test_a_crashed_refresher_blocks_the_others_only_until_its_lease_runs_out(st: MemoryStore,
                                                                                 clock: FakeClock) -> None:
    fetch = GetToken()
    assert await st.claim_token_refresh(KEY, "crashed", 0, clock.now(), TOKEN_LEASE_S)  # then killed -9
    b = TokenRegistry(st, owner="b").entry(BASE, APP, SECRET, clock)
    started = clock.monotonic()
    assert await b.get(fetch) == "TOKEN-1" and fetch.calls == 1
    waited = clock.monotonic() - started
    assert TOKEN_LEASE_S <= waited <= TOKEN_LEASE_S + POLL_MAX_S


async def test_a_failed_gettoken_releases_the_lease_and_raises_to_its_waiters(st: MemoryStore,
                                                                              clock: FakeClock) -> None:
    fetch = GetToken()
    fetch.fail = True
    a = TokenRegistry(st, owner="a").entry(BASE, APP, SECRET, clock)
    results = await asyncio.gather(a.get(fetch), a.get(fetch), return_exceptions=True)
    assert all(isinstance(r, DingTalkNetworkError) for r in results) and fetch.calls == 1
    assert a.failed_at is not None
    fetch.fail = False
    b = TokenRegistry(st, owner="b").entry(BASE, APP, SECRET, clock)
    started = clock.monotonic()
    assert await b.get(fetch) == "TOKEN-2"
    assert clock.monotonic() == started  # no waiting for a's lease: it was given back


async def test_the_row_holds_neither_token_nor_app_key_and_another_secret_cannot_read_it(
        st: MemoryStore, clock: FakeClock) -> None:
    fetch = GetToken()
    a = TokenRegistry(st, owner="a").entry(BASE, APP, SECRET, clock)
    await a.get(fetch)
    row = st.tokens[KEY]
    assert row.sealed is not None and b"TOKEN-1" not in row.sealed and APP not in KEY
    assert TokenSeal(SECRET, KEY).open(row.sealed) == ("TOKEN-1", 7200.0)
    assert TokenSeal(Secret("another-secret"), KEY).open(row.sealed) is None
    assert TokenSeal(SECRET, app_key_hash(BASE, "other-app")).open(row.sealed) is None  # bound to its row
    rotated = TokenRegistry(st, owner="r").entry(BASE, APP, Secret("rotated-secret"), clock)
    assert await rotated.get(fetch) == "TOKEN-2"  # cannot read the old row: fetches and overwrites it
    assert repr(a).count("TOKEN") == 0


async def test_without_storage_a_process_fetches_on_its_own(st: MemoryStore, clock: FakeClock) -> None:
    fetch = GetToken()
    st.fail_writes = True
    a = TokenRegistry(st, owner="a").entry(BASE, APP, SECRET, clock)
    assert await a.get(fetch) == "TOKEN-1" and fetch.calls == 1
    clock.advance(60)
    assert await a.get(fetch) == "TOKEN-1"  # cached as before


async def test_apps_are_apart(st: MemoryStore, clock: FakeClock) -> None:
    fetch = GetToken()
    reg = TokenRegistry(st, owner="a")
    one, other = reg.entry(BASE, APP, SECRET, clock), reg.entry(BASE, "app2", SECRET, clock)
    assert one is reg.entry(BASE + "/", APP, SECRET, clock) and one is not other
    assert await one.get(fetch) != await other.get(fetch)
    assert len(st.tokens) == 2 and st.tokens[KEY].lease_owner is None
    assert st.tokens[KEY].expires_at == clock.now() + timedelta(seconds=7200)
