"""Card templates: what a source's cards say, set in the configuration (pure: no I/O, no clock).

Why it exists: the card bridge draws from an event (its title, its form rows as sent, "申请人：" + applicant)
is rarely what an ERP team wants its approvers to read. A `CardTemplate` (loaded from `[card]` and
`[sources.card]` by bridge.config_card) says, per source: the title, which form rows appear in what order
under which labels, the figure (num/unit), author, image, content, the links and the head; its status bar
looks are the source's own too. Templates are bridge.templating's `{expression}` strings (JMESPath data
lookup only: no code runs) over three names:

    event      the event that makes the card (bridge.events.ApprovalEvent.to_dict: event_id, status, title,
               form, amount, extra, ...)
    approval   the card data of the approval so far (title, applicant, url, pc_url, form, amount, content,
               recipients) and its approval_id, source, status (the state the card shows) and generation
    form       the approval's form values by key: {form."金额"}

`check_names` refuses, at load, a hole whose path starts with another name or names a field these do not
have, so a typo is a configuration error instead of an empty line on every card. `apply` turns the card
data and the context into the card data `bridge.render` draws; rendering (and the 2048-byte fit) stays there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.events import ApprovalEvent
from bridge.render import StatusLooks
from bridge.templating import MissingValue, Template, TemplateError, compiled

__all__ = ["APPROVAL_FIELDS", "EVENT_FIELDS", "ROOTS", "CardTemplate", "Look", "Row", "apply", "check_names",
           "context", "look"]

EVENT_FIELDS = ("source", "event_id", "approval_id", "status", "occurred_at", "title", "recipients", "applicant",
                "url", "pc_url", "form", "amount", "content", "raw_status", "note", "unresolved", "extra")
APPROVAL_FIELDS = ("source", "approval_id", "status", "generation", "title", "recipients", "applicant", "url",
                   "pc_url", "form", "amount", "content")
ROOTS: dict[str, tuple[str, ...] | None] = {"event": EVENT_FIELDS, "approval": APPROVAL_FIELDS, "form": None}
CARD_DATA = ("title", "recipients", "applicant", "url", "pc_url", "form", "amount", "content")
ALL_ROWS = "*"  # a row entry `form = "*"`: every form row of the event that no other entry names
DEFAULT_HEAD_TEXT = "审批"  # when a head_text template renders nothing (DingTalk requires one)


@dataclass(frozen=True, slots=True)
class Row:
    """One entry of a template's form rows: a `value` template under `label`, or the event's own row whose
    key is `form` (shown under `label`, or its own key), or with `form = "*"` every row no entry names."""

    label: Template | None = None
    value: Template | None = None
    form: str | None = None


@dataclass(frozen=True, slots=True)
class Look:
    """The head a template gives a card (a `bridge.render.CardLook`)."""

    head_color: str
    head_text: str


@dataclass(frozen=True, slots=True)
class CardTemplate:
    """A source's card template. A None template keeps what the event says; `rows` None keeps its rows."""

    statuses: StatusLooks
    head_color: str
    head_text: Template
    title: Template | None = None
    rows: tuple[Row, ...] | None = None
    num: Template | None = None
    unit: Template | None = None
    author: Template | None = None
    image: Template | None = None
    content: Template | None = None
    message_url: Template | None = None
    pc_message_url: Template | None = None

    def templates(self) -> Iterator[Template]:
        """Every template in it (rows' labels and values included), for checks that name each one."""
        yield self.head_text
        for t in (self.title, self.num, self.unit, self.author, self.image, self.content, self.message_url,
                  self.pc_message_url):
            if t is not None:
                yield t
        for row in self.rows or ():
            yield from (t for t in (row.label, row.value) if t is not None)


def context(card: Mapping[str, Any], event: ApprovalEvent, *, status: str, generation: int) -> dict[str, Any]:
    """What the templates see for `event` making a card of the approval whose card data is `card`."""
    approval = {name: card.get(name) for name in CARD_DATA}
    approval.update(source=event.source, approval_id=event.approval_id, status=status, generation=generation)
    form = {str(row.get("key")): row.get("value") for row in card.get("form") or () if isinstance(row, Mapping)}
    return {"event": event.to_dict(), "approval": approval, "form": form}


def look(tpl: CardTemplate, ctx: Mapping[str, Any]) -> Look:
    return Look(head_color=tpl.head_color, head_text=tpl.head_text.render(ctx).strip() or DEFAULT_HEAD_TEXT)


