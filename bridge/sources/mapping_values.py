"""Value conversions for mapped sources: times in the sender's zone, recipient lists, id maps, hashed event ids.

Pure functions of a value and the checked mapping settings; each raises ValueError (or returns a reason)
phrased for the integrator, and the caller names the sender's path in the problem.

Times: ERP and OA systems in China send local wall-clock time without an offset (`"2026-11-29 10:00:00"`),
so a mapped source has a `timezone` (default Asia/Shanghai) that such times are read in; a time that carries
an offset keeps it. `time_format = "auto"` also takes epoch seconds or milliseconds (told apart by size),
dates with slashes, and a bare date. A date in one field and a time in another is a template:
`occurred_at = "{createdate} {createtime}"`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo

from bridge import events

MAPPED_TIME_FORMATS = (*events.TIME_FORMATS, "auto")
DEFAULT_TIMEZONE = "Asia/Shanghai"
RESOLVED_LATER = ("mobile:", "unionid:")  # recipients another part of bridge resolves; never id-mapped
_MS_THRESHOLD = 10**11  # epoch numbers at or above this are milliseconds (10**11 s is the year 5138)
_LOCAL = re.compile(
    r"(?P<y>\d{4})[-/](?P<mo>\d{1,2})[-/](?P<d>\d{1,2})"
    r"(?:[Tt ]+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?P<frac>\.\d{1,9})?)?)?"
    r"\s*(?P<offset>[Zz]|[+-]\d{2}:?\d{2})?"
)
_STRICT_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?")
_DIGITS = re.compile(r"\d{1,20}(?:\.\d{1,9})?")


def parse_time(value: object, time_format: str, zone: tzinfo) -> datetime:
    """A mapped source's time as aware UTC. rfc3339 without an offset is read in `zone`; see module docs."""
    if time_format in ("unix_s", "unix_ms"):
        return events.parse_time(value, time_format, "")
    if time_format == "auto" and not isinstance(value, bool) and isinstance(value, int | float | str):
        text = str(value).strip()
        if _DIGITS.fullmatch(text):
            unit = "unix_ms" if float(text) >= _MS_THRESHOLD else "unix_s"
            return events.parse_time(text, unit, "")
        if (m := _LOCAL.fullmatch(text)) is not None:
            return _local(m, zone, text)
        raise ValueError(f"expected a time (like 2026-11-29 10:00:00, an RFC 3339 time, or epoch seconds or "
                         f"milliseconds), got {value!r}"[:200])
    if isinstance(value, str) and _STRICT_LOCAL.fullmatch(value.strip()):
        m = _LOCAL.fullmatch(value.strip())
        assert m is not None
        return _local(m, zone, value)
    return events.parse_time(value, "rfc3339", "")


def _local(m: re.Match[str], zone: tzinfo, text: str) -> datetime:
    g = m.groupdict()
    if g["offset"] is not None:
        offset = g["offset"].upper()
        if offset != "Z" and ":" not in offset:
            offset = offset[:3] + ":" + offset[3:]
        iso = f"{g['y']}-{int(g['mo']):02d}-{int(g['d']):02d}T{int(g['h'] or 0):02d}:{g['mi'] or '00'}:" \
              f"{g['s'] or '00'}{g['frac'] or ''}{offset}"  # fmt: skip
        return events.parse_time(iso, "rfc3339", "")
    try:
        frac = int(((g["frac"] or ".0")[1:] + "000000")[:6])
        local = datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                         int(g["s"] or 0), frac, tzinfo=zone)  # fmt: skip
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date and time") from None
    result = local.astimezone(UTC)
    if not datetime(2000, 1, 1, tzinfo=UTC) <= result < datetime(2200, 1, 1, tzinfo=UTC):
        raise ValueError(f"{text!r} is not a time between 2000 and 2200")
    return result


def recipient_list(value: object) -> tuple[list[str], str | None]:
    """Whatever a recipients path gave, as a flat list of id strings, or a reason it cannot be one.

    A string is split on commas; a number is one id; a list is flattened (a projection over objects nested in
    a list gives a list, sometimes of lists); nulls inside are skipped; objects and booleans are refused."""
    out: list[str] = []
    for item in _flatten(value):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            return [], f"expected user ids (strings or numbers), found {events.kind_of(item)}"
        if isinstance(item, float):
            item = int(item) if item.is_integer() else item
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return out, None


def _flatten(value: object) -> Iterable[object]:
    if isinstance(value, list | tuple):
        for v in value:
            if v is not None:
                yield from _flatten(v)
    else:
        yield value


def map_ids(ids: list[str], id_map: Mapping[str, str], passthrough: bool) -> tuple[list[str], list[str]]:
    """(DingTalk recipients, ids that had no entry). Without an id map every id passes through as it is;
    `mobile:` / `unionid:` recipients always do (they are resolved later, in the worker)."""
    if not id_map:
        return ids, []
    mapped: list[str] = []
    unmapped: list[str] = []
    for pid in ids:
        if pid.startswith(RESOLVED_LATER):
            mapped.append(pid)
        elif pid in id_map:
            mapped.append(id_map[pid])
        elif passthrough:
            mapped.append(pid)
        else:
            unmapped.append(pid)
    return list(dict.fromkeys(mapped)), unmapped


def hashed_id(values: Iterable[object]) -> str:
    """A stable event id from chosen payload values, for systems that send none: same values, same id."""
    text = json.dumps(list(values), ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def header(headers: Mapping[str, str], names: Iterable[str]) -> tuple[str, str] | None:
    """The first of `names` present (case-insensitively) with a non-blank value: (name, value)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        value = lowered.get(name.lower(), "").strip()
        if value:
            return name, value
    return None
