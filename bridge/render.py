"""Approval card data → the DingTalk OA `msg` (pure: no I/O, no clock).

Rendering is kept apart from sending so the exact card a person will see is decided, tested and stored in
one place: the worker sends what this module built, byte for byte. Two DingTalk rules shape it:

* the whole `msg` must be at most 2048 bytes, so over-long input is shortened instead of failing a send
  later: hidden form rows (DingTalk shows only the first 6) go first, then the content, the form values and
  the title are cut with "…", each as little as possible: first down to a readable floor each, then, in a
  second round in the same order, further; only if that is still not enough are the form keys cut and
  pc_message_url, the author, the figure and the form dropped. Cuts are made on characters (after lone
  surrogates are replaced), so the result is always valid UTF-8. A card that had to be shortened says so
  on its last content line ("（内容过长，已截断）", never cut itself), and `render()` reports what was cut
  so the caller can log it: nobody should read a cut card as the whole story;
* DingTalk delivers the same content to the same person once a day, so a resubmitted approval's card
  (generation > 1) carries a "（第 N 次提交）" line that makes it differ from the earlier card.

`chunk()` splits recipients into the groups the service sends one card to (DingTalk shows an OA card's
initial status bar only when a send names at most 5 userids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from bridge.dingtalk import messages
from bridge.errors import MessageInvalid

__all__ = ["ELLIPSIS", "TRUNCATED_NOTE", "CardLook", "Rendered", "StatusLook", "StatusLooks", "chunk", "render",
           "render_card", "resubmission_note", "shorten"]

ELLIPSIS = "…"
AUTHOR_PREFIX = "申请人："
TRUNCATED_NOTE = "（内容过长，已截断）"
# How far the first shortening round cuts each part (characters, "…" included) before the second round
# cuts further: DingTalk shows about 3 lines of content, and recommends titles of at most 50 characters.
CONTENT_FLOOR = 60
FORM_VALUE_FLOOR = 20
TITLE_FLOOR = 50


class StatusLook(Protocol):
    """A status bar's look (`bridge.config.StatusStyle` is one): what render needs, not the config loader."""

    @property
    def label(self) -> str: ...
    @property
    def color(self) -> str: ...  # "0xAARRGGBB"


class StatusLooks(Protocol):
    """The status bar looks per approval state (`bridge.config.StatusesConfig` is one)."""

    @property
    def revoked(self) -> StatusLook: ...
    def style(self, status: str) -> StatusLook: ...


class CardLook(Protocol):
    """The card's head (`bridge.config.CardConfig` is one)."""

    @property
    def head_color(self) -> str: ...  # "AARRGGBB"
    @property
    def head_text(self) -> str: ...


def resubmission_note(generation: int) -> str:
    """The line that sets a resubmitted approval's card apart from its earlier cards."""
    return f"（第 {generation} 次提交）"


