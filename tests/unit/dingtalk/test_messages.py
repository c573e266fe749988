"""Tests for bridge.messages: the exact shape of each `msg` and every documented limit."""

from __future__ import annotations

import json

import pytest

from bridge.dingtalk import messages
from bridge.errors import MessageInvalid


def _oa(**kw: object) -> dict:
    base: dict = {"message_url": "https://erp.example/a/1", "head_bgcolor": "FFBBBBBB", "head_text": "审批"}
    base.update(kw)
    return messages.oa(**base)  # type: ignore[arg-type]


def test_oa_full_shape_matches_reference_example() -> None:
    msg = messages.oa(
        message_url="https://x",
        pc_message_url="https://pc",
        head_bgcolor="0xffbbbbbb",
        head_text="t",
        status_value="进行中",
        status_bg="FFFF9D46",
        title="T",
        form=[("姓名:", "张三"), ("金额:", "15.6")],
        rich_num="15.6",
        rich_unit="元",
        content="...",
        image="@lADO",
        file_count=3,
        author="李四",
    )
    assert msg == {
        "msgtype": "oa",
        "oa": {
            "message_url": "https://x",
            "pc_message_url": "https://pc",
            "head": {"bgcolor": "FFBBBBBB", "text": "t"},
            "status_bar": {"status_value": "进行中", "status_bg": "0xFFFF9D46"},
            "body": {
                "title": "T",
                "form": [{"key": "姓名:", "value": "张三"}, {"key": "金额:", "value": "15.6"}],
                "rich": {"num": "15.6", "unit": "元"},
                "content": "...",
                "image": "@lADO",
                "file_count": "3",
                "author": "李四",
            },
        },
    }
    messages.validate(msg)


def test_oa_minimal_leaves_optional_keys_out() -> None:
    msg = _oa(title="", content=None)
    assert msg == {"msgtype": "oa", "oa": {"message_url": "https://erp.example/a/1",
                                           "head": {"bgcolor": "FFBBBBBB", "text": "审批"}}}
    messages.validate(msg)


def test_oa_partial_rich_and_status_keep_only_given_keys() -> None:
    msg = _oa(rich_num="3", status_value="已同意")
    assert msg["oa"]["body"] == {"rich": {"num": "3"}}
    assert msg["oa"]["status_bar"] == {"status_value": "已同意"}


def test_oa_status_bg_keeps_existing_0x_prefix() -> None:
    assert _oa(status_value="x", status_bg="0xFF78C06E")["oa"]["status_bar"]["status_bg"] == "0xFF78C06E"


@pytest.mark.parametrize("bad", ["FFBBBB", "0xFFBBBBBBB", "GGBBBBBB", "#FFBBBBBB", "", "0x"])
def test_oa_rejects_malformed_head_colour(bad: str) -> None:
    with pytest.raises(MessageInvalid, match=r"oa\.head\.bgcolor"):
        _oa(head_bgcolor=bad)


@pytest.mark.parametrize("bad", ["FF78C0", "0xZZ78C06E", "rgb(1,2,3)", "0x0xFF78C06E"])
def test_oa_rejects_malformed_status_colour(bad: str) -> None:
    with pytest.raises(MessageInvalid, match=r"status_bg"):
        _oa(status_value="x", status_bg=bad)


def test_oa_file_count_bool_is_refused() -> None:
    with pytest.raises(MessageInvalid, match="file_count"):
        _oa(file_count=True)


def test_more_than_six_form_rows_is_allowed() -> None:
    msg = _oa(form=[(f"k{i}", f"v{i}") for i in range(9)])
    messages.validate(msg)
    assert len(msg["oa"]["body"]["form"]) == 9


