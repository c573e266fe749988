"""Mapped source formats: another system's webhook JSON turned into an ApprovalEvent by configuration.

Systems that cannot send the canonical shape (Weaver, Seeyon, Landray, YonBIP, Kingdee, GitHub, Jira, an OA
relaying DingTalk's bpms_instance_change, a legacy ERP) get a `[sources.mapping]` table instead of code:
paths into their JSON for each canonical field, templates, fixed constants, and a table from their status
values to ours. The table is checked once, strictly, when the config loads (bridge.sources.mapping_config);
`normalise` runs per request and is pure. Every value found goes through `bridge.events.validate_values`,
so a mapped event obeys exactly the canonical rules, and problems are named by the sender's own path
(`approvers[2]`, not `recipients[2]`).

Beyond the shared syntax: any `fields` entry may be a LIST of paths, meaning "first present wins"
(`occurred_at = ["finishTime", "createTime"]`); JSON null and an empty match count as absent; recipients may
be a list, a list of objects' fields (`operators[*].loginid`), a comma-separated string or one number, and
go through `id_map`; integer ids become strings; without `statuses`, canonical status names map to
themselves. Then, for a field no path gave, its template (`templates.title = "{requestname} ({requestid})"`),
then its constant. Times without an offset are read in `timezone`. The event id: `event_id` paths, else
the `event_id_header` header, else the webhook-id (or svix-id) header, else a hash of the `event_id_hash` values.

When a card field (title, recipients, url) gives nothing, the event's `extra` records which of the sender's
paths matched nothing (`from.<field>` / `why.<field>`), so the 400 for a first event without card data names
the sender's field (`operators[*].loginid matched nothing`), not bridge's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge import events, templating
from bridge.errors import Problem
from bridge.events import ApprovalEvent, Status
from bridge.sources import mapping_values as values
from bridge.sources import signatures
from bridge.sources.mapping_config import (
    CARD_TARGETS,
    KEYS,
    REQUIRED_TARGETS,
    TARGETS,
    MappingConfig,
    namer,
    parse_config,
    to_canonical,
)  # fmt: skip
from bridge.sources.mapping_paths import Path

__all__ = ["KEYS", "TARGETS", "MappingConfig", "Path", "normalise", "parse_config"]

Found = dict[str, tuple[str, object]]  # canonical target -> (the sender's path or key, the value)


def normalise(cfg: MappingConfig, source: str, body: object, *, webhook_id: str | None = None,
              headers: Mapping[str, str] | None = None) -> ApprovalEvent:  # fmt: skip
    """One webhook body of a mapped source → ApprovalEvent, or EventInvalid naming every problem.

    `headers` are the request's (for `event_id_header`); `webhook_id` the verified Standard Webhooks id."""
    obj = events.require_object(body)
    problems: list[Problem] = []
    event_id, id_label = _event_id(cfg, obj, webhook_id, headers or {}, problems)
    status, raw_status = _status(cfg, obj, problems)
    found, why = _lookup(cfg, obj)
    for target in REQUIRED_TARGETS:
        if target not in found:
            paths = cfg.paths(target)
            if not paths:
                problems.append(Problem(f"templates.{target}", f"{why[target][1]} (needed for {target})"))
                continue
            names = " or ".join(repr(p.text) for p in paths)
            problems.append(Problem(" | ".join(p.text for p in paths), f"missing path {names} (needed for {target})"))
    extra = _recipients(cfg, found, why, problems)
    _time(cfg, found, problems)
    data, labels = to_canonical(found)
    if event_id is not None:
        data["event_id"], labels["event_id"] = event_id, id_label
    rows = [(label, path.text, v) for label, path in cfg.form if (v := path.get(obj)) is not None]
    if rows:
        data["form"] = [{"key": label, "value": v} for label, _, v in rows]
        labels.update({f"form[{i}].value": text for i, (_, text, _) in enumerate(rows)})
    checked = events.validate_values(data, problems, name=namer(labels))
    if problems:
        raise events.invalid(problems)
    for target in CARD_TARGETS:
        if target not in checked and target in why:
            extra[f"from.{target}"], extra[f"why.{target}"] = why[target]
    note = f"ignored status value {raw_status!r}" if status is None else None
    return ApprovalEvent(source=source, status=status, raw_status=raw_status, note=note, extra=extra, **checked)


def _lookup(cfg: MappingConfig, obj: dict[str, Any]) -> tuple[Found, dict[str, tuple[str, str]]]:
    """Each target's value: first present path, else its template (complete), else its constant. `why` says,
    for a target that got nothing, which sender path or template matched nothing."""
    found: Found = {}
    why: dict[str, tuple[str, str]] = {}
    for target, paths in cfg.fields:
        hit = next(((p.text, v) for p in paths if (v := p.get(obj)) is not None), None)
        if hit is not None:
            found[target] = hit
        else:
            label = " | ".join(p.text for p in paths)
            why[target] = (label, f"{label} matched nothing")
    for target, template in cfg.templates:
        if target in found:
            continue
        try:
            found[target] = (template.name, template.render(obj, strict=True))
            why.pop(target, None)
        except templating.MissingValue as exc:
            why.setdefault(target, (template.name, f"{{{exc.expression}}} matched nothing"))
    for target, value in cfg.constants:
        if target not in found:
            found[target] = (f"constants.{target}", value)
            why.pop(target, None)
    return found, why


