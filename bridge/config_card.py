"""The card look in the configuration: [statuses], [card] and each source's [sources.card] (card templates).

Why it exists apart from bridge.config: card templates are a small language of their own (bridge.cards), and
their checks need a rendered card: each template is parsed and its names checked (`{approval.titel}` is an
error naming the key), then every source's effective template renders a sample event through the very
function the decision uses (bridge.decide.card_message), so a template that cannot fit DingTalk's limits
(2048 bytes, oa.head.text 10 characters, 6 visible form rows, link schemes) fails at start-up, naming the
template, instead of being cut on every card.

Shape: `[card]` keeps its global keys (head_color, head_text, on_revoked) and takes the template keys too, as
the default of every source; `[sources.card]` takes the same template keys and look keys (not on_revoked,
which is behaviour, not look) plus `[sources.card.statuses.<state>]` label/colour, each overriding the global
value key by key. A template key left out keeps what the event says.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge import cards, decide, events
from bridge.config_model import CardConfig, SourceConfig, StatusesConfig, StatusStyle
from bridge.dingtalk import messages
from bridge.errors import ConfigError
from bridge.templating import Template, TemplateError
from bridge.tomltable import Table

__all__ = ["CARD_KEYS", "SOURCE_CARD_KEYS", "card", "sample_event", "statuses", "with_templates"]

ON_REVOKED = ("update", "recall")
STATUS_COLOR = re.compile(r"0x[0-9A-Fa-f]{8}")
HEAD_COLOR = re.compile(r"[0-9A-Fa-f]{8}")
TEMPLATE_KEYS = ("title", "num", "unit", "author", "image", "content", "message_url", "pc_message_url")
LOOK_KEYS = ("head_color", "head_text", "rows", *TEMPLATE_KEYS)
CARD_KEYS = ("on_revoked", *LOOK_KEYS)
SOURCE_CARD_KEYS = (*LOOK_KEYS, "statuses")
ROW_KEYS = ("label", "value", "form")
LONGEST_SHOWN = 3  # how many of the longest templated parts an over-limit error names


def statuses(t: Table, defaults: StatusesConfig | None = None) -> StatusesConfig:
    """[statuses] (or [sources.card.statuses]): a label and colour per state, each defaulting to `defaults`'."""
    base = defaults or StatusesConfig()
    names = [f.name for f in dataclasses.fields(StatusesConfig)]
    t.only(names)
    styles = {}
    for name in names:
        default: StatusStyle = getattr(base, name)
        s = t.table(name, f"[{t.path(name)}]")
        s.only(("label", "color"))
        styles[name] = StatusStyle(
            label=s.text("label", default.label),
            color=s.text("color", default.color, pattern=STATUS_COLOR, shape="0xAARRGGBB (8 hex digits after 0x)"),
        )
    return StatusesConfig(**styles)


def card(t: Table) -> CardConfig:
    """[card]: the head and on_revoked of every card, and the default card template of every source."""
    t.only(CARD_KEYS)
    d = CardConfig()
    head_color = t.text("head_color", d.head_color, pattern=HEAD_COLOR, shape="AARRGGBB (8 hex digits, no 0x)")
    head_text = t.text("head_text", d.head_text)
    head = _template(t, "head_text", head_text)
    given = _templates(t)
    template = None
    if given or not head.is_literal:
        template = cards.CardTemplate(statuses=StatusesConfig(), head_color=head_color, head_text=head, **given)
    elif len(head_text) > messages.OA_HEAD_TEXT_MAX:
        raise t.fail("head_text", f"is {len(head_text)} characters; DingTalk's oa.head.text takes at most "
                                  f"{messages.OA_HEAD_TEXT_MAX}")
    return CardConfig(head_color=head_color, head_text=head_text,
                      on_revoked=t.text("on_revoked", d.on_revoked, choices=ON_REVOKED), template=template)


def _template(t: Table, name: str, source: object) -> Template:
    try:
        template = Template.parse(source, t.path(name))
        cards.check_names(template)
    except TemplateError as exc:
        raise ConfigError(f"{t.file}: {exc}") from None
    return template


def _templates(t: Table) -> dict[str, Any]:
    """The template keys `t` gives, parsed (CardTemplate field name → value)."""
    given: dict[str, Any] = {}
    for name in TEMPLATE_KEYS:
        if name in t.data:
            given[name] = _template(t, name, t.data[name])
    if "rows" in t.data:
        given["rows"] = _rows(t)
    return given


def _rows(t: Table) -> tuple[cards.Row, ...]:
    raw = t.data["rows"]
    if not isinstance(raw, list):
        raise t.fail("rows", "expected an array of tables like { label = \"金额\", value = \"{form.amount}\" }, "
                             "{ form = \"供应商\" } or { form = \"*\" }")
    rows = []
    for i, item in enumerate(raw):
        r = Table(item, t.path(f"rows[{i}]"), t.file, f"{t.label} rows[{i}]")
        r.only(ROW_KEYS)
        if ("value" in r.data) == ("form" in r.data):
            raise r.fail("value", "give either value (a template, with its label) or form (an event form row's "
                                  "key, or \"*\" for the rest)")
        label = _template(r, "label", r.data["label"]) if "label" in r.data else None
        if "value" in r.data:
            if label is None:
                raise r.fail("label", "required with value (the row's key on the card)")
            rows.append(cards.Row(label=label, value=_template(r, "value", r.data["value"])))
            continue
        key = r.text("form")
        if key == cards.ALL_ROWS and label is not None:
            raise r.fail("label", "form = \"*\" keeps each row's own key; a label is for one row")
        rows.append(cards.Row(label=label, form=key))
    return tuple(rows)