def test_other_builders_shapes() -> None:
    assert messages.text("hi") == {"msgtype": "text", "text": {"content": "hi"}}
    assert messages.markdown("t", "# x") == {"msgtype": "markdown", "markdown": {"title": "t", "text": "# x"}}
    assert messages.link(message_url="https://m", pic_url="@p", title="t", text="x") == {
        "msgtype": "link",
        "link": {"messageUrl": "https://m", "picUrl": "@p", "title": "t", "text": "x"},
    }
    single = messages.action_card(title="t", markdown="m", single_title="go", single_url="https://s")
    assert single == {"msgtype": "action_card",
                      "action_card": {"title": "t", "markdown": "m", "single_title": "go", "single_url": "https://s"}}
    multi = messages.action_card(title="t", markdown="m", buttons=[("a", "https://a"), ("b", "https://b")],
                                 btn_orientation="1")
    assert multi["action_card"]["btn_orientation"] == "1"
    assert multi["action_card"]["btn_json_list"] == [{"title": "a", "action_url": "https://a"},
                                                     {"title": "b", "action_url": "https://b"}]
    assert "single_title" not in multi["action_card"]
    for msg in (messages.text("hi"), messages.markdown("t", "x"), single, multi):
        messages.validate(msg)


def test_encoded_size_is_compact_utf8_bytes() -> None:
    msg = messages.text("审批")  # 2 CJK characters = 6 UTF-8 bytes
    assert messages.encoded_size(msg) == len('{"msgtype":"text","text":{"content":"审批"}}'.encode())
    assert messages.encoded_size(msg) == len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False)) + 4


def test_size_limit_boundary() -> None:
    overhead = messages.encoded_size(messages.text(""))
    messages.validate(messages.text("a" * (messages.MAX_MSG_BYTES - overhead)))
    too_big = messages.text("a" * (messages.MAX_MSG_BYTES - overhead + 1))
    with pytest.raises(MessageInvalid, match=r"msg is 2049 bytes; DingTalk accepts at most 2048"):
        messages.validate(too_big)


