"""End to end: a signed webhook naming approvers by mobile number and unionid → the worker resolves them against the
sandbox simulator's directory → the cards reach those userids; an unknown number is shown by `bridge status`."""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import Server, http_json, poll
from tests.acceptance.test_cli import ORANGE, cards, event, idle, send

pytestmark = pytest.mark.acceptance


def test_mobile_and_unionid_recipients_are_resolved_and_an_unknown_number_does_not_block_the_rest(
        server: Server) -> None:
    ev = event("PO-M1", "pending", recipients=["mobile:13800138000", "unionid:unionid-manager02", "mobile:13000000000"])
    code, out = send(server, ev)
    assert code == 0 and "HTTP 202" in out
    cards(server, "manager01", [ORANGE])
    cards(server, "manager02", [ORANGE])
    poll(lambda: idle(server), what="the worker to finish")
    status, calls = http_json(f"{server.sim_url}/_sim/calls?path=/topapi/v2/user/getbymobile")
    assert status == 200 and sorted(c["body"]["mobile"] for c in calls["calls"]) == ["13000000000", "13800138000"]
    [send_call] = http_json(f"{server.sim_url}/_sim/calls?path=/topapi/message/corpconversation/asyncsend_v2"
                            )[1]["calls"][-1:]
    assert send_call["body"]["userid_list"] == "manager01,manager02"

    r = server.cli("status", "demo", "PO-M1")
    assert r.code == 0, r.stderr
    assert "resolved: mobile:13800138000 → manager01  unionid:unionid-manager02 → manager02" in r.stdout
    assert "unresolved: mobile:13000000000: unknown to DingTalk (60121" in r.stdout
    [n] = server.cli("status", "demo", "PO-M1", "--json").json()["notices"]
    assert n["state"] == "sent" and list(n["delivery"]["unresolved_recipients"]) == ["mobile:13000000000"]


def test_a_bad_mobile_recipient_is_refused_in_the_request_path(server: Server) -> None:
    code, out = send(server, event("PO-M2", "pending", recipients=["mobile:call-me"]))
    assert code == 1 and "HTTP 400" in out and "recipients[0]" in out
