"""The template language: parsing (errors with positions), JMESPath holes, escapes, rendering and strictness."""

from __future__ import annotations

import pytest

from bridge.templating import MissingValue, Template, TemplateError, to_text

PAYLOAD = {
    "requestid": 1024,
    "requestname": "采购申请-张三",
    "operators": [{"loginid": "E1001"}, {"loginid": "E1002"}],
    "amount": 12000.0,
    "urgent": True,
    "meta": {"a": 1},
}


def render(text: str, context: object = PAYLOAD, **kw: bool) -> str:
    return Template.parse(text, "t").render(context, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ("{requestname} ({requestid})", "采购申请-张三 (1024)"),
    ("https://oa.example.com/workflow/{requestid}", "https://oa.example.com/workflow/1024"),
    ("{operators[*].loginid}", "E1001, E1002"),
    ("{join('/', operators[*].loginid)}", "E1001/E1002"),
    ("{operators[0].loginid}", "E1001"),
    ("{amount}|{urgent}|{meta}", "12000|true|{\"a\":1}"),
    ("{{literal}} {{{requestid}}}", "{literal} {1024}"),
    ("{ requestid }", "1024"),
    ("{nope || 'default'}", "default"),
    ("{ {id: requestid}.id }", "1024"),
    ("{'}' }", "}"),
    ("no holes", "no holes"),
    ("", ""),
])  # fmt: skip
def test_render(text: str, expected: str) -> None:
    assert render(text) == expected


def test_missing_values_render_empty_or_raise_when_strict() -> None:
    t = Template.parse("x{missing}y{operators[?loginid=='E9'].loginid}z", "fields.title")
    assert t.render(PAYLOAD) == "xyz"
    assert t.missing(PAYLOAD) == ("missing", "operators[?loginid=='E9'].loginid")
    with pytest.raises(MissingValue, match=r"^fields.title: \{missing\} matched nothing$"):
        t.render(PAYLOAD, strict=True)
    assert Template.parse("{requestid}", "t").render(PAYLOAD, strict=True) == "1024"


@pytest.mark.parametrize(("text", "message"), [
    ("a}b", "t: a single '}' (write '}}' for a literal brace) (at character 2)"),
    ("ab{cd", "t: '{' is never closed (write '{{' for a literal brace) (at character 3)"),
    ("x{}", "t: empty expression {} (at character 3)"),
    ("x{a b}", "t: bad JMESPath 'a b': Unexpected token: b (at character 5)"),
    ("{a..b}", "t: bad JMESPath 'a..b': Expecting:"),
])  # fmt: skip
def test_parse_errors_name_the_template_and_the_position(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse(text, "t")
    assert str(info.value).startswith(message)


def test_a_template_must_be_a_string() -> None:
    with pytest.raises(TemplateError, match="expected a template string, got int"):
        Template.parse(3, "t")


def test_no_code_runs_python_names_are_just_missing_keys() -> None:
    assert render("{__class__}{requestid.__class__}", {"requestid": 1}) == ""


def test_templates_are_values() -> None:
    a, b = Template.parse("{a}-{b}", "t"), Template.parse("{a}-{b}", "t")
    assert a == b and hash(a) == hash(b)
    assert [h.text for h in a.holes] == ["a", "b"] and not a.is_literal
    assert Template.parse("{{}}", "t").is_literal


def test_to_text() -> None:
    assert [to_text(v) for v in ("s", 1, 1.5, 2.0, False, [1, None, "x"], {"k": "值"})] == [
        "s", "1", "1.5", "2", "false", "1, x", '{"k":"值"}',
    ]  # fmt: skip


def test_url_encode_percent_encodes_a_link_for_a_query_string() -> None:
    t = Template.parse("dingtalk://dingtalkclient/page/link?url={url_encode(u)}&pc_slide=true", "t")
    assert t.render({"u": "https://erp.example.com/po/1?a=1&b=两 个"}) == (
        "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Ferp.example.com%2Fpo%2F1%3Fa%3D1%26b%3D"
        "%E4%B8%A4%20%E4%B8%AA&pc_slide=true")
    assert Template.parse("{url_encode(n)}", "t").render({"n": 12.0}) == "12"
    with pytest.raises(MissingValue):
        Template.parse("x={url_encode(missing)}", "t").render({}, strict=True)


def test_an_unknown_function_is_a_parse_error_and_a_wrong_type_renders_nothing() -> None:
    with pytest.raises(TemplateError, match=r"t: unknown function shell\(\) .*\(at character 5\)"):
        Template.parse("ab {shell(x)}", "t")
    with pytest.raises(TemplateError, match=r"unknown function nope\(\)"):
        Template.parse("{join(', ', nope(x))}", "t")
    assert Template.parse("[{length(x)}]", "t").render({"x": None}) == "[]"
    assert Template.parse("{length(x)}", "t").render({"x": [1, 2]}) == "2"