def with_templates(data: Mapping[str, Any], file: str, sources: list[SourceConfig], card_cfg: CardConfig,
                   global_statuses: StatusesConfig, attempt: Callable[[Callable[[], SourceConfig]], Any]
                   ) -> list[SourceConfig] | None:
    """`sources` with each one's effective card template (None when neither [card] nor [sources.card] sets
    one: the cards look as they always did). Every template is checked on the sample event; None if any
    source failed (its problems went to `attempt`'s list)."""
    raw_sources = data.get("sources") or []
    out: list[SourceConfig] = []
    failed = False
    for i, source in enumerate(sources):
        raw = raw_sources[i] if i < len(raw_sources) and isinstance(raw_sources[i], dict) else {}

        def check(i: int = i, source: SourceConfig = source, raw: dict[str, Any] = raw) -> SourceConfig:
            tpl = _source_template(raw, f"sources[{i}]", file, source.name, card_cfg, global_statuses)
            if tpl is not None:
                _check_sample(tpl, file, f"sources[{i}].card" if "card" in raw else "card", source.name, card_cfg)
            return dataclasses.replace(source, card=tpl)

        checked = attempt(check)
        failed = failed or checked is None
        out.append(checked or source)
    return None if failed else out


def _source_template(raw: Mapping[str, Any], key: str, file: str, name: str, card_cfg: CardConfig,
                     global_statuses: StatusesConfig) -> cards.CardTemplate | None:
    base = card_cfg.template
    if "card" not in raw:
        return dataclasses.replace(base, statuses=global_statuses) if base is not None else None
    t = Table(raw["card"], f"{key}.card", file, f"[sources.card] of {name!r}")
    t.only(SOURCE_CARD_KEYS)
    head_color = t.text("head_color", base.head_color if base else card_cfg.head_color, pattern=HEAD_COLOR,
                        shape="AARRGGBB (8 hex digits, no 0x)")
    head = _template(t, "head_text", t.data["head_text"]) if "head_text" in t.data else (
        base.head_text if base else Template.parse(card_cfg.head_text, "card.head_text"))
    looks = statuses(t.table("statuses"), global_statuses)
    given = _templates(t)
    if base is None:
        return cards.CardTemplate(statuses=looks, head_color=head_color, head_text=head, **given)
    return dataclasses.replace(base, statuses=looks, head_color=head_color, head_text=head, **given)


def sample_event(source: str) -> events.ApprovalEvent:
    """The event every card template is rendered on at load: each card field filled with typical text."""
    approval_id = "SAMPLE-2026-0001"
    return events.ApprovalEvent(
        source=source, event_id="sample-event-1", approval_id=approval_id, status=events.Status.PENDING,
        occurred_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC), title=f"采购申请 {approval_id}",
        recipients=("user01", "user02"), applicant="张三", url=f"https://erp.example.com/approvals/{approval_id}",
        pc_url=f"https://erp.example.com/pc/approvals/{approval_id}",
        form=(events.FormField("申请部门", "行政部"), events.FormField("供应商", "上海某某贸易有限公司"),
              events.FormField("金额", "12,000.00 元")),
        amount=events.Amount("12000.00", "元"), content="办公设备采购，请审批。",
    )


def _check_sample(tpl: cards.CardTemplate, file: str, key: str, source: str, card_cfg: CardConfig) -> None:
    """Render the sample event with `tpl`; a ConfigError names the template (or the card) that breaks a limit."""
    ev = sample_event(source)
    data = decide.merge_card({}, ev)
    ctx = cards.context(data, ev, status=events.Status.PENDING, generation=1)
    head = tpl.head_text.render(ctx)
    if len(head) > messages.OA_HEAD_TEXT_MAX:
        raise ConfigError(f"{file}: {tpl.head_text.name}: renders {len(head)} characters for the sample event "
                          f"({head!r}); DingTalk's oa.head.text takes at most {messages.OA_HEAD_TEXT_MAX}")
    for template in (tpl.message_url, tpl.pc_message_url):
        link = template.render(ctx) if template is not None else ""
        if template is not None and link and (problem := _bad_link(link)):
            raise ConfigError(f"{file}: {template.name}: renders {link[:80]!r} for the sample event: {problem}")
    fixed = [row for row in tpl.rows or () if row.form != cards.ALL_ROWS]
    if len(fixed) > messages.OA_FORM_VISIBLE:
        raise ConfigError(f"{file}: {key}.rows: {len(fixed)} rows, but DingTalk shows only the first "
                          f"{messages.OA_FORM_VISIBLE} of a card's form")
    policy = decide.Policy(statuses=tpl.statuses, card=card_cfg, templates={source: tpl})
    rendered = decide.card_message(policy, data, ev, events.Status.PENDING, 1)
    if rendered.cut:
        sizes = sorted(((len(t.render(ctx).encode()), t.name) for t in tpl.templates()), reverse=True)
        longest = ", ".join(f"{name} {size} bytes" for size, name in sizes[:LONGEST_SHOWN])
        raise ConfigError(f"{file}: {key}: the card for the sample event does not fit DingTalk's "
                          f"{messages.MAX_MSG_BYTES} bytes ({', '.join(rendered.cut)} would be cut on every card); "
                          f"the longest templated parts: {longest}")


def _bad_link(link: str) -> str | None:
    scheme, sep, rest = link.partition("://")
    if not sep or scheme.lower() not in events.URL_SCHEMES or not rest:
        return "not an http(s)://, dingtalk:// or eapp:// link"
    if any(c.isspace() for c in link):
        return "contains whitespace (use url_encode(...) for a link inside a link)"
    if len(link) > events.MAX_URL_CHARS:
        return f"{len(link)} characters, more than the {events.MAX_URL_CHARS} an event's url may have"
    return None
