"""The simulator's employee directory through the real client: getbymobile / getbyunionid, unknown users, and
/_sim/directory to replace the employees."""

from __future__ import annotations

import aiohttp
import pytest

from bridge import errors
from bridge.simulator.model import Employee
from tests.integration.simulator.test_client_simulator import harness

pytestmark = pytest.mark.integration


async def test_the_client_resolves_mobile_numbers_and_unionids_from_the_default_directory() -> None:
    async with harness() as h:
        assert await h.client.userid_by_mobile("13800138000") == "manager01"
        assert await h.client.userid_by_unionid("unionid-manager02") == "manager02"
        [call] = h.calls("getbymobile")
        assert call["path"] == "/topapi/v2/user/getbymobile" and call["body"] == {"mobile": "13800138000"}
        assert call["query"]["access_token"] != "" and call["errcode"] == 0
        with pytest.raises(errors.PermanentDingTalkError) as unknown:
            await h.client.userid_by_mobile("13000000000")
        assert unknown.value.errcode == 60121 and unknown.value.call == "getbymobile"


async def test_a_configured_directory_and_a_replaced_one() -> None:
    async with harness(directory=(Employee("zhang3", "18600000000", "U-3"),)) as h:
        assert await h.client.userid_by_unionid("U-3") == "zhang3"
        with pytest.raises(errors.PermanentDingTalkError):
            await h.client.userid_by_mobile("13800138000")  # not in this directory
        h.state.directory = type(h.state.directory)([Employee("li4", "18700000000")])
        assert await h.client.userid_by_mobile("18700000000") == "li4"


async def test_sim_directory_endpoint_shows_and_replaces_the_employees() -> None:
    async with harness() as h, aiohttp.ClientSession() as session:
        base = h.client.base_url
        async with session.get(f"{base}/_sim/directory") as resp:
            assert any(e["userid"] == "manager01" for e in (await resp.json())["employees"])
        new = {"employees": [{"userid": "wang5", "mobile": "18800000000", "unionid": None}]}
        async with session.post(f"{base}/_sim/directory", json=new) as resp:
            assert resp.status == 200 and (await resp.json()) == new
        assert await h.client.userid_by_mobile("18800000000") == "wang5"
        async with session.post(f"{base}/_sim/directory", json={"employees": [{"mobile": "1"}]}) as resp:
            assert resp.status == 400 and "userid" in (await resp.json())["error"]
        async with session.post(f"{base}/_sim/reset") as resp:
            assert resp.status == 200
        assert await h.client.userid_by_mobile("13800138000") == "manager01"  # reset restores the configured one