def _recipients(cfg: MappingConfig, found: Found, why: dict[str, tuple[str, str]], problems: list[Problem]
                ) -> dict[str, str]:  # fmt: skip
    """Flatten what the recipients path gave and map it through id_map; returns the event's `extra`."""
    if "recipients" not in found:
        return {}
    label, value = found["recipients"]
    ids, bad = values.recipient_list(value)
    if bad is not None:
        problems.append(Problem(label, bad))
        del found["recipients"]
        return {}
    mapped, unmapped = values.map_ids(ids, dict(cfg.id_map), cfg.id_map_passthrough)
    extra = {"unmapped_ids": ",".join(unmapped)[:500]} if unmapped else {}
    if mapped:
        found["recipients"] = (label, mapped)
    else:
        del found["recipients"]
        shown = ", ".join(unmapped[:5]) + (", ..." if len(unmapped) > 5 else "")
        why["recipients"] = (label, f"{label} gave {shown}, none of them in id_map (add them to id_map, or set "
                                    "id_map_passthrough = true to send ids as they are)" if unmapped
                             else f"{label} matched nothing")  # fmt: skip
    return extra


def _time(cfg: MappingConfig, found: Found, problems: list[Problem]) -> None:
    """occurred_at in the source's time format and zone → RFC 3339 for validate_values."""
    if "occurred_at" not in found:
        return
    label, value = found["occurred_at"]
    try:
        found["occurred_at"] = (label, values.parse_time(value, cfg.time_format, cfg.zone).isoformat())
    except ValueError as exc:
        problems.append(Problem(label, str(exc)))
        del found["occurred_at"]


def _scalar(value: object) -> str | None:
    """A status or id part as text; None for objects and arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip() if isinstance(value, str | int) else None


def _event_id(cfg: MappingConfig, obj: dict[str, Any], webhook_id: str | None, headers: Mapping[str, str],
              problems: list[Problem]) -> tuple[str | None, str]:  # fmt: skip
    label = ":".join(p.text for p in cfg.event_id) or "event_id"
    parts = [(p, p.get(obj)) for p in cfg.event_id]
    if cfg.event_id_parts:
        for p, v in parts:
            if v is None:
                problems.append(Problem(p.text, f"missing path {p.text!r} (part of the event id)"))
    elif not parts or parts[0][1] is None:
        return _fallback_id(cfg, obj, webhook_id, headers, label, bool(parts), problems)
    texts = [_scalar(v) for _, v in parts if v is not None]
    if len(texts) != len(parts):
        return None, label
    if None in texts:
        problems.append(Problem(label, "event id parts must be strings or numbers"))
        return None, label
    return ":".join(texts), label  # type: ignore[arg-type]


def _fallback_id(cfg: MappingConfig, obj: dict[str, Any], webhook_id: str | None, headers: Mapping[str, str],
                 label: str, had_path: bool, problems: list[Problem]) -> tuple[str | None, str]:  # fmt: skip
    """No event id path (or it matched nothing): a configured header, webhook-id / svix-id, then a hash."""
    if (hit := values.header(headers, cfg.event_id_headers)) is not None:
        return hit[1], hit[0]
    if webhook_id is not None:
        return webhook_id, "webhook-id"
    hashed = [p.get(obj) for p in cfg.event_id_hash]
    if any(v is not None for v in hashed):
        return values.hashed_id(hashed), "event_id_hash"
    *others, last = [*cfg.event_id_headers, *signatures.DELIVERY_ID_HEADERS]
    names = f"{', '.join(others)} or {last}"
    if had_path:
        problems.append(Problem(label, f"missing path {label!r} (the event id) and no {names} header"))
    elif cfg.event_id_hash:
        problems.append(Problem("event_id_hash", f"no event id: no {names} header, and every event_id_hash path "
                                                 "matched nothing"))
    else:
        problems.append(Problem(label, f"no event id: set mapping.event_id or send a {names} header"))
    return None, label


def _status(cfg: MappingConfig, obj: dict[str, Any], problems: list[Problem]) -> tuple[Status | None, str | None]:
    label = "/".join(p.text for p in cfg.status)
    found = [(p, _scalar(v)) for p in cfg.status if (v := p.get(obj)) is not None]
    for p, text in found:
        if text is None:
            problems.append(Problem(p.text, "expected a string or number status value"))
    if not found:
        names = " or ".join(repr(p.text) for p in cfg.status)
        problems.append(Problem(label, f"missing path {names} (the status)"))
    if not found or any(t is None for _, t in found):
        return None, None
    raw = "/".join(t for _, t in found if t is not None)
    if raw in cfg.ignore:
        return None, raw
    status = next((s for v, s in cfg.statuses if v == raw), None)
    if status is None:
        known = ", ".join(v for v, _ in cfg.statuses)
        ignored = f"; ignored: {', '.join(sorted(cfg.ignore))}" if cfg.ignore else ""
        problems.append(Problem(label, f"unknown status {raw[:64]!r} (known: {known}{ignored})"[:400]))
    return status, raw
