"""Tests for bridge.render: golden OA cards, recipient chunking, shortening to 2048 bytes, resubmissions.

The golden cards in tests/fixtures/cards/ are the exact `msg` DingTalk receives. After an intended change,
regenerate them with `.venv/bin/python -m tests.unit.test_render` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import render
from bridge.config import CardConfig, StatusesConfig, StatusStyle
from bridge.dingtalk import messages
from bridge.errors import MessageInvalid

CARDS = Path(__file__).resolve().parent.parent / "fixtures" / "cards"
STATUSES = StatusesConfig()
CFG = CardConfig()
URL = "https://erp.example.com/approvals/PO-2026-0042"

FULL: dict[str, Any] = {
    "title": "采购申请：服务器 4 台",
    "recipients": ["u1", "u2"],
    "url": URL,
    "pc_url": "https://erp.example.com/pc/approvals/PO-2026-0042",
    "applicant": "张三",
    "form": [
        {"key": "申请部门", "value": "基础架构部"},
        {"key": "供应商", "value": "某某科技有限公司"},
        {"key": "预算科目", "value": "IT 设备"},
    ],
    "amount": {"num": "86400.00", "unit": "元"},
    "content": "用于新机房扩容，详见附件报价单。",
}
MINIMAL: dict[str, Any] = {"url": URL}
OVERSIZED: dict[str, Any] = {
    "title": "超长标题" * 50,
    "url": URL,
    "pc_url": FULL["pc_url"],
    "applicant": "李四",
    "form": [{"key": f"字段{i}", "value": "很长的值" * 40} for i in range(10)],
    "amount": {"num": "1.00", "unit": "元"},
    "content": "非常长的说明。" * 300,
}

# golden name -> (card data, status, generation)
GOLDEN: dict[str, tuple[dict[str, Any], str, int]] = {
    "full": (FULL, "pending", 1),
    "minimal": (MINIMAL, "pending", 1),
    "status_pending": (FULL, "pending", 1),
    "status_approved": (FULL, "approved", 1),
    "status_rejected": (FULL, "rejected", 1),
    "status_revoked": (FULL, "revoked", 1),
    "resubmission": (FULL, "pending", 2),
    "oversized": (OVERSIZED, "approved", 1),
}


def _render(card: dict[str, Any], status: str = "pending", generation: int = 1, cfg: CardConfig = CFG) -> dict:
    return render.render_card(card, STATUSES.style(status), cfg, generation=generation, approval_id="PO-2026-0042")


def _golden(name: str) -> dict:
    card, status, generation = GOLDEN[name]
    return _render(card, status, generation)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_cards(name: str) -> None:
    expected = json.loads((CARDS / f"{name}.json").read_text(encoding="utf-8"))
    msg = _golden(name)
    assert msg == expected
    messages.validate(msg)
    assert messages.encoded_size(msg) <= messages.MAX_MSG_BYTES


def test_full_card_carries_every_part() -> None:
    oa = _render(FULL)["oa"]
    assert oa["message_url"] == URL and oa["pc_message_url"] == FULL["pc_url"]
    assert oa["head"] == {"bgcolor": CFG.head_color, "text": CFG.head_text}
    assert oa["status_bar"] == {"status_value": "待审批", "status_bg": "0xFFFF9D46"}
    body = oa["body"]
    assert body["title"] == FULL["title"]
    assert body["form"] == FULL["form"]
    assert body["rich"] == {"num": "86400.00", "unit": "元"}
    assert body["content"] == FULL["content"]
    assert body["author"] == "申请人：张三"


def test_minimal_card_leaves_optional_parts_out() -> None:
    oa = _render(MINIMAL)["oa"]
    assert set(oa) == {"message_url", "head", "status_bar"}


@pytest.mark.parametrize(
    ("status", "label", "color"),
    [
        ("pending", "待审批", "0xFFFF9D46"),
        ("approved", "已同意", "0xFF78C06E"),
        ("rejected", "已拒绝", "0xFFF65E5E"),
        ("revoked", "已撤销", "0xFF858E99"),
    ],
)
def test_status_bar_in_each_colour(status: str, label: str, color: str) -> None:
    assert _render(FULL, status)["oa"]["status_bar"] == {"status_value": label, "status_bg": color}


def test_configured_style_and_head_are_used_and_normalised() -> None:
    cfg = CardConfig(head_color="0xff123456", head_text="很长很长的应用名称超过十个字")
    msg = render.render_card(MINIMAL, StatusStyle("处理中", "ff00aa00"), cfg, approval_id="x")
    assert msg["oa"]["head"] == {"bgcolor": "FF123456", "text": "很长很长的应用名称超"}
    assert msg["oa"]["status_bar"] == {"status_value": "处理中", "status_bg": "0xFF00AA00"}
    messages.validate(msg)


def test_every_form_row_is_kept_when_it_fits() -> None:
    rows = [{"key": f"k{i}", "value": f"v{i}"} for i in range(9)]
    assert _render({**MINIMAL, "form": rows})["oa"]["body"]["form"] == rows


def test_non_string_values_become_text() -> None:
    card = {**MINIMAL, "amount": {"num": 12.5}, "form": [{"key": "数量", "value": 3}], "title": "  T  "}
    body = _render(card)["oa"]["body"]
    assert body["rich"] == {"num": "12.5"} and body["form"] == [{"key": "数量", "value": "3"}]
    assert body["title"] == "T"


# --- resubmission -------------------------------------------------------------------------------------


def test_resubmission_content_differs_from_the_first_card() -> None:
    first, second, third = (_render(FULL, generation=g)["oa"]["body"]["content"] for g in (1, 2, 3))
    assert len({first, second, third}) == 3
    assert second == FULL["content"] + "\n（第 2 次提交）"
    assert third.endswith("（第 3 次提交）")


def test_resubmission_without_content_makes_the_note_the_content() -> None:
    assert _render(MINIMAL, generation=2)["oa"]["body"] == {"content": "（第 2 次提交）"}


def _own(content: str) -> str:
    """A cut card's content without its "（内容过长，已截断）" note."""
    assert content.endswith(render.TRUNCATED_NOTE), content
    return content.removesuffix(render.TRUNCATED_NOTE).removesuffix("\n")


