"""The `[sources.mapping]` table of a mapped source, checked once when the config loads (`parse_config`).

See bridge.sources.mapping for what a mapped source is; this module holds its checked, frozen configuration.
Every problem is named by its key (`sources[0].mapping.fields.titel: unknown canonical field ...`), all at
once. A `preset` is merged in first (bridge.sources.presets), so a problem in an override names the key the
integrator wrote. Paths and templates are compiled here, never per request.
"""

from __future__ import annotations

import difflib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from bridge import events, templating
from bridge.errors import ConfigError, Problem
from bridge.events import Status
from bridge.sources import mapping_values as mv
from bridge.sources import presets
from bridge.sources.mapping_paths import Path

TARGETS = (
    "approval_id", "occurred_at", "title", "recipients", "applicant", "url", "pc_url", "content",
    "amount_num", "amount_unit",
)  # fmt: skip
REQUIRED_TARGETS = ("approval_id", "occurred_at")
KEYS = ("time_format", "event_id", "status", "ignore", "fields", "constants", "statuses", "form", "preset",
        "timezone", "templates", "id_map", "id_map_passthrough", "event_id_header", "event_id_hash")
CARD_TARGETS = ("title", "recipients", "url")  # events.CARD_FIELDS: their absence is explained in `extra`
IDENTITY_STATUSES = tuple((s.value, s) for s in Status)  # without a `statuses` table


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
    preset: str | None = None
    timezone: str = mv.DEFAULT_TIMEZONE
    zone: tzinfo = field(default=zoneinfo.ZoneInfo(mv.DEFAULT_TIMEZONE), compare=False, hash=False, repr=False)
    templates: tuple[tuple[str, templating.Template], ...] = ()
    id_map: tuple[tuple[str, str], ...] = ()  # sender's user id -> DingTalk userid
    id_map_passthrough: bool = False  # ids missing from a non-empty id_map are sent as they are
    event_id_headers: tuple[str, ...] = ()
    event_id_hash: tuple[Path, ...] = ()

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
    preset = table.get("preset")
    if preset is not None:
        try:
            table = presets.merged(preset, table)
        except ValueError as exc:
            raise ConfigError(f"{where}.preset: {exc}") from None
    for key in table:
        if key not in KEYS:
            err("", f"unknown key {key!r}{_hint(key, KEYS)}")
    time_format = table.get("time_format", "rfc3339")
    if time_format not in mv.MAPPED_TIME_FORMATS:
        err("time_format", f"expected one of {', '.join(events.TIME_FORMATS)}, got {time_format!r} (mapped sources "
                           "also take 'auto': epoch seconds or milliseconds, or a date and time)")
        time_format = "rfc3339"
    zone_name, zone = _zone(table.get("timezone", mv.DEFAULT_TIMEZONE), err)
    event_id = _paths(table.get("event_id"), "event_id", err, required=False)
    status = _paths(table.get("status"), "status", err, required=True)
    ignore = _strings(table.get("ignore", []), "ignore", err)
    fields = tuple(
        (target, _paths(value, f"fields.{target}", err, required=True))
        for target, value in _table(table.get("fields", {}), "fields", err, "canonical field", TARGETS)
    )
    templates = _templates(table.get("templates", {}), where, err)
    constants = tuple(
        (target, tuple(value) if isinstance(value, list) else value)
        for target, value in _table(table.get("constants", {}), "constants", err, "canonical field", TARGETS)
    )
    for target in REQUIRED_TARGETS:
        if not any(t == target for t, _ in fields + constants + templates):
            err("fields", f"{target} is required (a path into the incoming JSON)")
    problems: list[Problem] = []
    data, labels = to_canonical({t: (f"constants.{t}", v) for t, v in constants})
    if "occurred_at" in data:
        data["occurred_at"] = _constant_time(data["occurred_at"], time_format, zone, err)
    events.validate_values(data, problems, name=namer(labels))
    for p in problems:
        err(p.field, p.message)
    statuses = _statuses(table, ignore, err)
    form = _form(table.get("form", {}), err)
    id_map = _id_map(table.get("id_map", {}), err)
    passthrough = table.get("id_map_passthrough", False)
    if not isinstance(passthrough, bool):
        err("id_map_passthrough", "expected true or false")
    headers = _strings(table.get("event_id_header", []), "event_id_header", err)
    hashed = _paths(table.get("event_id_hash"), "event_id_hash", err, required=False)
    if errors:
        raise ConfigError("; ".join(errors))
    return MappingConfig(
        status=status, fields=fields, statuses=statuses, time_format=time_format, event_id=event_id,
        event_id_parts=isinstance(table.get("event_id"), list), ignore=frozenset(ignore), constants=constants,
        form=form, preset=preset, timezone=zone_name, zone=zone, templates=templates, id_map=id_map,
        id_map_passthrough=passthrough is True, event_id_headers=tuple(headers), event_id_hash=hashed,
    )  # fmt: skip


def _zone(value: object, err: Callable[[str, str], None]) -> tuple[str, tzinfo]:
    default = mv.DEFAULT_TIMEZONE, zoneinfo.ZoneInfo(mv.DEFAULT_TIMEZONE)
    if not isinstance(value, str) or not value:
        err("timezone", f"expected an IANA time zone name like {mv.DEFAULT_TIMEZONE!r}")
        return default
    try:
        return value, zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        err("timezone", f"unknown time zone {value!r} (use an IANA name like {mv.DEFAULT_TIMEZONE!r} or 'UTC')")
        return default


def _constant_time(value: object, time_format: str, zone: tzinfo, err: Callable[[str, str], None]) -> object:
    try:
        return mv.parse_time(value, time_format, zone).isoformat()
    except ValueError as exc:
        err("constants.occurred_at", str(exc))
        return None


def _templates(value: object, where: str, err: Callable[[str, str], None]
               ) -> tuple[tuple[str, templating.Template], ...]:  # fmt: skip
    out: list[tuple[str, templating.Template]] = []
    for target, text in _table(value, "templates", err, "canonical field", TARGETS):
        try:
            out.append((target, templating.Template.parse(text, f"templates.{target}")))
        except templating.TemplateError as exc:
            err(f"templates.{target}", f"{exc.why} (at character {exc.position + 1})")
    return tuple(out)


def _id_map(value: object, err: Callable[[str, str], None]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str | int) and str(v).strip()
                                              for k, v in value.items()):  # fmt: skip
        err("id_map", "expected a table of sender user id = \"DingTalk userid\" strings")
        return ()
    bad = [k for k, v in value.items() if any(c.isspace() or c == "," for c in str(v).strip())]
    if bad:
        err(f"id_map.{bad[0]}", "a DingTalk userid must not contain whitespace or commas")
    return tuple((k, str(v).strip()) for k, v in value.items())


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




def to_canonical(found: dict[str, tuple[str, object]]) -> tuple[dict[str, object], dict[str, str]]:
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


def namer(labels: dict[str, str]) -> Callable[[str], str]:
    """Canonical field names in problems → the sender's paths (`recipients[2]` → `approvers[2]`)."""

    def name(field: str) -> str:
        if field in labels:
            return labels[field]
        for key, label in labels.items():
            if field.startswith((key + "[", key + ".")):
                return label + field[len(key) :]
        return field

    return name
