"""Card templates: the configuration ([card], [sources.card]) → the card the decision makes.

Each test loads a real TOML-shaped configuration with `config.from_dict`, so the load-time checks (names,
limits on the sample event) are the ones bridge runs, and renders through `decide.card_message` / `decide`,
the functions the service uses.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bridge import cards, config, decide, render, service
from bridge.cli.present import Style
from bridge.cli.render import draw
from bridge.dingtalk import messages
from bridge.errors import ConfigError
from bridge.events import Amount, ApprovalEvent, FormField, Status
from bridge.records import Approval, InboxEvent, JobKind, Notice, NoticeState, Outcome
from bridge.templating import Template, TemplateError
from tests.unit.helpers import T0, event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cards.md"
BASE: dict[str, Any] = {"dingtalk": {"app_key": "k", "app_secret": "s", "agent_id": 1}}
FORM = (FormField("申请部门", "行政部"), FormField("供应商", "上海某某贸易"), FormField("金额", "12,000 元"))


def load(card: dict[str, Any] | None = None, source_card: dict[str, Any] | None = None, **top: Any) -> config.Config:
    source: dict[str, Any] = {"name": "erp", "signature": "none"}
    if source_card is not None:
        source["card"] = source_card
    data = {**BASE, "sources": [source], **top}
    if card is not None:
        data["card"] = card
    return config.from_dict(data, env={})


def errors_of(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    return "\n".join(info.value.messages)


def ev(status: Status = Status.PENDING, **fields: Any) -> ApprovalEvent:
    base: dict[str, Any] = dict(form=FORM, amount=Amount("12000", "元"), content="办公设备采购，请审批。",
                                pc_url="https://erp.example.com/pc/po/1")
    return event(status, **{**base, **fields})


def card_of(cfg: config.Config, e: ApprovalEvent, status: str = "pending", generation: int = 1) -> dict[str, Any]:
    return decide.card_message(service.policy_for(cfg), decide.merge_card({}, e), e, status, generation).msg["oa"]


# --- rendering -----------------------------------------------------------------------------------------------


def test_without_templates_a_card_is_what_it_always_was() -> None:
    cfg = load()
    assert cfg.sources[0].card is None and service.policy_for(cfg).templates == {}
    e = ev()
    legacy = render.render_card(decide.with_reference(decide.merge_card({}, e), "PO-1"), cfg.statuses.pending,
                                cfg.card, approval_id="PO-1")
    assert card_of(cfg, e) == legacy["oa"]


def test_rows_appear_in_the_configured_order_under_their_labels() -> None:
    cfg = load(source_card={"rows": [
        {"label": "申请人", "value": "{approval.applicant}"},
        {"form": "金额", "label": "金额（含税）"},
        {"form": "*"},
        {"form": "不存在"},
        {"label": "空", "value": "{form.\"不存在\"}"},
    ]})
    form = card_of(cfg, ev())["body"]["form"]
    assert form == [{"key": "申请人", "value": "张三"}, {"key": "金额（含税）", "value": "12,000 元"},
                    {"key": "申请部门", "value": "行政部"}, {"key": "供应商", "value": "上海某某贸易"}]


def test_only_the_named_rows_appear_when_there_is_no_star() -> None:
    cfg = load(source_card={"title": "{approval.title}", "rows": [{"form": "供应商"}]})
    assert card_of(cfg, ev())["body"]["form"] == [{"key": "供应商", "value": "上海某某贸易"}]


def test_every_templated_part_reaches_the_card() -> None:
    cfg = load(source_card={
        "title": "【{approval.source}】{approval.title}", "num": "{approval.amount.num}", "unit": "万元",
        "author": "提交人 {event.applicant}", "image": "@lADOmedia", "content": "{approval.content} ({event.event_id})",
        "head_color": "FF00AA00", "head_text": "{approval.source} 审批",
        "message_url": "dingtalk://dingtalkclient/page/link?url={url_encode(approval.url)}&pc_slide=true",
        "pc_message_url": "https://erp.example.com/pc?id={approval.approval_id}&g={approval.generation}",
    })
    oa = card_of(cfg, ev())
    assert oa["head"] == {"bgcolor": "FF00AA00", "text": "erp 审批"}
    assert oa["message_url"] == ("dingtalk://dingtalkclient/page/link?url=" + quote("https://erp.example.com/po/1",
                                                                                     safe="") + "&pc_slide=true")
    assert "%2F%2Ferp.example.com%2Fpo%2F1" in oa["message_url"]
    assert oa["pc_message_url"] == "https://erp.example.com/pc?id=PO-1&g=1"
    body = oa["body"]
    assert body["title"] == "【erp】采购申请 PO-1" and body["rich"] == {"num": "12000", "unit": "万元"}
    assert body["author"] == "提交人 张三" and body["image"] == "@lADOmedia"
    assert body["content"] == "办公设备采购，请审批。 (PO-1-pending-0)"


def test_a_link_template_that_renders_nothing_keeps_the_events_link() -> None:
    cfg = load(source_card={"pc_message_url": "{event.extra.erp_link}"})
    assert card_of(cfg, ev())["pc_message_url"] == "https://erp.example.com/pc/po/1"


def test_the_global_card_template_is_every_sources_default_and_a_source_overrides_key_by_key() -> None:
    data = {**BASE, "card": {"title": "全局 {approval.title}", "author": "全局作者"},
            "sources": [{"name": "erp", "signature": "none", "card": {"author": "ERP 作者"}},
                        {"name": "oa", "signature": "none"}]}
    cfg = config.from_dict(data, env={})
    body = card_of(cfg, ev())["body"]
    assert body["title"] == "全局 采购申请 PO-1" and body["author"] == "ERP 作者"
    other = dataclasses.replace(ev(), source="oa")
    assert card_of(cfg, other)["body"] == {**body, "author": "全局作者"}


def test_status_labels_per_source_drive_the_send_and_the_update() -> None:
    cfg = load(source_card={"statuses": {"pending": {"label": "等待审批"},
                                         "approved": {"label": "采购已批准", "color": "0xFF2EA043"}}})
    policy = service.policy_for(cfg)
    sent = decide.decide(InboxEvent(1, ev(), T0), None, [], policy, T0)
    assert sent.new_notices[0].msg["oa"]["status_bar"] == {"status_value": "等待审批", "status_bg": "0xFFFF9D46"}
    row = Approval("erp", "PO-1", "pending", T0, 1, sent.approval.card if sent.approval else {}, T0, T0)
    notice = Notice(7, "erp", "PO-1", 1, 0, ("user01",), {}, NoticeState.SENT)
    up = decide.decide(InboxEvent(2, event(Status.APPROVED, minutes=5, card=False), T0), row, [notice], policy, T0)
    assert [(j.kind, j.payload["status_value"], j.payload["status_bg"]) for j in up.jobs] == [
        (JobKind.UPDATE, "采购已批准", "0xFF2EA043")]
    assert cfg.statuses.approved.label == "已同意"  # the global labels are untouched


def test_a_resubmitted_card_never_repeats_the_earlier_one_whatever_the_template() -> None:
    cfg = load(source_card={"title": "固定标题 {approval.approval_id}", "rows": [], "content": "固定内容",
                            "author": "固定"})
    policy = service.policy_for(cfg)
    first = decide.decide(InboxEvent(1, ev(), T0), None, [], policy, T0)
    assert first.approval is not None
    rejected = Approval("erp", "PO-1", "rejected", T0, 1, first.approval.card, T0, T0)
    again = decide.decide(InboxEvent(2, ev(minutes=9), T0), rejected, [], policy, T0)
    assert again.outcome == Outcome.APPLIED and again.new_notices[0].generation == 2
    one, two = first.new_notices[0].msg, again.new_notices[0].msg
    assert messages.encoded_size(one) != messages.encoded_size(two) or one != two
    assert two["oa"]["body"]["content"] == "固定内容\n（第 2 次提交）"


def test_a_card_too_long_at_render_time_is_cut_says_so_and_is_journalled() -> None:
    cfg = load(source_card={"rows": [{"form": "*"}]})
    long_form = tuple(FormField(f"字段{i}", "很长的值" * 60) for i in range(5))
    d = decide.decide(InboxEvent(1, ev(form=long_form), T0), None, [], service.policy_for(cfg), T0)
    msg = d.new_notices[0].msg
    assert messages.encoded_size(msg) <= messages.MAX_MSG_BYTES
    assert msg["oa"]["body"]["content"].endswith(render.TRUNCATED_NOTE)
    [line] = [j for j in d.journal if j.kind == decide.CARD_TRUNCATED]
    assert "form values" in line.data["cut"] and "shortened" in line.message


# --- configuration errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_card", "expected"), [
    ({"titel": "x"}, r"unknown key 'titel'.*did you mean 'title'"),
    ({"title": "{approval.titel}"}, r"sources\[0\]\.card\.title: \{approval\.titel\}: approval has no field 'titel'"),
    ({"title": "{title}"}, r"sources\[0\]\.card\.title: \{title\}: unknown name 'title'"),
    ({"author": "{event.nope}"}, r"sources\[0\]\.card\.author: \{event\.nope\}: event has no field 'nope'"),
    ({"content": "{nofunc(approval.title)}"}, r"sources\[0\]\.card\.content: unknown function nofunc\(\)"),
    ({"title": "{approval.title"}, r"sources\[0\]\.card\.title: '\{' is never closed"),
    ({"rows": [{"label": "x"}]}, r"sources\[0\]\.card\.rows\[0\]\.value: give either value"),
    ({"rows": [{"value": "{approval.title}"}]}, r"sources\[0\]\.card\.rows\[0\]\.label: required with value"),
    ({"rows": [{"form": "*", "label": "x"}]}, r"rows\[0\]\.label: form = \"\*\" keeps each row's own key"),
    ({"rows": [{"form": "a", "colour": "x"}]}, r"unknown key 'colour'"),
    ({"rows": "all"}, r"sources\[0\]\.card\.rows: expected an array"),
    ({"on_revoked": "recall"}, r"unknown key 'on_revoked'"),
    ({"statuses": {"done": {"label": "x"}}}, r"unknown key 'done'"),
    ({"statuses": {"approved": {"color": "green"}}}, r"sources\[0\]\.card\.statuses\.approved\.color: must match"),
    ({"head_color": "0xFF00AA00"}, r"sources\[0\]\.card\.head_color: must match AARRGGBB"),
])
def test_a_bad_template_is_a_config_error_naming_the_key(source_card: dict[str, Any], expected: str) -> None:
    assert re.search(expected, errors_of(source_card=source_card)), errors_of(source_card=source_card)


@pytest.mark.parametrize(("source_card", "expected"), [
    ({"head_text": "{approval.title}"}, r"sources\[0\]\.card\.head_text: renders 21 characters for the sample "
                                        r"event .*at most 10"),
    ({"rows": [{"label": f"r{i}", "value": "x"} for i in range(7)]},
     r"sources\[0\]\.card\.rows: 7 rows, but DingTalk shows only the first 6"),
    ({"message_url": "https://erp.example.com/x?next={approval.title}"},
     r"sources\[0\]\.card\.message_url: renders .* contains whitespace \(use url_encode"),
    ({"pc_message_url": "erp.example.com/{approval.approval_id}"},
     r"sources\[0\]\.card\.pc_message_url: .*not an http\(s\)://, dingtalk:// or eapp:// link"),
    ({"title": "很长" * 400, "content": "{approval.content}" + "说明" * 300},
     r"sources\[0\]\.card: the card for the sample event does not fit DingTalk's 2048 bytes \(.*title.*\); the "
     r"longest templated parts: sources\[0\]\.card\.title 2400 bytes, sources\[0\]\.card\.content"),
])
def test_limits_are_checked_on_the_sample_event_at_load(source_card: dict[str, Any], expected: str) -> None:
    assert re.search(expected, errors_of(source_card=source_card)), errors_of(source_card=source_card)


def test_global_card_errors_name_the_global_key() -> None:
    assert "card.title: {approval.nope}: approval has no field 'nope'" in errors_of(card={"title": "{approval.nope}"})
    assert re.search(r"card\.head_text: is 11 characters", errors_of(card={"head_text": "一" * 11}))


def test_a_template_error_in_one_source_is_reported_with_the_others() -> None:
    seven = {"rows": [{"label": "r", "value": "x"}] * 7}
    data = {**BASE, "sources": [{"name": "erp", "signature": "none", "card": {"title": "{x}"}},
                                {"name": "oa", "signature": "none", "card": seven}],
            "worker": {"concurency": 1}}
    with pytest.raises(ConfigError) as info:
        config.from_dict(data, env={})
    text = "\n".join(info.value.messages)
    assert "sources[0].card.title" in text and "sources[1].card.rows: 7 rows" in text and "concurency" in text


# --- the documentation's example ------------------------------------------------------------------------------


def docs_example() -> dict[str, Any]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Example", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    return tomllib.loads(block)


def test_the_documented_example_loads_and_renders_as_the_page_says() -> None:
    cfg = config.from_dict({**BASE, **docs_example()}, env={"ERP_WEBHOOK_SECRET": "erp-secret-0123456789"})
    e = event(Status.PENDING, url="https://erp.example.com/po/42", amount=Amount("12000", ""),
              title="采购申请 PO-2026-0042", approval_id="PO-2026-0042", content="办公设备采购，请审批。",
              form=(FormField("供应商", "上海某某贸易"), FormField("金额", "12,000 元")))
    oa = card_of(cfg, e)
    assert [r["key"] for r in oa["body"]["form"]] == ["申请人", "金额（含税）", "供应商", "提交次数"]
    assert oa["body"]["rich"] == {"num": "12000", "unit": "元"}
    assert oa["message_url"] == "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Ferp.example.com%2Fpo%2F42" \
                                "&pc_slide=true"
    assert oa["status_bar"]["status_value"] == "等待审批"
    assert card_of(cfg, e, "approved")["status_bar"] == {"status_value": "采购已批准", "status_bg": "0xFF2EA043"}
    shown = DOCS.read_text(encoding="utf-8").split("```console\n", 1)[1].split("\n\n", 1)[0].split("\n", 1)[1]
    assert draw({"msgtype": "oa", "oa": oa}, Style(colour=False)) == shown  # the page's `bridge render` drawing


def test_a_resync_puts_back_the_sources_own_label() -> None:
    from bridge import operate

    cfg = load(source_card={"statuses": {"approved": {"label": "采购已批准"}}})
    row = Approval("erp", "PO-1", "approved", T0, 1, {}, T0, T0)
    notice = Notice(7, "erp", "PO-1", 1, 0, ("user01",), {}, NoticeState.SENT, task_id=11)
    [job] = operate.resync_jobs(cfg, row, [notice])
    assert job.payload["status_value"] == "采购已批准"


@pytest.mark.parametrize("text", [
    "{join(', ', approval.form[*].value)}", "{approval.form[?key=='金额'].value | [0]}", "{event.extra.erp_id}",
    "{form.\"金额\" || approval.amount.num}", "{approval.recipients[0]}", "{length(approval.form)} 行",
    "{event.form[*].{k: key}}", "{{literal}}",
])
def test_names_inside_projections_filters_and_functions_are_checked_only_at_the_root(text: str) -> None:
    cards.check_names(Template.parse(text, "t"))


@pytest.mark.parametrize(("text", "bad"), [
    ("{join(', ', approvals.form[*].value)}", "unknown name 'approvals'"),
    ("{approval.form[?key=='x'].value || event.titl}", "event has no field 'titl'"),
    ("{approval.amont.num}", "approval has no field 'amont'"),
    ("{not_a_root[0]}", "unknown name 'not_a_root'"),
])
def test_a_wrong_name_anywhere_at_the_root_is_refused(text: str, bad: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(bad)):
        cards.check_names(Template.parse(text, "t"))