def test_resubmission_note_survives_shortening() -> None:
    msg = _render(OVERSIZED, generation=7)
    assert msg["oa"]["body"]["content"].endswith("\n（第 7 次提交）" + render.TRUNCATED_NOTE)
    assert messages.encoded_size(msg) <= messages.MAX_MSG_BYTES


# --- shortening ---------------------------------------------------------------------------------------


def test_oversized_card_fits_and_keeps_its_shape() -> None:
    msg = _render(OVERSIZED)
    assert messages.encoded_size(OVERSIZED) > 4 * messages.MAX_MSG_BYTES
    size = messages.encoded_size(msg)
    assert messages.MAX_MSG_BYTES - 50 < size <= messages.MAX_MSG_BYTES  # cut as little as possible
    oa = msg["oa"]
    assert oa["message_url"] == URL and oa["pc_message_url"] == OVERSIZED["pc_url"]
    assert _own(oa["body"]["content"]).endswith(render.ELLIPSIS)
    assert len(oa["body"]["form"]) == messages.OA_FORM_VISIBLE  # hidden rows dropped
    assert [row["key"] for row in oa["body"]["form"]] == [f"字段{i}" for i in range(6)]
    assert oa["body"]["author"] == "申请人：李四" and oa["body"]["rich"] == {"num": "1.00", "unit": "元"}
    messages.validate(msg)


def test_hidden_rows_go_before_anything_visible_is_cut() -> None:
    rows = [{"key": f"k{i}", "value": "值" * 50} for i in range(10)]
    card = {**MINIMAL, "form": rows, "content": "说明" * 100, "title": "标题"}
    assert messages.encoded_size(_render({**card, "form": rows[:6]})) <= messages.MAX_MSG_BYTES
    assert messages.encoded_size(card) > messages.MAX_MSG_BYTES  # all ten rows do not fit
    body = _render(card)["oa"]["body"]
    assert body["form"] == rows[:6] and body["content"] == "说明" * 100 and body["title"] == "标题"


def test_content_is_cut_first_and_only_as_far_as_needed() -> None:
    card = {**FULL, "content": "内" * 1000}
    msg = _render(card)
    body = msg["oa"]["body"]
    assert body["title"] == FULL["title"] and body["form"] == FULL["form"]
    own = _own(body["content"])
    assert own.endswith(render.ELLIPSIS) and len(own) > 400
    # one more character would not fit: the cut is the largest that does
    one_more = render.shorten(card["content"], len(own) + 1) + "\n" + render.TRUNCATED_NOTE
    assert messages.encoded_size(_with_content(msg, one_more)) > messages.MAX_MSG_BYTES


def _with_content(msg: dict, content: str) -> dict:
    copy = json.loads(json.dumps(msg))
    copy["oa"]["body"]["content"] = content
    return copy


def test_form_values_are_cut_after_content_and_before_title() -> None:
    rows = [{"key": f"k{i}", "value": "值" * 300} for i in range(3)]
    card = {**MINIMAL, "title": "标" * 50, "form": rows, "content": "内" * 500}
    body = _render(card)["oa"]["body"]
    assert body["title"] == "标" * 50
    assert all(row["value"].endswith(render.ELLIPSIS) for row in body["form"])
    assert len(_own(body["content"])) == render.CONTENT_FLOOR  # first round stops at the floor
    assert all(len(row["value"]) >= render.FORM_VALUE_FLOOR for row in body["form"])


def test_title_is_cut_last_of_the_three() -> None:
    rows = [{"key": "长" * 50, "value": "值" * 300} for _ in range(6)]
    card = {**MINIMAL, "title": "标" * 200, "form": rows, "content": "内" * 500}
    msg = _render(card)
    body = msg["oa"]["body"]
    assert body["title"].endswith(render.ELLIPSIS) and len(body["title"]) < 200
    assert messages.encoded_size(msg) <= messages.MAX_MSG_BYTES