def apply(tpl: CardTemplate, card: Mapping[str, Any], ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The card data `bridge.render` draws: `card` with each templated part replaced. A link template that
    has a hole that renders nothing keeps the event's link (a card needs one, and a half-filled link leads
    nowhere); other parts may render empty and are left out."""
    out = dict(card)
    if tpl.title is not None:
        out["title"] = tpl.title.render(ctx)
    if tpl.rows is not None:
        out["form"] = _rows(tpl.rows, card.get("form") or (), ctx)
    if tpl.num is not None or tpl.unit is not None:
        given = raw if isinstance(raw := card.get("amount"), Mapping) else {}
        num = tpl.num.render(ctx) if tpl.num is not None else str(given.get("num") or "")
        unit = tpl.unit.render(ctx) if tpl.unit is not None else str(given.get("unit") or "")
        out["amount"] = {"num": num, "unit": unit} if num.strip() else None
    for key, template in (("author", tpl.author), ("image", tpl.image), ("content", tpl.content)):
        if template is not None:
            out[key] = template.render(ctx)
    for key, template in (("url", tpl.message_url), ("pc_url", tpl.pc_message_url)):
        if template is None:
            continue
        try:  # strictly: "https://erp/x?id=" with its id missing is a broken link, not a link
            link = template.render(ctx, strict=True).strip()
        except MissingValue:
            link = ""
        if link:
            out[key] = link
    return out


def _rows(rows: Sequence[Row], given: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> list[dict[str, str]]:
    own = [(str(r.get("key") or ""), str(r.get("value") or "")) for r in given if isinstance(r, Mapping)]
    named = {row.form for row in rows if row.form not in (None, ALL_ROWS)}
    out: list[dict[str, str]] = []
    for row in rows:
        if row.value is not None:
            value = row.value.render(ctx)
            if value.strip():
                out.append({"key": row.label.render(ctx) if row.label else "", "value": value})
        elif row.form == ALL_ROWS:
            out.extend({"key": k, "value": v} for k, v in own if k not in named)
        else:
            found = next((v for k, v in own if k == row.form), None)
            if found is not None:
                out.append({"key": row.label.render(ctx) if row.label else str(row.form), "value": found})
    return out


# --- load-time name checks ----------------------------------------------------------------------------------


def check_names(template: Template) -> None:
    """Raise TemplateError when a hole starts with a name other than event / approval / form, or names a field
    event or approval do not have (`{approval.titel}`)."""
    for hole in template.holes:
        for path in _root_paths(compiled(hole.text).parsed):
            root = path[0]
            if root not in ROOTS:
                raise TemplateError(template.name, hole.position, f"{{{hole.text}}}: unknown name {root!r}; templates "
                                    "see event, approval and form (e.g. {approval.title}, {form.\"金额\"})")
            fields = ROOTS[root]
            if fields is not None and len(path) > 1 and path[1] not in fields:
                raise TemplateError(template.name, hole.position, f"{{{hole.text}}}: {root} has no field "
                                    f"{path[1]!r}; it has {', '.join(fields)}")


_ALL_CHILDREN = frozenset({"or_expression", "and_expression", "not_expression", "comparator", "function_expression",
                           "multi_select_list", "multi_select_dict", "key_val_pair"})
_LEFT_CHILD = frozenset({"index_expression", "projection", "value_projection", "filter_projection", "flatten",
                         "pipe"})


def _root_paths(node: Mapping[str, Any]) -> Iterator[list[str]]:
    """The field paths of a JMESPath tree that are looked up in the template's context itself (not inside a
    projection's elements or a pipe's result): `approval.form[0].key` gives ["approval", "form"]."""
    kind, children = node.get("type"), node.get("children") or []
    if kind == "field":
        yield [str(node["value"])]
    elif kind == "subexpression":
        head = children[0]
        if head.get("type") == "field":
            names = [str(head["value"])]
            for child in children[1:]:
                if child.get("type") == "field":
                    names.append(str(child["value"]))
                    continue
                if child.get("type") == "index_expression" and child["children"][0].get("type") == "field":
                    names.append(str(child["children"][0]["value"]))
                break
            yield names
        else:
            yield from _root_paths(head)
    elif kind in _LEFT_CHILD and children:
        yield from _root_paths(children[0])
    elif kind in _ALL_CHILDREN:
        for child in children:
            yield from _root_paths(child)
