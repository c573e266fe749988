"""Mapped sources over real payload shapes: JMESPath recipients, id maps, local times, templates, event ids
from headers or hashes, and first-event errors that name the sender's field (issue 17, items 1-7)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.errors import ConfigError, EventInvalid, Problem
from bridge.events import ApprovalEvent, missing_card_fields
from bridge.sources.mapping import normalise, parse_config

W = "bridge.toml: sources[0].mapping"
BODY: dict[str, Any] = {
    "requestid": 1024, "requestname": "采购申请-张三", "status": "submit", "createdate": "2026-11-29",
    "createtime": "10:00:00", "operators": [{"loginid": "E1001"}, {"loginid": "E1002"}],
}  # fmt: skip


def cfg(**overrides: Any) -> Any:
    table: dict[str, Any] = {
        "event_id": ["requestid", "status"],
        "status": "status",
        "statuses": {"pending": ["submit"], "approved": ["archive"]},
        "fields": {"approval_id": "requestid", "recipients": "operators[*].loginid"},
        "templates": {"occurred_at": "{createdate} {createtime}", "title": "{requestname} ({requestid})",
                      "url": "https://oa.example.com/workflow/{requestid}"},
    }  # fmt: skip
    for key, value in overrides.items():
        if value is None:
            table.pop(key, None)
        elif isinstance(value, dict) and isinstance(table.get(key), dict):
            table[key] = table[key] | value
        else:
            table[key] = value
    return parse_config(table, W)


def problems_of(c: Any, body: object, **kw: Any) -> list[Problem]:
    with pytest.raises(EventInvalid) as info:
        normalise(c, "oa", body, **kw)
    return list(info.value.problems)


# --- 1. recipients ---------------------------------------------------------------------------------------


def test_a_weaver_shaped_payload_becomes_a_full_event() -> None:
    e = normalise(cfg(), "oa", BODY)
    assert e == ApprovalEvent(
        source="oa", event_id="1024:submit", approval_id="1024", status=e.status, raw_status="submit",
        occurred_at=datetime(2026, 11, 29, 2, 0, tzinfo=UTC), title="采购申请-张三 (1024)",
        recipients=("E1001", "E1002"), url="https://oa.example.com/workflow/1024",
    )  # fmt: skip
    assert e.has_card_data and e.extra == {}


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("operators[*].loginid", {"operators": [{"loginid": "a"}, {"loginid": 7}, {"name": "no id"}]}, ("a", "7")),
    ("reviewers[*].reviewer.login", {"reviewers": [{"type": "User", "reviewer": {"login": "octocat"}},
                                                   {"type": "Team", "reviewer": {"slug": "ops"}}]}, ("octocat",)),
    ("tasks[*].assignees", {"tasks": [{"assignees": ["u1", "u2"]}, {"assignees": ["u3"]}]}, ("u1", "u2", "u3")),
    ("handler", {"handler": 1001}, ("1001",)),
    ("handler", {"handler": "u9"}, ("u9",)),
    ("handler", {"handler": "u1, u2"}, ("u1", "u2")),
    ("tasks[?state=='open'].user", {"tasks": [{"state": "open", "user": "x"}, {"state": "done", "user": "y"}]},
     ("x",)),
])  # fmt: skip
def test_recipients_from_lists_of_objects_nested_objects_and_scalars(path: str, body: dict[str, Any],
                                                                    expected: tuple[str, ...]) -> None:
    e = normalise(cfg(fields={"recipients": path}), "oa", BODY | {"operators": None} | body)
    assert e.recipients == expected


def test_recipients_that_are_objects_are_named() -> None:
    (problem,) = problems_of(cfg(fields={"recipients": "operators"}), BODY)
    assert (problem.field, problem.message) == ("operators", "expected user ids (strings or numbers), found an "
                                                             "object")  # fmt: skip


# --- 2. id map -------------------------------------------------------------------------------------------


def test_id_map_translates_and_leaves_mobile_and_unionid_recipients_alone() -> None:
    c = cfg(id_map={"E1001": "zhangsan", "E1002": "lisi"})
    assert normalise(c, "oa", BODY).recipients == ("zhangsan", "lisi")
    body = BODY | {"operators": [{"loginid": "mobile:13800138000"}, {"loginid": "unionid:abc"}, {"loginid": "E1001"}]}
    assert normalise(c, "oa", body).recipients == ("mobile:13800138000", "unionid:abc", "zhangsan")


def test_unmapped_ids_are_dropped_and_recorded_unless_passthrough() -> None:
    c = cfg(id_map={"E1001": "zhangsan"})
    e = normalise(c, "oa", BODY)
    assert (e.recipients, e.extra) == (("zhangsan",), {"unmapped_ids": "E1002"})
    passing = normalise(cfg(id_map={"E1001": "zhangsan"}, id_map_passthrough=True), "oa", BODY)
    assert passing.recipients == ("zhangsan", "E1002")
    assert normalise(cfg(), "oa", BODY).recipients == ("E1001", "E1002")  # no id_map: ids are userids


def test_when_no_id_is_mapped_the_first_event_problem_says_so() -> None:
    e = normalise(cfg(id_map={"E9": "x"}), "oa", BODY)
    assert e.recipients == () and e.extra["unmapped_ids"] == "E1001,E1002"
    (problem,) = missing_card_fields(e)
    assert problem.field == "operators[*].loginid"
    assert problem.message.startswith("operators[*].loginid gave E1001, E1002, none of them in id_map")


@pytest.mark.parametrize(("change", "message"), [
    ({"id_map": {"E1": "a b"}}, f"{W}.id_map.E1: a DingTalk userid must not contain whitespace"),
    ({"id_map": ["x"]}, f"{W}.id_map: expected a table"),
    ({"id_map_passthrough": "yes"}, f"{W}.id_map_passthrough: expected true or false"),
])  # fmt: skip
def test_id_map_config_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**change)
    assert message in info.value.message


# --- 3. times --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("time_format", "zone", "value", "expected"), [
    ("rfc3339", None, "2026-11-29 10:00:00", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
    ("rfc3339", "UTC", "2026-11-29T10:00:00", datetime(2026, 11, 29, 10, 0, tzinfo=UTC)),
    ("rfc3339", "Europe/Berlin", "2026-07-01 10:00:00", datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),
    ("rfc3339", None, "2026-11-29T10:00:00+00:00", datetime(2026, 11, 29, 10, 0, tzinfo=UTC)),
    ("auto", None, 1764381600, datetime(2025, 11, 29, 2, 0, tzinfo=UTC)),
    ("auto", None, 1764381600123, datetime(2025, 11, 29, 2, 0, 0, 123000, tzinfo=UTC)),
    ("auto", None, "1764381600", datetime(2025, 11, 29, 2, 0, tzinfo=UTC)),
    ("auto", None, "2026/11/29 10:00", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
    ("auto", None, "2026-11-29", datetime(2026, 11, 28, 16, 0, tzinfo=UTC)),
    ("auto", None, "2026-11-29T10:00:00.000+0800", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
    ("unix_ms", None, 1764381600000, datetime(2025, 11, 29, 2, 0, tzinfo=UTC)),
])  # fmt: skip
def test_times_in_the_senders_zone_and_epochs(time_format: str, zone: str | None, value: object,
                                             expected: datetime) -> None:
    c = cfg(time_format=time_format, timezone=zone, templates=None, fields={"occurred_at": "at"})
    assert normalise(c, "oa", BODY | {"at": value}).occurred_at == expected


def test_a_date_field_and_a_time_field_make_one_time_by_template() -> None:
    assert normalise(cfg(), "oa", BODY | {"createtime": "23:30:05"}).occurred_at == datetime(
        2026, 11, 29, 15, 30, 5, tzinfo=UTC)
    (problem,) = problems_of(cfg(), {k: v for k, v in BODY.items() if k != "createtime"})
    assert (problem.field, problem.message) == (
        "templates.occurred_at", "{createtime} matched nothing (needed for occurred_at)")


def test_bad_times_and_zones_are_named() -> None:
    c = cfg(time_format="auto", templates=None, fields={"occurred_at": "at"})
    (problem,) = problems_of(c, BODY | {"at": "soon"})
    assert problem.field == "at" and problem.message.startswith("expected a time (like 2026-11-29 10:00:00")
    with pytest.raises(ConfigError, match=r"\.timezone: unknown time zone 'Mars/Base'"):
        cfg(timezone="Mars/Base")
    with pytest.raises(ConfigError, match="mapped sources also take 'auto'"):
        cfg(time_format="local")


# --- 4. templates ----------------------------------------------------------------------------------------


def test_a_path_wins_over_a_template_and_a_template_over_a_constant() -> None:
    c = cfg(fields={"title": "subject"}, constants={"title": "默认", "url": "https://oa.example.com/"})
    assert normalise(c, "oa", BODY | {"subject": "S"}).title == "S"
    assert normalise(c, "oa", BODY).title == "采购申请-张三 (1024)"
    assert normalise(c, "oa", {k: v for k, v in BODY.items() if k != "requestname"}).title == "默认"


def test_template_errors_name_the_key_and_the_character() -> None:
    with pytest.raises(ConfigError) as info:
        cfg(templates={"title": "{requestname"})
    assert f"{W}.templates.title: '{{' is never closed (write '{{{{' for a literal brace) (at character 1)" in \
        info.value.message
    with pytest.raises(ConfigError, match=r"templates: unknown canonical field 'titel'"):
        cfg(templates={"titel": "x"})


# --- 5. event ids ----------------------------------------------------------------------------------------


def test_event_id_from_a_header_then_webhook_id_then_a_hash() -> None:
    c = cfg(event_id=None, event_id_header="X-GitHub-Delivery", event_id_hash=["requestid", "status", "createtime"])
    headers = {"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    assert normalise(c, "oa", BODY, headers=headers, webhook_id="msg_1").event_id == headers["x-github-delivery"]
    assert normalise(c, "oa", BODY, webhook_id="msg_1").event_id == "msg_1"
    hashed = normalise(c, "oa", BODY).event_id
    assert hashed.startswith("sha256:") and hashed == normalise(c, "oa", dict(BODY)).event_id
    assert hashed != normalise(c, "oa", BODY | {"status": "archive"}).event_id
    (problem,) = problems_of(cfg(event_id=None, event_id_hash=["nothere", "neither"]), BODY)
    assert (problem.field, problem.message) == (
        "event_id_hash", "no event id: no webhook-id or svix-id header, and every event_id_hash path matched nothing")


def test_no_event_id_names_the_header_it_looked_for() -> None:
    c = cfg(event_id="delivery", event_id_header=["X-Request-Id"])
    (problem,) = problems_of(c, BODY)
    assert (problem.field, problem.message) == (
        "delivery", "missing path 'delivery' (the event id) and no X-Request-Id, webhook-id or svix-id header")


# --- 6. first-event errors name the sender's field -----------------------------------------------------


def test_missing_card_fields_name_the_mapping_path_that_gave_nothing() -> None:
    e = normalise(cfg(), "oa", BODY | {"operators": []})
    assert e.extra == {"from.recipients": "operators[*].loginid",
                       "why.recipients": "operators[*].loginid matched nothing"}
    (problem,) = missing_card_fields(e)
    assert problem == Problem("operators[*].loginid", "operators[*].loginid matched nothing: recipients is required "
                                                      "on the first event for an approval (no card data is stored for "
                                                      "it yet)")  # fmt: skip


def test_a_template_that_gave_nothing_is_named_too() -> None:
    e = normalise(cfg(), "oa", {k: v for k, v in BODY.items() if k != "requestname"})
    (problem,) = missing_card_fields(e)
    assert problem.field == "templates.title"
    assert problem.message.startswith("{requestname} matched nothing: title is required on the first event")


# --- 7. JMESPath -----------------------------------------------------------------------------------------


def test_jmespath_status_and_functions() -> None:
    c = cfg(status="action == 'deleted' && 'delete' || state", statuses={"deleted": ["delete"]},
            fields={"approval_id": "to_string(requestid)"})  # fmt: skip
    e = normalise(c, "oa", BODY | {"state": "submit"})
    assert (e.status, e.approval_id) == ("pending", "1024")
    assert normalise(c, "oa", BODY | {"action": "deleted"}).status == "deleted"


def test_bad_jmespath_is_a_config_error_with_the_position() -> None:
    with pytest.raises(ConfigError) as info:
        cfg(fields={"recipients": "operators[*]..loginid"})
    assert f"{W}.fields.recipients: bad path 'operators[*]..loginid'" in info.value.message
    assert "at character 14" in info.value.message


def test_dotted_paths_from_before_jmespath_keep_their_meaning() -> None:
    from bridge.sources.mapping import Path

    assert Path.parse("表单.金额").get({"表单": {"金额": "12000"}}) == "12000"
    assert Path.parse("x-request-id").get({"x-request-id": "r1"}) == "r1"  # not JMESPath's subtraction-free syntax
    assert Path.parse("items[1].id").steps == ("items", 1, "id")
    jp = Path.parse("items[-1].id")
    assert jp.steps == () and jp.get({"items": [{"id": 1}, {"id": 2}]}) == 2
    assert Path.parse("items[*].id").get({"items": []}) is None  # an empty match is absent
