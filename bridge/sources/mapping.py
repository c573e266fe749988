"""Mapped source formats: another system's webhook JSON turned into an ApprovalEvent by configuration.

Systems that cannot send the canonical shape (an OA relaying DingTalk's bpms_instance_change, Feishu's
approval_instance event, a legacy ERP) get a `[sources.mapping]` table instead of code: paths into their
JSON for each canonical field, fixed constants, and a table from their status values to ours. The table is
checked once, strictly, when the config loads (`parse_config`); `normalise` runs per request and is pure.
Every value found goes through `bridge.events.validate_values`, so a mapped event obeys exactly the
canonical rules, and problems are named by the sender's own path (`approvers[2]`, not `recipients[2]`).

Beyond the shared syntax: any `fields` entry may be a LIST of paths, meaning "first present wins"
(`occurred_at = ["finishTime", "createTime"]`); JSON null counts as absent; a recipients string is split on
commas; integer ids become strings; without `statuses`, canonical status names map to themselves.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge import events
from bridge.errors import ConfigError, Problem
from bridge.events import ApprovalEvent, Status

TARGETS = (
    "approval_id", "occurred_at", "title", "recipients", "applicant", "url", "pc_url", "content",
    "amount_num", "amount_unit",
)  # fmt: skip
REQUIRED_TARGETS = ("approval_id", "occurred_at")
KEYS = ("time_format", "event_id", "status", "ignore", "fields", "constants", "statuses", "form")
_SEGMENT = re.compile(r"([^.\[\]\s]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
IDENTITY_STATUSES = tuple((s.value, s) for s in Status)  # without a `statuses` table


@dataclass(frozen=True, slots=True)
class Path:
    """A dotted path with list indexes into a JSON document, like `event.items[0].id`."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: object) -> Path:
        """Raises ValueError saying what is wrong with the path."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"expected a path string, got {events.kind_of(text)}")
        steps: list[str | int] = []
        for part in text.split("."):
            m = _SEGMENT.fullmatch(part)
            if m is None:
                raise ValueError(f"bad path {text!r}: use dotted names with [n] list indexes, like event.items[0].id")
            steps.append(m.group(1))
            steps.extend(int(i) for i in _INDEX.findall(m.group(2)))
        return cls(text, tuple(steps))

    def get(self, doc: object) -> object | None:
        """The value at this path, or None when a step is missing (a JSON null counts as missing too)."""
        for step in self.steps:
            if isinstance(step, int) and isinstance(doc, list) and step < len(doc):
                doc = doc[step]
            elif isinstance(step, str) and isinstance(doc, dict):
                doc = doc.get(step)
            else:
                return None
        return doc


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """A checked `[sources.mapping]` table. Built by `parse_config`; tuples so it is immutable and hashable."""

    status: tuple[Path, ...]
    fields: tuple[tuple[str, tuple[Path, ...]], ...]
    statuses: tuple[tuple[str, Status], ...] = IDENTITY_STATUSES  # source value -> canonical
    time_format: str = "rfc3339"
    event_id: tuple[Path, ...] = ()
    event_id_parts: bool = False  # event_id was a list: every part required, joined with ":"
    ignore: frozenset[str] = frozenset()
    constants: tuple[tuple[str, Any], ...] = ()
    form: tuple[tuple[str, Path], ...] = ()

    def paths(self, target: str) -> tuple[Path, ...]:
        return next((paths for t, paths in self.fields if t == target), ())


# --- config -----------------------------------------------------------------------------------------------


def parse_config(table: object, where: str) -> MappingConfig:
    """Check a `[sources.mapping]` table; ConfigError names `where` and the key of every problem."""
    errors: list[str] = []

    def err(key: str, message: str) -> None:
        errors.append(f"{where}.{key}: {message}" if key else f"{where}: {message}")

    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {events.kind_of(table)}")
    for key in table:
        if key not in KEYS:
            err("", f"unknown key {key!r}{_hint(key, KEYS)}")
    time_format = table.get("time_format", "rfc3339")
    if time_format not in events.TIME_FORMATS:
        err("time_format", f"expected one of {', '.join(events.TIME_FORMATS)}, got {time_format!r}")
        time_format = "rfc3339"
    event_id = _paths(table.get("event_id"), "event_id", err, required=False)
    status = _paths(table.get("status"), "status", err, required=True)
    ignore = _strings(table.get("ignore", []), "ignore", err)
    fields = tuple(
        (target, _paths(value, f"fields.{target}", err, required=True))
        for target, value in _table(table.get("fields", {}), "fields", err, "canonical field", TARGETS)
    )
    constants = tuple(
        (target, tuple(value) if isinstance(value, list) else value)
        for target, value in _table(table.get("constants", {}), "constants", err, "canonical field", TARGETS)
    )
    for target in REQUIRED_TARGETS:
        if not any(t == target for t, _ in fields + constants):
            err("fields", f"{target} is required (a path into the incoming JSON)")
    problems: list[Problem] = []
    data, labels = _to_canonical({t: (f"constants.{t}", v) for t, v in constants})
    events.validate_values(data, problems, time_format=time_format, name=_namer(labels))
    for p in problems:
        err(p.field, p.message)
    statuses = _statuses(table, ignore, err)
    form = _form(table.get("form", {}), err)
    if errors:
        raise ConfigError("; ".join(errors))
    return MappingConfig(
        status=status, fields=fields, statuses=statuses, time_format=time_format, event_id=event_id,
        event_id_parts=isinstance(table.get("event_id"), list), ignore=frozenset(ignore), constants=constants,
        form=form,
    )  # fmt: skip


def _hint(key: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of {', '.join(choices)})"


def _table(value: object, key: str, err: Callable[[str, str], None], what: str, allowed: tuple[str, ...]
           ) -> list[tuple[str, Any]]:  # fmt: skip
    if not isinstance(value, dict):
        err(key, f"expected a table, got {events.kind_of(value)}")
        return []
    for name in value:
        if name not in allowed:
            err(key, f"unknown {what} {name!r}{_hint(name, allowed)}")
    return [(name, v) for name, v in value.items() if name in allowed]


def _paths(value: object, key: str, err: Callable[[str, str], None], *, required: bool) -> tuple[Path, ...]:
    if value is None:
        if required:
            err(key, "required: a path or a list of paths")
        return ()
    items = value if isinstance(value, list) else [value]
    if not items:
        err(key, "expected a path or a non-empty list of paths, got an empty list")
    try:
        return tuple(Path.parse(item) for item in items)
    except ValueError as exc:
        err(key, str(exc))
        return ()


def _strings(value: object, key: str, err: Callable[[str, str], None]) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        err(key, "expected a string or a list of non-empty strings")
        return []
    return items  # type: ignore[return-value]


def _statuses(table: dict[str, Any], ignore: list[str], err: Callable[[str, str], None]
              ) -> tuple[tuple[str, Status], ...]:  # fmt: skip
    if "statuses" not in table:
        return IDENTITY_STATUSES
    allowed = tuple(s.value for s in Status)
    out: dict[str, Status] = {}
    for name, values in _table(table["statuses"], "statuses", err, "canonical status", allowed):
        for v in _strings(values, f"statuses.{name}", err):
            if v in out:
                err(f"statuses.{name}", f"{v!r} is already mapped to {out[v].value}")
            elif v in ignore:
                err(f"statuses.{name}", f"{v!r} is also listed in ignore")
            out[v] = Status(name)
    if table["statuses"] == {}:
        err("statuses", "expected at least one canonical status with its source values")
    return tuple(out.items())


def _form(value: object, err: Callable[[str, str], None]) -> tuple[tuple[str, Path], ...]:
    rows: list[tuple[str, Path]] = []
    for label, path in _table(value, "form", err, "label", tuple(value) if isinstance(value, dict) else ()):
        if not label.strip() or len(label.strip()) > events.MAX_FORM_KEY_CHARS:
            err("form", f"label {label[:60]!r} must be 1 to {events.MAX_FORM_KEY_CHARS} characters")
        else:
            try:
                rows.append((label.strip(), Path.parse(path)))
            except ValueError as exc:
                err(f"form.{label}", str(exc))
    if len(rows) > events.MAX_FORM_ROWS:
        err("form", f"at most {events.MAX_FORM_ROWS} rows, got {len(rows)}")
    return tuple(rows)


# --- per request ------------------------------------------------------------------------------------------


def normalise(cfg: MappingConfig, source: str, body: object, *, webhook_id: str | None = None) -> ApprovalEvent:
    """One webhook body of a mapped source → ApprovalEvent, or EventInvalid naming every problem."""
    obj = events.require_object(body)
    problems: list[Problem] = []
    event_id, id_label = _event_id(cfg, obj, webhook_id, problems)
    status, raw_status = _status(cfg, obj, problems)
    found: dict[str, tuple[str, object]] = {}
    for target, paths in cfg.fields:
        hit = next(((p.text, v) for p in paths if (v := p.get(obj)) is not None), None)
        if hit is not None:
            found[target] = hit
    for target, value in cfg.constants:
        found.setdefault(target, (f"constants.{target}", value))
    for target in REQUIRED_TARGETS:
        if target not in found:
            paths = cfg.paths(target)
            names = " or ".join(repr(p.text) for p in paths)
            problems.append(Problem(" | ".join(p.text for p in paths), f"missing path {names} (needed for {target})"))
    data, labels = _to_canonical(found)
    if event_id is not None:
        data["event_id"], labels["event_id"] = event_id, id_label
    rows = [(label, path.text, v) for label, path in cfg.form if (v := path.get(obj)) is not None]
    if rows:
        data["form"] = [{"key": label, "value": v} for label, _, v in rows]
        labels.update({f"form[{i}].value": text for i, (_, text, _) in enumerate(rows)})
    values = events.validate_values(data, problems, time_format=cfg.time_format, name=_namer(labels))
    if problems:
        raise events.invalid(problems)
    note = f"ignored status value {raw_status!r}" if status is None else None
    return ApprovalEvent(source=source, status=status, raw_status=raw_status, note=note, **values)


def _scalar(value: object) -> str | None:
    """A status or id part as text; None for objects and arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip() if isinstance(value, str | int) else None