def test_shorten() -> None:
    assert render.shorten("abcdef", 6) == "abcdef"
    assert render.shorten("abcdef", 4) == "abc…"
    assert render.shorten("ab   cdef", 4) == "ab…"
    assert render.shorten("abcdef", 1) == "…"
    assert render.shorten("abcdef", 0) == ""


def test_emoji_and_json_escapes_are_counted_in_bytes() -> None:
    card = {**MINIMAL, "content": '🙂"\\\n' * 600}
    msg = _render(card)
    raw = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert len(raw) <= messages.MAX_MSG_BYTES
    raw.decode("utf-8")  # valid UTF-8 throughout


def test_lone_surrogates_are_replaced_not_sent() -> None:
    msg = _render({**MINIMAL, "content": "a\ud800b", "title": "\udfff"})
    assert msg["oa"]["body"] == {"title": "\ufffd", "content": "a\ufffdb"}
    messages.validate(msg)


def test_an_unfittable_url_raises_naming_the_approval() -> None:
    with pytest.raises(MessageInvalid, match="PO-2026-0042"):
        _render({"url": "https://erp.example.com/" + "a" * 2100})


def test_a_long_url_drops_optional_parts_instead_of_failing() -> None:
    long_url = "https://erp.example.com/" + "a" * 1700
    msg = _render({**FULL, "url": long_url})
    assert msg["oa"]["message_url"] == long_url and "pc_message_url" not in msg["oa"]
    assert messages.encoded_size(msg) <= messages.MAX_MSG_BYTES


def test_missing_url_raises() -> None:
    with pytest.raises(MessageInvalid, match="no url"):
        _render({"title": "T"})


_TEXT = st.text(st.characters(categories=["Cs", "Lo", "So", "Cc", "Ll", "Zs", "Po"]), max_size=600)


@settings(max_examples=60, deadline=None)
@given(
    title=_TEXT,
    content=_TEXT,
    applicant=st.text(max_size=64),
    rows=st.lists(st.tuples(st.text(max_size=50), _TEXT), max_size=20),
    generation=st.integers(min_value=1, max_value=99),
)
def test_any_input_renders_a_valid_card(
    title: str, content: str, applicant: str, rows: list[tuple[str, str]], generation: int
) -> None:
    card = {
        "url": URL,
        "pc_url": FULL["pc_url"],
        "title": title,
        "content": content,
        "applicant": applicant,
        "form": [{"key": k, "value": v} for k, v in rows],
    }
    msg = _render(card, generation=generation)
    messages.validate(msg)
    json.dumps(msg, ensure_ascii=False).encode("utf-8")  # strict: raises on any unpaired surrogate
    if generation > 1:
        assert msg["oa"]["body"]["content"].endswith(f"（第 {generation} 次提交）")


# --- chunking -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "groups"), [(0, 0), (1, 1), (5, 1), (6, 2), (12, 3)])
def test_chunk_group_counts(count: int, groups: int) -> None:
    ids = [f"u{i}" for i in range(count)]
    result = render.chunk(ids)
    assert len(result) == groups
    assert [u for g in result for u in g] == ids
    assert all(1 <= len(g) <= 5 for g in result)


def test_chunk_keeps_order_and_removes_duplicates() -> None:
    assert render.chunk(["b", "a", "b", "c", "a", "d", "e", "f", ""]) == [("b", "a", "c", "d", "e"), ("f",)]


def test_chunk_size_is_configurable_and_checked() -> None:
    assert render.chunk(["a", "b", "c"], size=2) == [("a", "b"), ("c",)]
    with pytest.raises(ValueError):
        render.chunk(["a"], size=0)


def _write_goldens() -> None:
    CARDS.mkdir(parents=True, exist_ok=True)
    for name in GOLDEN:
        text = json.dumps(_golden(name), ensure_ascii=False, indent=2) + "\n"
        (CARDS / f"{name}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    _write_goldens()


def test_a_card_that_fits_reports_nothing_cut_and_has_no_note() -> None:
    rendered = render.render(FULL, STATUSES.pending, CFG, approval_id="PO-2026-0042")
    assert rendered.cut == () and render.TRUNCATED_NOTE not in rendered.msg["oa"]["body"]["content"]


def test_what_was_cut_is_reported_and_the_card_says_so() -> None:
    rendered = render.render(OVERSIZED, STATUSES.pending, CFG, approval_id="PO-2026-0042")
    assert set(rendered.cut) >= {"hidden form rows", "content"}
    assert rendered.msg["oa"]["body"]["content"].endswith(render.TRUNCATED_NOTE)


def test_dropping_only_rows_dingtalk_would_hide_adds_no_note() -> None:
    rows = [{"key": f"k{i}", "value": "值" * 80} for i in range(10)]
    rendered = render.render({**MINIMAL, "form": rows, "content": "说明"}, STATUSES.pending, CFG, approval_id="x")
    assert rendered.cut == ("hidden form rows",) and rendered.msg["oa"]["body"]["content"] == "说明"


def test_templated_author_and_image_are_shown_as_given() -> None:
    body = _render({**FULL, "author": "ERP · 张三", "image": "@lADOmedia"})["oa"]["body"]
    assert body["author"] == "ERP · 张三" and body["image"] == "@lADOmedia"
