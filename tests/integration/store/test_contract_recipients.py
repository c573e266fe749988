"""The Store contract for recipient resolutions (mobile:/unionid: → userid), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge import store
from tests.integration.store.test_contract import T0

pytestmark = pytest.mark.integration


def resolved(key: str, userid: str | None, *, error: str | None = None, ttl_s: float = 3600) -> store.Resolution:
    return store.Resolution(key=key, userid=userid, error=error, resolved_at=T0,
                            expires_at=T0 + timedelta(seconds=ttl_s))


async def test_resolutions_round_trip_by_key_and_unknown_keys_are_absent(st: store.Store) -> None:
    a = resolved("mobile:13800138000", "manager4")
    b = resolved("unionid:UN-9", None, error="60121: 找不到该用户", ttl_s=60)
    await st.save_resolutions([a, b])
    found = await st.get_resolutions(["mobile:13800138000", "unionid:UN-9", "mobile:100"])
    assert found == {a.key: a, b.key: b}
    assert await st.get_resolutions([]) == {}


async def test_saving_a_key_again_replaces_it(st: store.Store) -> None:
    await st.save_resolutions([resolved("mobile:13800138000", None, error="unknown")])
    later = store.Resolution(key="mobile:13800138000", userid="manager4", error=None,
                             resolved_at=T0 + timedelta(hours=1), expires_at=T0 + timedelta(hours=25))
    await st.save_resolutions([later])
    assert await st.get_resolutions(["mobile:13800138000"]) == {later.key: later}


async def test_naive_times_are_refused_before_anything_is_written(st: store.Store) -> None:
    naive = store.Resolution(key="mobile:1", userid="u", resolved_at=T0.replace(tzinfo=None), expires_at=T0)
    with pytest.raises(ValueError):
        await st.save_resolutions([resolved("mobile:2", "v"), naive])
    assert await st.get_resolutions(["mobile:1", "mobile:2"]) == {}
