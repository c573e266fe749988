"""The Store contract for the fleet's shared DingTalk token (bridge.dingtalk.tokens), on memory, SQLite and
PostgreSQL: one lease at a time, a lease lost to a newer save or run out, versions that grow with each save."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bridge import store
from tests.integration.store.test_contract import T0

pytestmark = pytest.mark.integration
KEY = "3f1c" * 16


async def test_an_unknown_key_has_no_row_and_the_first_claim_creates_it(st: store.Store) -> None:
    assert await st.get_token(KEY) is None
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    row = await st.get_token(KEY)
    assert row == store.SharedToken(key=KEY, version=0, lease_owner="a", lease_until=T0 + timedelta(seconds=10))


async def test_only_one_owner_holds_the_lease_until_it_runs_out(st: store.Store) -> None:
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    assert not await st.claim_token_refresh(KEY, "b", 0, T0 + timedelta(seconds=9), 10.0)
    assert await st.claim_token_refresh(KEY, "a", 0, T0 + timedelta(seconds=9), 10.0)  # its own: renewed
    assert await st.claim_token_refresh(KEY, "b", 0, T0 + timedelta(seconds=19), 10.0)  # a's ran out (crashed)
    row = await st.get_token(KEY)
    assert row is not None and row.lease_owner == "b"


async def test_saving_bumps_the_version_and_ends_the_savers_lease(st: store.Store) -> None:
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    expires = T0 + timedelta(hours=2)
    assert await st.save_token(KEY, "a", b"\x00sealed\xff", expires) == 1
    row = await st.get_token(KEY)
    assert row == store.SharedToken(key=KEY, version=1, sealed=b"\x00sealed\xff", expires_at=expires)
    assert await st.save_token(KEY, "a", b"again", expires) == 2


async def test_a_claim_based_on_an_old_version_is_refused(st: store.Store) -> None:
    """Process b looked at version 0; a refreshed meanwhile: b must use a's token, not call gettoken again."""
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    await st.save_token(KEY, "a", b"t1", T0 + timedelta(hours=2))
    assert not await st.claim_token_refresh(KEY, "b", 0, T0, 10.0)
    assert await st.claim_token_refresh(KEY, "b", 1, T0, 10.0)  # the token of version 1 was refused: b refreshes


async def test_a_save_by_someone_else_keeps_the_running_lease(st: store.Store) -> None:
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    await st.save_token(KEY, "b", b"t", T0 + timedelta(hours=2))
    row = await st.get_token(KEY)
    assert row is not None and row.version == 1 and row.lease_owner == "a"


async def test_release_frees_the_lease_for_others_only_when_held(st: store.Store) -> None:
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    await st.release_token_refresh(KEY, "b")  # not b's: nothing changes
    assert not await st.claim_token_refresh(KEY, "b", 0, T0, 10.0)
    await st.release_token_refresh(KEY, "a")
    assert await st.claim_token_refresh(KEY, "b", 0, T0, 10.0)
    await st.release_token_refresh("no-such-key", "a")


async def test_concurrent_claims_grant_exactly_one(st: store.Store) -> None:
    granted = await asyncio.gather(*(st.claim_token_refresh(KEY, f"p{i}", 0, T0, 10.0) for i in range(8)))
    assert sum(granted) == 1


async def test_keys_are_independent_and_naive_times_are_refused(st: store.Store) -> None:
    assert await st.claim_token_refresh(KEY, "a", 0, T0, 10.0)
    assert await st.claim_token_refresh("other", "b", 0, T0, 10.0)
    with pytest.raises(ValueError):
        await st.save_token(KEY, "a", b"t", T0.replace(tzinfo=None))