def _event_id(cfg: MappingConfig, obj: dict[str, Any], webhook_id: str | None, problems: list[Problem]
              ) -> tuple[str | None, str]:  # fmt: skip
    label = ":".join(p.text for p in cfg.event_id) or "event_id"
    parts = [(p, p.get(obj)) for p in cfg.event_id]
    if cfg.event_id_parts:
        for p, v in parts:
            if v is None:
                problems.append(Problem(p.text, f"missing path {p.text!r} (part of the event id)"))
    elif not parts or parts[0][1] is None:
        if webhook_id is not None:
            return webhook_id, "webhook-id"
        if parts:
            problems.append(Problem(label, f"missing path {label!r} (the event id) and no webhook-id header"))
        else:
            problems.append(Problem(label, "no event id: set mapping.event_id or send a webhook-id header"))
        return None, label
    texts = [_scalar(v) for _, v in parts if v is not None]
    if len(texts) != len(parts):
        return None, label
    if None in texts:
        problems.append(Problem(label, "event id parts must be strings or numbers"))
        return None, label
    return ":".join(texts), label  # type: ignore[arg-type]


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


def _to_canonical(found: dict[str, tuple[str, object]]) -> tuple[dict[str, object], dict[str, str]]:
    """Target -> (label, value) into canonical-shaped data for validate_values, and field -> label."""
    data: dict[str, object] = {}
    labels: dict[str, str] = {}
    for target, (label, value) in found.items():
        if target == "amount_unit":
            continue
        if target == "amount_num":
            unit = found.get("amount_unit")
            data["amount"] = {"num": value, **({"unit": unit[1]} if unit else {})}
            labels.update({"amount.num": label, **({"amount.unit": unit[0]} if unit else {})})
            continue
        if target == "recipients":
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, list | tuple):
                value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]
        elif target in ("approval_id", "applicant") and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        data[target], labels[target] = value, label
    return data, labels


def _namer(labels: dict[str, str]) -> Callable[[str], str]:
    """Canonical field names in problems → the sender's paths (`recipients[2]` → `approvers[2]`)."""

    def name(field: str) -> str:
        if field in labels:
            return labels[field]
        for key, label in labels.items():
            if field.startswith((key + "[", key + ".")):
                return label + field[len(key) :]
        return field

    return name