def test_size_counts_utf8_bytes_not_characters() -> None:
    msg = messages.text("审" * 700)  # 700 characters, 2100 bytes
    with pytest.raises(MessageInvalid, match="bytes; DingTalk accepts at most 2048"):
        messages.validate(msg)


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        ({"msgtype": "sticker", "sticker": {}}, "msg.msgtype must be one of"),
        ({"text": {"content": "x"}}, "msg.msgtype must be one of"),
        ({"msgtype": "text"}, "msg.text is required"),
        ({"msgtype": "text", "text": {}}, "msg.text.content is required"),
        ({"msgtype": "text", "text": {"content": 5}}, "msg.text.content must be a string"),
        ({"msgtype": "image", "image": {}}, "msg.image.media_id is required"),
        ({"msgtype": "file", "file": {"media_id": ""}}, "msg.file.media_id is required"),
        ({"msgtype": "voice", "voice": {"media_id": "@m", "duration": "60"}}, "msg.voice.duration"),
        ({"msgtype": "voice", "voice": {"media_id": "@m"}}, "msg.voice.duration is required"),
        ({"msgtype": "link", "link": {"messageUrl": "u", "picUrl": "p", "title": "t"}}, "msg.link.text is required"),
        ({"msgtype": "link", "link": {"message_url": "u", "picUrl": "p", "title": "t", "text": "x"}},
         "msg.link.messageUrl is required"),
        ({"msgtype": "markdown", "markdown": {"text": "x"}}, "msg.markdown.title is required"),
        ({"msgtype": "oa", "oa": {"head": {"bgcolor": "FFBBBBBB", "text": "t"}}}, "msg.oa.message_url is required"),
        ({"msgtype": "oa", "oa": {"message_url": "u"}}, "msg.oa.head is required"),
        ({"msgtype": "oa", "oa": {"message_url": "u", "head": {"bgcolor": "0xFFBBBBBB", "text": "t"}}},
         "msg.oa.head.bgcolor must be 8 hex digits without 0x"),
        ({"msgtype": "oa", "oa": {"message_url": "u", "head": {"bgcolor": "FFBBBBBB", "text": "t"},
                                  "status_bar": {"status_value": "x", "status_bg": "FF78C06E"}}},
         "msg.oa.status_bar.status_bg must be 0x"),
        ({"msgtype": "oa", "oa": {"message_url": "u", "head": {"bgcolor": "FFBBBBBB", "text": "t"},
                                  "status_bar": {"status_bg": "0xFF78C06E"}}},
         "msg.oa.status_bar.status_value is required"),
        ({"msgtype": "oa", "oa": {"message_url": "u", "head": {"bgcolor": "FFBBBBBB", "text": "t"},
                                  "body": {"form": [{"key": "k", "value": 3}]}}},
         r"msg.oa.body.form[0] must be an object with string key and value"),
        ({"msgtype": "oa", "oa": {"message_url": "u", "head": {"bgcolor": "FFBBBBBB", "text": "t"},
                                  "body": {"file_count": 3}}},
         "msg.oa.body.file_count must be a string"),
        ({"msgtype": "action_card", "action_card": {"title": "t", "markdown": "m"}},
         "needs single_title + single_url or a non-empty btn_json_list"),
        ({"msgtype": "action_card", "action_card": {"title": "t", "markdown": "m", "single_title": "x"}},
         "must be given together"),
        ({"msgtype": "action_card", "action_card": {"title": "t", "markdown": "m", "single_title": "x",
                                                    "single_url": "u", "btn_json_list": [
                                                        {"title": "a", "action_url": "b"}]}},
         "not both"),
        ({"msgtype": "action_card", "action_card": {"title": "t", "markdown": "m", "btn_orientation": "2",
                                                    "btn_json_list": [{"title": "a", "action_url": "b"}]}},
         "btn_orientation must be"),
        ({"msgtype": "action_card", "action_card": {"title": "t", "markdown": "m",
                                                    "btn_json_list": [{"title": "a"}]}},
         r"btn_json_list[0].action_url is required"),
    ],
)
def test_validate_names_the_field(msg: dict, needle: str) -> None:
    with pytest.raises(MessageInvalid) as info:
        messages.validate(msg)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("msg", "field", "limit"),
    [
        (_oa(head_text="一" * 11), "msg.oa.head.text is 11 characters", 10),
        (messages.action_card(title="t" * 65, markdown="m", single_title="s", single_url="u"),
         "msg.action_card.title is 65 characters", 64),
        (messages.action_card(title="t", markdown="m", single_title="s" * 21, single_url="u"),
         "msg.action_card.single_title is 21 characters", 20),
        (messages.action_card(title="t", markdown="m", single_title="s", single_url="u" * 501),
         "msg.action_card.single_url is 501 characters", 500),
        (messages.action_card(title="t", markdown="m", buttons=[("b" * 21, "u")]),
         "msg.action_card.btn_json_list[0].title is 21 characters", 20),
        (messages.action_card(title="t", markdown="m", buttons=[("b", "u" * 701)]),
         "msg.action_card.btn_json_list[0].action_url is 701 characters", 700),
        (messages.action_card(title="t", markdown="m", buttons=[("b", "u" * 300)] * 4),
         "msg.action_card.btn_json_list is", 1000),
        (messages.markdown("t", "x" * 5001), "msg.markdown.text is 5001 characters", 5000),
    ],
)
def test_validate_length_limits_name_field_and_limit(msg: dict, field: str, limit: int) -> None:
    with pytest.raises(MessageInvalid) as info:
        messages.validate(msg)
    assert field in str(info.value)
    assert f"at most {limit}" in str(info.value)


@pytest.mark.parametrize(
    "msg",
    [
        _oa(head_text="一" * 10),
        messages.action_card(title="t" * 64, markdown="m", single_title="s" * 20, single_url="u" * 500),
        messages.action_card(title="t", markdown="m", buttons=[("b" * 20, "u" * 700)]),
    ],
)
def test_values_at_the_limit_pass(msg: dict) -> None:
    messages.validate(msg)


def test_validate_reports_every_problem_at_once() -> None:
    msg = {"msgtype": "link", "link": {"title": "t"}}
    with pytest.raises(MessageInvalid) as info:
        messages.validate(msg)
    text = str(info.value)
    assert "msg.link.messageUrl is required" in text
    assert "msg.link.picUrl is required" in text
    assert "msg.link.text is required" in text


def test_validate_rejects_non_mapping() -> None:
    with pytest.raises(MessageInvalid, match="msg must be an object"):
        messages.validate("{}")  # type: ignore[arg-type]