def shorten(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters, ending in "…" when cut ("" when max_chars <= 0)."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 0:
        return ""
    return text[: max_chars - 1].rstrip() + ELLIPSIS


def chunk(userids: Sequence[str], size: int = 5) -> list[tuple[str, ...]]:
    """`userids` in groups of at most `size`, order kept, duplicates (and empty ids) removed."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    unique = list(dict.fromkeys(u for u in userids if u))
    return [tuple(unique[i : i + size]) for i in range(0, len(unique), size)]


@dataclasses.dataclass(frozen=True, slots=True)
class _Parts:
    """The card's texts, cleaned; each shortening step builds a smaller copy."""

    url: str
    pc_url: str | None
    title: str
    form: tuple[tuple[str, str], ...]
    num: str | None
    unit: str | None
    content: str  # the approval's own content; the resubmission note is kept apart so it is never cut
    note: str
    author: str | None
    image: str | None = None

    def full_content(self) -> str | None:
        return "\n".join(part for part in (self.content, self.note) if part) or None


@dataclasses.dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered card and what had to be cut to fit it (empty when nothing was): "title", "content", ..."""

    msg: dict[str, Any]
    cut: tuple[str, ...] = ()


def render_card(
    card: Mapping[str, Any],
    style: StatusLook,
    card_cfg: CardLook,
    *,
    generation: int = 1,
    approval_id: str,
) -> dict[str, Any]:
    """The OA `msg` of `render()`."""
    return render(card, style, card_cfg, generation=generation, approval_id=approval_id).msg


def render(
    card: Mapping[str, Any],
    style: StatusLook,
    card_cfg: CardLook,
    *,
    generation: int = 1,
    approval_id: str,
) -> Rendered:
    """The OA `msg` for an approval's merged card data, with the status bar in `style`.

    `card` keys (all optional but url): title, url, pc_url, applicant, form [{key, value}], amount
    {num, unit}, content, and from a card template author (shown as is, instead of "申请人：" + applicant)
    and image; recipients are ignored here (see `chunk`). The result always passes `messages.validate`.
    Raises MessageInvalid only when the card cannot fit at all (no url, or a message_url too long for 2048
    bytes on its own) or the configured colours are malformed.
    """
    url = _clean(card.get("url"))
    if not url:
        raise MessageInvalid(f"approval {approval_id}: card data has no url (oa.message_url is required)")
    amount = raw if isinstance(raw := card.get("amount"), Mapping) else {}
    applicant = _clean(card.get("applicant"))
    author = _clean(card.get("author")) if "author" in card else (AUTHOR_PREFIX + applicant if applicant else "")
    head_text = _clean(card_cfg.head_text)
    parts = _Parts(
        url=url,
        pc_url=_clean(card.get("pc_url")) or None,
        title=_clean(card.get("title")),
        form=tuple(
            (_clean(row.get("key")), _clean(row.get("value")))
            for row in card.get("form") or ()
            if isinstance(row, Mapping)
        ),
        num=_clean(amount.get("num")) or None,
        unit=_clean(amount.get("unit")) or None,
        content=_clean(card.get("content")),
        note=resubmission_note(generation) if generation > 1 else "",
        author=author or None,
        image=_clean(card.get("image")) or None,
    )
    # work notifications show the app's name instead of head.text, so an over-long one is cut silently
    cut_head = len(head_text) > messages.OA_HEAD_TEXT_MAX
    head_text = head_text[: messages.OA_HEAD_TEXT_MAX]

    def build(p: _Parts) -> dict[str, Any]:
        return messages.oa(
            message_url=p.url,
            pc_message_url=p.pc_url,
            head_bgcolor=card_cfg.head_color,
            head_text=head_text,
            status_value=style.label,
            status_bg=style.color,
            title=p.title or None,
            form=p.form,
            rich_num=p.num,
            rich_unit=p.unit if p.num else None,
            content=p.full_content(),
            image=p.image,
            author=p.author,
        )

    whole = parts
    if not _fits(build(parts)) and len(parts.form) > messages.OA_FORM_VISIBLE:
        # rows DingTalk would hide anyway go first, and without the note: nobody would have seen them
        parts = dataclasses.replace(parts, form=parts.form[: messages.OA_FORM_VISIBLE])
    if not _fits(build(parts)):
        parts = _fit(dataclasses.replace(parts, note=parts.note + TRUNCATED_NOTE), build)
    msg = build(parts)
    if messages.encoded_size(msg) > messages.MAX_MSG_BYTES:
        raise MessageInvalid(
            f"approval {approval_id}: the card cannot fit in {messages.MAX_MSG_BYTES} bytes even with every "
            f"optional part removed (message_url is {len(parts.url)} characters)"
        )
    messages.validate(msg)
    return Rendered(msg, (("head.text",) if cut_head else ()) + _what_was_cut(whole, parts))


def _what_was_cut(whole: _Parts, fitted: _Parts) -> tuple[str, ...]:
    """The parts `_fit` shortened or dropped, named as in the card (for the caller's log line)."""
    cut = []
    if len(fitted.form) < len(whole.form):
        cut.append("form rows" if len(fitted.form) < messages.OA_FORM_VISIBLE else "hidden form rows")
    kept = whole.form[: len(fitted.form)]
    if any(k != fk for (k, _), (fk, _) in zip(kept, fitted.form, strict=True)):
        cut.append("form keys")
    if any(v != fv for (_, v), (_, fv) in zip(kept, fitted.form, strict=True)):
        cut.append("form values")
    for name, before, after in (("title", whole.title, fitted.title), ("content", whole.content, fitted.content),
                                ("pc_message_url", whole.pc_url, fitted.pc_url), ("author", whole.author,
                                fitted.author), ("rich", whole.num, fitted.num)):
        if before != after:
            cut.append(name)
    return tuple(cut)


def _fits(msg: Mapping[str, Any]) -> bool:
    return messages.encoded_size(msg) <= messages.MAX_MSG_BYTES


def _fit(parts: _Parts, build: Callable[[_Parts], dict[str, Any]]) -> _Parts:
    """Shorten `parts` step by step until the built message fits; each step cuts as little as it can."""
    if _fits(build(parts)):
        return parts
    longest_value = max((len(v) for _, v in parts.form), default=0)
    longest_key = max((len(k) for k, _ in parts.form), default=0)
    # Two rounds in the same order: first down to a readable floor each, then further (to nothing).
    cuts = (
        (_cut_content, CONTENT_FLOOR, len(parts.content)),
        (_cut_values, FORM_VALUE_FLOOR, longest_value),
        (_cut_title, TITLE_FLOOR, len(parts.title)),
        (_cut_content, 0, CONTENT_FLOOR),
        (_cut_values, 0, FORM_VALUE_FLOOR),
        (_cut_title, 0, TITLE_FLOOR),
        (_cut_keys, 0, longest_key),
    )
    for cut, low, high in cuts:
        parts, done = _largest_fitting(parts, cut, low, high, build)
        if done:
            return parts
    for drop in (
        {"pc_url": None},
        {"author": None},
        {"num": None, "unit": None},
        {"form": ()},
    ):
        parts = dataclasses.replace(parts, **drop)
        if _fits(build(parts)):
            return parts
    return parts


def _cut_content(p: _Parts, n: int) -> _Parts:
    return dataclasses.replace(p, content=shorten(p.content, n))


def _cut_values(p: _Parts, n: int) -> _Parts:
    return dataclasses.replace(p, form=tuple((k, shorten(v, n)) for k, v in p.form))


def _cut_title(p: _Parts, n: int) -> _Parts:
    return dataclasses.replace(p, title=shorten(p.title, n))


def _cut_keys(p: _Parts, n: int) -> _Parts:
    return dataclasses.replace(p, form=tuple((shorten(k, n), v) for k, v in p.form))


def _largest_fitting(
    parts: _Parts,
    cut: Callable[[_Parts, int], _Parts],
    low: int,
    high: int,
    build: Callable[[_Parts], dict[str, Any]],
) -> tuple[_Parts, bool]:
    """Binary search for the largest limit n in [low, high] with `cut(parts, n)` fitting. Sizes grow with n,
    so the search is exact. Returns the cut parts and whether they fit (if none fits: cut to low, False)."""
    low = min(low, high)
    if _fits(build(cut(parts, high))):
        return cut(parts, high), True
    if not _fits(build(cut(parts, low))):
        return cut(parts, low), False
    lo, hi = low, high  # invariant: lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits(build(cut(parts, mid))):
            lo = mid
        else:
            hi = mid
    return cut(parts, lo), True


def _clean(value: object) -> str:
    """A card value as text: stripped, None as "", lone surrogates (invalid in UTF-8) replaced by U+FFFD."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").strip()
