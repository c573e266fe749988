"""Mapped formats: the shipped DingTalk and Feishu examples, paths, statuses, ids, and config validation."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Any

import pytest

from bridge.errors import ConfigError, EventInvalid, Problem
from bridge.events import ApprovalEvent, FormField, Status
from bridge.sources.mapping import MappingConfig, Path, normalise, parse_config

FIXTURES = FsPath(__file__).resolve().parents[2] / "fixtures"


def load_source(name: str) -> dict[str, Any]:
    with (FIXTURES / f"mapping-{name}.toml").open("rb") as f:
        doc = tomllib.load(f)
    (source,) = doc["sources"]
    return source


def load_config(name: str) -> MappingConfig:
    return parse_config(load_source(name)["mapping"], f"mapping-{name}.toml: sources[0].mapping")


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))


def problems_of(cfg: MappingConfig, body: object, **kw: Any) -> list[Problem]:
    with pytest.raises(EventInvalid) as info:
        normalise(cfg, "src", body, **kw)
    return list(info.value.problems)


def simple(**mapping: Any) -> MappingConfig:
    table: dict[str, Any] = {
        "time_format": "unix_s",
        "event_id": "id",
        "status": "state",
        "fields": {"approval_id": "doc.no", "occurred_at": "at"},
    }
    table.update(mapping)
    return parse_config(table, "bridge.toml: sources[0].mapping")


SIMPLE_BODY = {"id": "ev-1", "state": "approved", "doc": {"no": "PO-1"}, "at": 1764381600}


# --- the shipped fixtures --------------------------------------------------------------------------------


def test_fixtures_are_sources_tables_in_the_shared_syntax() -> None:
    for name in ("dingtalk", "feishu"):
        source = load_source(name)
        assert source["format"] == "mapping"
        assert set(source) == {"name", "signature", "secret", "format", "mapping"}
        assert source["secret"].startswith("env:")


DINGTALK = [
    ("start", Status.PENDING, "start", datetime(2022, 9, 14, 8, 15, 0, tzinfo=UTC), "c7c7120f2c0741900ebdba0318c0"),
    ("finish-agree", Status.APPROVED, "finish/agree", datetime(2022, 9, 14, 8, 15, 35, tzinfo=UTC),
     "c7c7120f2c0741900ebdba0318c8"),
    ("finish-refuse", Status.REJECTED, "finish/refuse", datetime(2022, 9, 14, 8, 15, 36, tzinfo=UTC),
     "c7c7120f2c0741900ebdba0318c9"),
    ("terminate", Status.REVOKED, "terminate", datetime(2022, 9, 14, 8, 15, 37, tzinfo=UTC),
     "c7c7120f2c0741900ebdba0318ca"),
    ("delete", Status.DELETED, "delete", datetime(2022, 9, 14, 8, 15, 38, tzinfo=UTC),
     "c7c7120f2c0741900ebdba0318cb"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "status", "raw", "at", "event_id"), DINGTALK)
def test_dingtalk_bpms_instance_change(name: str, status: Status, raw: str, at: datetime, event_id: str) -> None:
    e = normalise(load_config("dingtalk"), "oa-dingtalk", payload(f"dingtalk-bpms_instance_change-{name}"))
    assert e == ApprovalEvent(
        source="oa-dingtalk",
        event_id=event_id,
        approval_id="9Qgx5QqjR7axMw01",
        status=status,
        occurred_at=at,
        title="报销-测试",
        recipients=("manager01", "manager02"),
        applicant="manager75",
        url="https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm",
        pc_url="https://oa.example.com/",
        form=(FormField("审批编号", "202209141615000123"),),
        raw_status=raw,
    )
    assert e.has_card_data


def test_dingtalk_start_falls_back_to_create_time() -> None:
    body = payload("dingtalk-bpms_instance_change-start")
    assert "finishTime" not in body
    e = normalise(load_config("dingtalk"), "oa-dingtalk", body)
    assert e.occurred_at == datetime.fromtimestamp(body["createTime"] / 1000, UTC)


FEISHU = [
    ("pending", Status.PENDING, "PENDING", datetime(2022, 10, 18, 7, 45, 0, tzinfo=UTC)),
    ("approved", Status.APPROVED, "APPROVED", datetime(2022, 10, 18, 7, 46, 47, 3000, tzinfo=UTC)),
    ("rejected", Status.REJECTED, "REJECTED", datetime(2022, 10, 18, 7, 46, 48, 3000, tzinfo=UTC)),
    ("canceled", Status.REVOKED, "CANCELED", datetime(2022, 10, 18, 7, 46, 49, 3000, tzinfo=UTC)),
    ("deleted", Status.DELETED, "DELETED", datetime(2022, 10, 18, 7, 46, 50, 3000, tzinfo=UTC)),
    ("reverted", Status.REVOKED, "REVERTED", datetime(2022, 10, 18, 7, 46, 51, 3000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("name", "status", "raw", "at"), FEISHU)
def test_feishu_approval_instance(name: str, status: Status, raw: str, at: datetime) -> None:
    body = payload(f"feishu-approval_instance-{name}")
    e = normalise(load_config("feishu"), "oa-feishu", body)
    assert (e.event_id, e.approval_id, e.status, e.raw_status, e.occurred_at) == (
        body["uuid"], "81D31358-93AF-92D6-7425-01A5D67C4E71", status, raw, at,
    )  # fmt: skip
    assert e.event_id != body["event"]["uuid"]
    assert e.recipients == ("finance01", "finance02")
    assert e.form == (FormField("审批定义", "7C468A54-8745-2245-9675-08B7C63E7A85"),)
    assert e.note is None


def test_feishu_operate_time_is_a_string_except_on_reverted() -> None:
    assert isinstance(payload("feishu-approval_instance-approved")["event"]["operate_time"], str)
    assert isinstance(payload("feishu-approval_instance-reverted")["event"]["operate_time"], int)


# --- statuses ----------------------------------------------------------------------------------------------


def test_an_ignored_status_value_is_accepted_with_no_status() -> None:
    body = payload("dingtalk-bpms_instance_change-finish-agree") | {"type": "comment", "remark": "看一下"}
    del body["result"]
    e = normalise(load_config("dingtalk"), "oa-dingtalk", body)
    assert (e.status, e.raw_status, e.note, e.content) == (None, "comment", "ignored status value 'comment'", "看一下")


def test_an_unknown_status_value_is_named() -> None:
    body = payload("dingtalk-bpms_instance_change-finish-agree") | {"result": "maybe"}
    (problem,) = problems_of(load_config("dingtalk"), body)
    assert problem.field == "type/result"
    assert problem.message.startswith("unknown status 'finish/maybe' (known: start, finish/agree")
    assert "ignored: comment" in problem.message


def test_a_missing_status_is_named() -> None:
    body = payload("dingtalk-bpms_instance_change-delete")
    del body["type"]
    (problem,) = problems_of(load_config("dingtalk"), body)
    assert problem.message == "missing path 'type' or 'result' (the status)"


def test_without_statuses_canonical_names_map_to_themselves() -> None:
    cfg = simple()
    assert normalise(cfg, "src", SIMPLE_BODY).status == Status.APPROVED
    assert problems_of(cfg, SIMPLE_BODY | {"state": "ok"})[0].message.startswith("unknown status 'ok'")


def test_numeric_and_object_status_values() -> None:
    cfg = simple(statuses={"approved": ["2"], "pending": ["1"]})
    assert normalise(cfg, "src", SIMPLE_BODY | {"state": 2}).status == Status.APPROVED
    (problem,) = problems_of(cfg, SIMPLE_BODY | {"state": {"code": 2}})
    assert (problem.field, problem.message) == ("state", "expected a string or number status value")


# --- paths, ids, constants -----------------------------------------------------------------------------------


def test_missing_required_paths_are_each_named() -> None:
    body = payload("dingtalk-bpms_instance_change-start")
    del body["processInstanceId"], body["createTime"]
    problems = problems_of(load_config("dingtalk"), body)
    assert [(p.field, p.message) for p in problems] == [
        ("processInstanceId", "missing path 'processInstanceId' (needed for approval_id)"),
        ("finishTime | createTime", "missing path 'finishTime' or 'createTime' (needed for occurred_at)"),
    ]
    with pytest.raises(EventInvalid, match=r"^invalid event: 2 problems$"):
        normalise(load_config("dingtalk"), "oa-dingtalk", body)


def test_event_id_list_is_joined_and_missing_parts_are_errors() -> None:
    cfg = simple(event_id=["doc.no", "state", "seq"])
    assert normalise(cfg, "src", SIMPLE_BODY | {"seq": 3}).event_id == "PO-1:approved:3"
    problems = problems_of(cfg, SIMPLE_BODY, webhook_id="msg_1")  # a list never falls back to the header
    assert [(p.field, p.message) for p in problems] == [("seq", "missing path 'seq' (part of the event id)")]


def test_single_event_id_path_falls_back_to_the_webhook_id() -> None:
    body = {k: v for k, v in SIMPLE_BODY.items() if k != "id"}
    assert normalise(simple(), "src", body, webhook_id="msg_1").event_id == "msg_1"
    assert normalise(simple(), "src", SIMPLE_BODY, webhook_id="msg_1").event_id == "ev-1"
    assert problems_of(simple(), body)[0].message == \
        "missing path 'id' (the event id) and no webhook-id or svix-id header"
    no_path = parse_config({"status": "state", "fields": {"approval_id": "doc.no", "occurred_at": "at"},
                            "time_format": "unix_s"}, "m")  # fmt: skip
    assert normalise(no_path, "src", body, webhook_id="msg_2").event_id == "msg_2"
    assert "webhook-id" in problems_of(no_path, body)[0].message


def test_constants_apply_only_when_the_path_is_absent() -> None:
    cfg = simple(fields={"approval_id": "doc.no", "occurred_at": "at", "recipients": "to", "title": "subject"},
                 constants={"recipients": ["boss"], "title": "默认标题", "amount_unit": "元"})  # fmt: skip
    fallback = normalise(cfg, "src", SIMPLE_BODY)
    assert (fallback.recipients, fallback.title, fallback.amount) == (("boss",), "默认标题", None)
    given = normalise(cfg, "src", SIMPLE_BODY | {"to": ["u1", "u2"], "subject": "T", "unused": None})
    assert (given.recipients, given.title) == (("u1", "u2"), "T")
    null = normalise(cfg, "src", SIMPLE_BODY | {"to": None})
    assert null.recipients == ("boss",)


def test_list_indexes_and_nested_paths() -> None:
    cfg = simple(
        fields={"approval_id": "doc.items[1].id", "occurred_at": "at", "recipients": "doc.steps[0].users",
                "amount_num": "doc.items[1].total"},
        constants={"amount_unit": "元"},
        form={"第二行": "doc.items[1].name", "不存在": "doc.items[5].name"},
    )  # fmt: skip
    body = SIMPLE_BODY | {
        "doc": {"items": [{"id": "X"}, {"id": 77, "name": "电脑", "total": 12000}], "steps": [{"users": "u1,u2"}]}
    }
    e = normalise(cfg, "src", body)
    assert (e.approval_id, e.recipients, e.form) == ("77", ("u1", "u2"), (FormField("第二行", "电脑"),))
    assert (e.amount.num, e.amount.unit) == ("12000", "元")  # type: ignore[union-attr]
    assert problems_of(cfg, SIMPLE_BODY | {"doc": {"items": "nope"}})[0].field == "doc.items[1].id"


def test_path_lookup_never_raises() -> None:
    p = Path.parse("a.b[2].c")
    assert p.steps == ("a", "b", 2, "c")
    assert p.get({"a": {"b": [0, 1, {"c": "x"}]}}) == "x"
    for doc in ({}, {"a": []}, {"a": {"b": [0]}}, {"a": {"b": {"2": {"c": 1}}}}, {"a": "text"}, [], None):
        assert p.get(doc) is None
    assert Path.parse("m[0][1]").get({"m": [[1, 2]]}) == 2


def test_mapped_values_get_the_canonical_checks_named_by_source_path() -> None:
    cfg = load_config("dingtalk")
    body = payload("dingtalk-bpms_instance_change-start") | {
        "title": "t" * 201, "url": "ftp://x", "approvers": None, "businessId": ["x"], "finishTime": "soon",
    }  # fmt: skip
    problems = problems_of(cfg, body)
    assert {p.field: p.message for p in problems} == {
        "finishTime": "expected unix_ms (milliseconds since 1970, number or digit string), got 'soon'",
        "title": "must be at most 200 characters, got 201",
        "url": "must be an http(s)://, dingtalk:// or eapp:// URL, got 'ftp://x'",
        "businessId": "expected a string or number, got an array",
    }


def test_recipient_problems_name_the_source_path_with_the_index() -> None:
    cfg = simple(fields={"approval_id": "doc.no", "occurred_at": "at", "recipients": "approvers"})
    problems = problems_of(cfg, SIMPLE_BODY | {"approvers": ["u1", "u 2", "u1"]})
    assert [p.field for p in problems] == ["approvers[1]", "approvers[2]"]


def test_body_must_be_an_object() -> None:
    assert problems_of(simple(), ["x"])[0].field == "body"


# --- parse_config errors -----------------------------------------------------------------------------------

W = "bridge.toml: sources[2].mapping"
BASE: dict[str, Any] = {"status": "s", "fields": {"approval_id": "id", "occurred_at": "t"}}

CONFIG_ERRORS = [
    ({"fields": {"approval_id": "id", "occurred_at": "t", "titel": "x"}},
     f"{W}.fields: unknown canonical field 'titel' (did you mean 'title'?)"),
    ({"fields": {"occurred_at": "t"}}, f"{W}.fields: approval_id is required"),
    ({"fields": {"approval_id": "id"}}, f"{W}.fields: occurred_at is required"),
    ({"fields": "id"}, f"{W}.fields: expected a table, got a string"),
    ({"fields": {"approval_id": "a..b", "occurred_at": "t"}}, f"{W}.fields.approval_id: bad path 'a..b'"),
    ({"fields": {"approval_id": "a[x]", "occurred_at": "t"}}, f"{W}.fields.approval_id: bad path 'a[x]'"),
    ({"fields": {"approval_id": 3, "occurred_at": "t"}}, f"{W}.fields.approval_id: expected a path string"),
    ({"fields": {"approval_id": [], "occurred_at": "t"}}, f"{W}.fields.approval_id: expected a path or a non-empty"),
    ({"status": None}, f"{W}.status: required"),
    ({"statu": "s"}, f"{W}: unknown key 'statu' (did you mean 'status'?)"),
    ({"time_format": "unix"}, f"{W}.time_format: expected one of rfc3339, unix_s, unix_ms, got 'unix'"),
    ({"event_id": "a b"}, f"{W}.event_id: bad path 'a b'"),
    ({"ignore": ["ok", 3]}, f"{W}.ignore: expected a string or a list of non-empty strings"),
    ({"statuses": {"done": ["x"]}}, f"{W}.statuses: unknown canonical status 'done'"),
    ({"statuses": {"approved": ["ok"], "rejected": ["ok"]}}, f"{W}.statuses.rejected: 'ok' is already mapped to "
                                                            "approved"),
    ({"statuses": {"approved": ["ok"]}, "ignore": ["ok"]}, f"{W}.statuses.approved: 'ok' is also listed in ignore"),
    ({"statuses": {}}, f"{W}.statuses: expected at least one"),
    ({"constants": {"recipients": ["a b"]}}, f"{W}.constants.recipients[0]: userid must not contain whitespace"),
    ({"constants": {"pc_url": "oa.example.com"}}, f"{W}.constants.pc_url: must be an http(s)://"),
    ({"constants": {"colour": "red"}}, f"{W}.constants: unknown canonical field 'colour'"),
    ({"form": {"x" * 51: "a"}}, f"{W}.form: label"),
    ({"form": {"行": "a b"}}, f"{W}.form.行: bad path 'a b'"),
    ({"form": {str(i): "a" for i in range(21)}}, f"{W}.form: at most 20 rows, got 21"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), CONFIG_ERRORS)
def test_parse_config_errors_name_where_and_the_key(change: dict[str, Any], message: str) -> None:
    table = {k: v for k, v in (BASE | change).items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_config(table, W)
    assert message in info.value.message


def test_parse_config_names_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"time_format": "x", "fields": {"titel": "t"}, "extra": 1}, W)
    text = info.value.message
    for needle in ("unknown key 'extra'", ".time_format:", ".status: required", "'titel'", "approval_id is required"):
        assert needle in text


def test_parse_config_refuses_a_non_table() -> None:
    with pytest.raises(ConfigError, match=r"^bridge.toml: sources\[2\].mapping: expected a table, got an array$"):
        parse_config([], W)


def test_mapping_config_is_frozen_and_comparable() -> None:
    a, b = load_config("feishu"), load_config("feishu")
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.time_format = "unix_s"  # type: ignore[misc]
