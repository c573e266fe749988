"""Canonical event parsing: JSON decoding, every field rule, all problems at once, times, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import EventInvalid, MalformedPayload, Problem
from bridge.events import (
    MAX_DEPTH,
    Amount,
    ApprovalEvent,
    FormField,
    Status,
    missing_card_fields,
    parse_canonical,
    parse_json,
    parse_time,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def full() -> dict[str, Any]:
    return json.loads((FIXTURES / "canonical-full.json").read_text("utf-8"))


def minimal(**extra: Any) -> dict[str, Any]:
    return {"event_id": "e1", "approval_id": "A1", "status": "approved", "occurred_at": "2026-11-29T02:00:00Z"} | extra


def problems_of(body: object, **kw: Any) -> list[Problem]:
    with pytest.raises(EventInvalid) as info:
        parse_canonical("erp", body, **kw)
    return list(info.value.problems)


def fields_of(body: object, **kw: Any) -> list[str]:
    return [p.field for p in problems_of(body, **kw)]


# --- the canonical event ---------------------------------------------------------------------------------


def test_full_event_is_normalised() -> None:
    e = parse_canonical("erp", full())
    assert e == ApprovalEvent(
        source="erp",
        event_id="erp-000123",
        approval_id="PO-2026-0042",
        status=Status.PENDING,
        occurred_at=datetime(2026, 11, 29, 2, 0, tzinfo=UTC),
        title="采购申请 PO-2026-0042",
        recipients=("manager7675", "user02"),
        applicant="张三",
        url="https://erp.example.com/po/42",
        pc_url="https://erp.example.com/po/42?view=pc",
        form=(FormField("金额", "12,000 元"), FormField("数量", "3")),
        amount=Amount("12000", "元"),
        content="办公电脑 3 台",
    )
    assert e.has_card_data
    assert missing_card_fields(e) == []


def test_minimal_event_has_no_card_data_and_names_the_missing_card_fields() -> None:
    e = parse_canonical("erp", minimal())
    assert (e.event_id, e.approval_id, e.status, e.title, e.recipients, e.url) == (
        "e1", "A1", Status.APPROVED, None, (), None,
    )  # fmt: skip
    assert [p.field for p in missing_card_fields(e)] == ["title", "recipients", "url"]
    assert "first event" in missing_card_fields(e)[0].message
    partial = parse_canonical("erp", minimal(title="T", url="https://x.example/1"))
    assert [p.field for p in missing_card_fields(partial)] == ["recipients"]


@pytest.mark.parametrize("status", [s.value for s in Status])
def test_every_status_is_accepted(status: str) -> None:
    assert parse_canonical("erp", minimal(status=status)).status == Status(status)


def test_values_are_stripped_and_numbers_become_strings() -> None:
    e = parse_canonical(
        "erp",
        minimal(
            event_id=" e1 ", approval_id="\tA1\n", status=" rejected ", title="  T  ", recipients=[" u1", "u2 "],
            form=[{"key": " k ", "value": 12.5}, {"key": "n", "value": 0}], amount={"num": 12000},
            applicant=" 张三 ", url=" https://x.example/a ",
        ),
    )  # fmt: skip
    assert (e.event_id, e.approval_id, e.status, e.title, e.applicant, e.url) == (
        "e1", "A1", Status.REJECTED, "T", "张三", "https://x.example/a",
    )  # fmt: skip
    assert e.recipients == ("u1", "u2")
    assert e.form == (FormField("k", "12.5"), FormField("n", "0"))
    assert e.amount == Amount("12000", "")


def test_null_and_blank_optional_fields_are_absent() -> None:
    e = parse_canonical("erp", minimal(title="   ", applicant=None, pc_url="", content=None, amount=None))
    assert (e.title, e.applicant, e.pc_url, e.content, e.amount) == (None, None, None, None, None)


@pytest.mark.parametrize(
    "url", ["http://erp.example.com/x", "https://erp.example.com", "dingtalk://dingtalkclient/page/link?url=x",
            "eapp://pages/approve?id=1", "HTTPS://ERP.EXAMPLE.COM/"],
)  # fmt: skip
def test_accepted_url_schemes(url: str) -> None:
    assert parse_canonical("erp", minimal(url=url, pc_url=url)).pc_url == url


# --- bad fields, one at a time ---------------------------------------------------------------------------

BAD_FIELDS = [
    ({"approval_id": None}, "approval_id", "required"),
    ({"approval_id": 42}, "approval_id", "expected a string, got a number"),
    ({"approval_id": "A 1"}, "approval_id", "whitespace"),
    ({"approval_id": "x" * 129}, "approval_id", "at most 128"),
    ({"approval_id": ""}, "approval_id", "must not be empty"),
    ({"event_id": "e\x001"}, "event_id", "control"),
    ({"event_id": None}, "event_id", "webhook-id"),
    ({"status": None}, "status", "required"),
    ({"status": "APPROVED"}, "status", "must be one of pending, approved, rejected, revoked, deleted"),
    ({"status": 1}, "status", "got 1"),
    ({"occurred_at": None}, "occurred_at", "required"),
    ({"occurred_at": "2026-11-29T10:00:00"}, "occurred_at", "no UTC offset"),
    ({"occurred_at": "2026-11-29"}, "occurred_at", "RFC 3339"),
    ({"occurred_at": "2026-13-45T10:00:00Z"}, "occurred_at", "not a valid RFC 3339"),
    ({"occurred_at": 1764381600}, "occurred_at", "RFC 3339"),
    ({"title": "t" * 201}, "title", "at most 200 characters, got 201"),
    ({"title": ["t"]}, "title", "expected a string, got an array"),
    ({"recipients": "u1"}, "recipients", "expected an array"),
    ({"recipients": []}, "recipients", "1 to 5000"),
    ({"recipients": [f"u{i}" for i in range(5001)]}, "recipients", "got 5001 entries"),
    ({"recipients": ["u1", 7]}, "recipients[1]", "expected a string, got a number"),
    ({"recipients": ["u1", "a,b"]}, "recipients[1]", "commas"),
    ({"recipients": ["u 1"]}, "recipients[0]", "whitespace"),
    ({"recipients": ["u" * 65]}, "recipients[0]", "at most 64"),
    ({"recipients": ["u1", " "]}, "recipients[1]", "must not be empty"),
    ({"recipients": ["u1", "u2", "u1"]}, "recipients[2]", "duplicate of recipients[0] 'u1'"),
    ({"url": "ftp://x.example/a"}, "url", "http(s)://, dingtalk:// or eapp://"),
    ({"url": "erp.example.com/po/42"}, "url", "URL"),
    ({"url": "https:///path"}, "url", "URL"),
    ({"url": "https://x.example/a b"}, "url", "whitespace"),
    ({"url": "https://x.example/" + "a" * 2040}, "url", "at most 2048"),
    ({"pc_url": "javascript://alert(1)"}, "pc_url", "URL"),
    ({"applicant": "a" * 65}, "applicant", "at most 64"),
    ({"content": "c" * 2001}, "content", "at most 2000"),
    ({"form": {"k": "v"}}, "form", "expected an array"),
    ({"form": [{"key": str(i), "value": "v"} for i in range(21)]}, "form", "at most 20"),
    ({"form": ["k=v"]}, "form[0]", "expected an object"),
    ({"form": [{"value": "v"}]}, "form[0].key", "required"),
    ({"form": [{"key": 1, "value": "v"}]}, "form[0].key", "expected a string, got a number"),
    ({"form": [{"key": "k" * 51, "value": "v"}]}, "form[0].key", "at most 50"),
    ({"form": [{"key": "k", "value": "v" * 501}]}, "form[0].value", "at most 500"),
    ({"form": [{"key": "k", "value": True}]}, "form[0].value", "expected a string or number, got a boolean"),
    ({"form": [{"key": "k", "value": "v", "label": "x"}]}, "form[0].label", "unknown field 'label'"),
    ({"amount": "12000"}, "amount", "expected an object"),
    ({"amount": {"unit": "元"}}, "amount.num", "required"),
    ({"amount": {"num": [1]}}, "amount.num", "expected a string or number"),
    ({"amount": {"num": "1", "unit": "u" * 11}}, "amount.unit", "at most 10"),
    ({"amount": {"num": "1", "currency": "CNY"}}, "amount.currency", "unknown field"),
    ({"recipient": ["u1"]}, "recipient", "unknown field 'recipient' (did you mean 'recipients'?)"),
]


@pytest.mark.parametrize(("change", "field", "needle"), BAD_FIELDS)
def test_each_bad_field_is_named(change: dict[str, Any], field: str, needle: str) -> None:
    body = {k: v for k, v in (minimal() | change).items() if v is not None}
    problems = problems_of(body)
    assert [p.field for p in problems] == [field]
    assert needle in problems[0].message


def test_every_problem_is_named_at_once() -> None:
    body = minimal(status="done", recipients=["ok", "bad one", "ok"], title="t" * 300, extra=1, url="nope")
    del body["approval_id"]
    with pytest.raises(EventInvalid) as info:
        parse_canonical("erp", body)
    assert sorted(p.field for p in info.value.problems) == sorted(
        ["extra", "approval_id", "status", "title", "recipients[1]", "recipients[2]", "url"]
    )
    assert info.value.message == "invalid event: 7 problems"
    assert info.value.status == 400
    assert len(info.value.as_dict()["problems"]) == 7  # type: ignore[arg-type]


def test_a_single_problem_is_in_the_message() -> None:
    with pytest.raises(EventInvalid, match=r"^invalid event: status: must be one of"):
        parse_canonical("erp", minimal(status="ok"))


def test_unknown_fields_are_each_named() -> None:
    problems = problems_of(minimal(recipient="u1", colour="red"))
    assert [(p.field, p.message) for p in problems] == [
        ("recipient", "unknown field 'recipient' (did you mean 'recipients'?)"),
        ("colour", "unknown field 'colour'"),
    ]


@pytest.mark.parametrize("body", [[], "x", 3, None, [minimal()]])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    problems = problems_of(body)
    assert problems[0].field == "body"
    assert "must be a JSON object" in problems[0].message


# --- event id from the webhook-id header -----------------------------------------------------------------


def test_webhook_id_is_the_event_id_when_the_body_has_none() -> None:
    body = minimal()
    del body["event_id"]
    assert parse_canonical("erp", body, webhook_id="msg_2Kj").event_id == "msg_2Kj"


def test_the_body_event_id_wins_over_the_webhook_id() -> None:
    assert parse_canonical("erp", minimal(), webhook_id="msg_2Kj").event_id == "e1"


def test_a_bad_webhook_id_is_named_as_the_header() -> None:
    body = minimal()
    del body["event_id"]
    assert fields_of(body, webhook_id="has space") == ["webhook-id"]


# --- times ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T10:00:00+08:00", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
        ("2026-11-29T02:00:00Z", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
        ("2026-11-29t02:00:00z", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
        ("2026-11-28T21:30:00-04:30", datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
        ("2026-11-29 02:00:00.5+00:00", datetime(2026, 11, 29, 2, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-29T02:00:00.123456789Z", datetime(2026, 11, 29, 2, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_become_utc(text: str, expected: datetime) -> None:
    got = parse_canonical("erp", minimal(occurred_at=text)).occurred_at
    assert got == expected
    assert got.utcoffset() is not None and got.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1663143335000, "unix_ms", datetime(2022, 9, 14, 8, 15, 35, tzinfo=UTC)),
        ("1663143335003", "unix_ms", datetime(2022, 9, 14, 8, 15, 35, 3000, tzinfo=UTC)),
        (1663143335, "unix_s", datetime(2022, 9, 14, 8, 15, 35, tzinfo=UTC)),
        ("1666079207.7171419", "unix_s", datetime(2022, 10, 18, 7, 46, 47, 717141, tzinfo=UTC)),
        (1663143335.5, "unix_s", datetime(2022, 9, 14, 8, 15, 35, 500000, tzinfo=UTC)),
    ],
)
def test_parse_time_unix(value: object, fmt: str, expected: datetime) -> None:
    assert parse_time(value, fmt, "t") == expected


@pytest.mark.parametrize(
    ("value", "fmt", "needle"),
    [
        (1663143335, "unix_ms", "check the unit"),  # seconds sent as milliseconds: 1970
        (1663143335000, "unix_s", "check the unit"),  # milliseconds sent as seconds: year 54000
        (10**30, "unix_ms", "unix_ms"),
        ("-5", "unix_ms", "unix_ms"),
        ("12abc", "unix_s", "unix_s"),
        (True, "unix_ms", "unix_ms"),
        ([1], "unix_ms", "an array"),
        ("2026-11-29T10:00:00", "rfc3339", "no UTC offset"),
        (1663143335, "rfc3339", "RFC 3339"),
        ("1663143335", "epoch", "unknown time format 'epoch'"),
    ],
)
def test_parse_time_errors_name_the_field_and_format(value: object, fmt: str, needle: str) -> None:
    with pytest.raises(ValueError, match=r"^when: ") as info:
        parse_time(value, fmt, "when")
    assert needle in str(info.value)


# --- JSON bodies ---------------------------------------------------------------------------------------


def test_parse_json_reads_an_object() -> None:
    assert parse_json('{"a": "张三", "b": [1, 2.5, null, true]}'.encode()) == {"a": "张三", "b": [1, 2.5, None, True]}


@pytest.mark.parametrize("raw", [b'{"a": 1, "a": 2}', b'{"status":"pending","status":"approved"}',
                                 b'{"x": [{"k": 1, "k": 1}]}'])
def test_duplicate_keys_are_refused(raw: bytes) -> None:
    """Parsers disagree on which of two equal keys wins (a classic smuggling route): refuse them."""
    with pytest.raises(MalformedPayload, match="appears twice"):
        parse_json(raw)


def test_a_byte_order_mark_is_ignored() -> None:
    assert parse_json(b"\xef\xbb\xbf{}") == {}


def test_top_level_array_parses_but_is_not_an_event() -> None:
    body = parse_json(b"[1, 2]")
    assert body == [1, 2]
    with pytest.raises(EventInvalid, match="must be a JSON object, got an array"):
        parse_canonical("erp", body)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"approval_id": "A1", ', "invalid JSON at line 1 column 23: Expecting property name"),
        (b'{"a": 1,\n  "b": }', "invalid JSON at line 2 column 8: Expecting value"),
        (b"", "invalid JSON at line 1 column 1"),
        (b'{"a": "\xff"}', "not UTF-8 (bad byte at offset 7)"),
        ('{"a": "张三"}'.encode("gbk"), "not UTF-8"),
        (b'{"a": NaN}', "invalid JSON at line 1 column 7: NaN is not a JSON value"),
        (b'{"a": [1, -Infinity]}', "-Infinity is not a JSON value"),
        (b'{"a": Infinity}', "Infinity is not a JSON value"),
        (b'{"a": 1e999}', "too large"),
        (b'{"a": "x"} trailing', "Extra data"),
    ],
)
def test_bad_json_is_malformed_with_a_position(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload) as info:
        parse_json(raw)
    assert message in info.value.message
    assert info.value.status == 400


def test_nan_inside_a_string_is_just_text() -> None:
    assert parse_json(b'{"a": "NaN [[[ Infinity"}') == {"a": "NaN [[[ Infinity"}


def test_nesting_up_to_the_limit_is_fine_and_beyond_is_refused() -> None:
    assert MAX_DEPTH == 32
    ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert parse_json(ok) is not None
    with pytest.raises(MalformedPayload, match="nested deeper than 32 levels"):
        parse_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    with pytest.raises(MalformedPayload, match="nested deeper"):  # no RecursionError on absurd depth
        parse_json(b'{"a":' * 100_000)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '{"a": "' + "[{" * 100 + '\\"' + "]}" + '"}'
    assert parse_json(text.encode())["a"].startswith("[{[{")  # type: ignore[index]


# --- round trip ----------------------------------------------------------------------------------------


def test_round_trip_through_to_dict_and_json() -> None:
    e = parse_canonical("erp", full())
    assert ApprovalEvent.from_dict(e.to_dict()) == e
    assert ApprovalEvent.from_json(e.to_json()) == e
    assert ApprovalEvent.from_dict(e.to_dict()).occurred_at.tzinfo is not None
    small = parse_canonical("erp", minimal())
    assert ApprovalEvent.from_json(small.to_json()) == small


# --- robustness: arbitrary input only ever yields the documented errors ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
field_values = st.sampled_from(["event_id", "approval_id", "status", "occurred_at", "title", "recipients", "url",
                                "form", "amount", "content", "applicant", "pc_url"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_json_only_raises_malformed_payload(raw: bytes) -> None:
    try:
        parse_json(raw)
    except MalformedPayload:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(field_values, json_values, max_size=8))
def test_parse_canonical_only_raises_event_invalid_with_problems(body: dict[str, Any]) -> None:
    problems: tuple[Problem, ...] = ()
    try:
        e = parse_canonical("erp", minimal() | body)
    except EventInvalid as exc:
        problems = exc.problems
        assert problems
        assert all(p.field and p.message for p in problems)
    if not problems:
        assert ApprovalEvent.from_json(e.to_json()) == e
