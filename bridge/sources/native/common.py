"""What the three native callback handlers (DingTalk, Feishu, WeCom) share: config shapes, replies, recipients.

Why it exists: `bridge.native` is the façade the config loader and the webhook handler call, and each platform
lives in its own module (`native_dingtalk`, `native_feishu`, `native_wecom`). They all need the same config
dataclasses, the same reply type, the same timestamp checks and the same "who receives the card" resolution
(`notify`, `id_map`, templates); keeping those here avoids an import cycle between the façade and the platforms.
Everything here is pure.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

from bridge.decoding import unique_keys
from bridge.errors import ConfigError, MalformedPayload, SignatureInvalid
from bridge.events import ApprovalEvent
from bridge.secret import Secret
from bridge.sources.native import crypto as nc
from bridge.sources.native.stream_keys import StreamKeys

NOTIFY_MODES = ("applicant", "fixed", "path")
_HIDDEN_FIELDS = frozenset({"token", "encrypt", "Encrypt"})  # never offered to templates


@dataclass(frozen=True, slots=True)
class Reply:
    """The HTTP answer the platform expects; the aiohttp handler sends it once the event is stored."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class NativeResult:
    """A verified, decrypted callback: the reply to send and the event to store (None for handshakes)."""

    reply: Reply
    event: ApprovalEvent | None


@dataclass(frozen=True, slots=True)
class WxKeys:
    """DingTalk HTTP push / WeCom credentials (same scheme). `receive_id` is appKey / corpId, not a secret."""

    token: Secret
    aes_key: Secret
    receive_id: str


@dataclass(frozen=True, slots=True)
class FeishuKeys:
    """Feishu credentials: the Verification Token always, the Encrypt Key when encryption is switched on."""

    verification_token: Secret
    encrypt_key: Secret | None = None


@dataclass(frozen=True, slots=True)
class Routing:
    """Who receives the card and what it says, for one native source.

    notify: "applicant" (the payload's initiator), "fixed" (`recipients`, DingTalk userids as given) or
    "path" (`recipients_path`, a dotted path into the decrypted payload; lists are walked, strings are split on
    commas). Platform ids go through `id_map` (platform id → DingTalk userid); a missing id is unresolved unless
    `id_map_passthrough`. DingTalk ids are DingTalk userids already and always pass through.
    Templates use str.format fields named after the payload's fields (see each platform's docstring).
    """

    notify: str
    recipients: tuple[str, ...] = ()
    recipients_path: str | None = None
    id_map: Mapping[str, str] = field(default_factory=dict)
    id_map_passthrough: bool = False
    title_template: str | None = None
    url_template: str | None = None
    pc_url_template: str | None = None


@dataclass(frozen=True, slots=True)
class NativeConfig:
    """A native source's settings: the platform, its credentials and its routing."""

    platform: str  # "dingtalk" | "feishu" | "wecom"
    keys: WxKeys | FeishuKeys | StreamKeys
    routing: Routing

    @property
    def stream(self) -> StreamKeys | None:  # set for a `transport = "stream"` DingTalk source
        return self.keys if isinstance(self.keys, StreamKeys) else None


# ---------------------------------------------------------------- config parsing helpers


def take_str(table: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    """Pop an optional string key (ConfigError if present but not a string, or if `required` and absent)."""
    value = table.pop(key, None)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string")
    return value


def required_str(table: dict[str, Any], key: str, where: str) -> str:
    value = take_str(table, key, where, required=True)
    assert value is not None
    return value


def parse_routing(table: dict[str, Any], where: str, platform: str) -> Routing:
    """Pop the routing keys out of `table` and validate them (the caller rejects whatever is left)."""
    notify = required_str(table, "notify", where)
    if notify not in NOTIFY_MODES:
        raise ConfigError(f"{where}: notify must be one of {', '.join(NOTIFY_MODES)}, not {notify!r}")
    if notify == "applicant" and platform == "feishu":
        raise ConfigError(f"{where}: notify = 'applicant' cannot work for feishu: approval_instance events name "
                          "no applicant; use notify = 'fixed' or 'path'")
    raw_recipients = table.pop("recipients", None)
    recipients: tuple[str, ...] = ()
    if raw_recipients is not None:
        if not isinstance(raw_recipients, list) or not all(isinstance(r, str) and r for r in raw_recipients):
            raise ConfigError(f"{where}: recipients must be a list of DingTalk userids (non-empty strings)")
        recipients = tuple(dict.fromkeys(raw_recipients))
    if notify == "fixed" and not recipients:
        raise ConfigError(f"{where}: notify = 'fixed' needs a non-empty recipients list")
    path = take_str(table, "recipients_path", where, required=notify == "path")
    if path is not None and (not path or any(not part for part in path.split("."))):
        raise ConfigError(f"{where}: recipients_path must be a dotted path such as 'event.user_ids'")
    id_map = table.pop("id_map", None) or {}
    if not isinstance(id_map, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                               for k, v in id_map.items()):
        raise ConfigError(f"{where}: id_map must be a table of platform id = DingTalk userid strings")
    passthrough = table.pop("id_map_passthrough", False)
    if not isinstance(passthrough, bool):
        raise ConfigError(f"{where}: id_map_passthrough must be true or false")
    templates = {k: take_str(table, k, where)
                 for k in ("title_template", "url_template", "pc_url_template")}
    for key, template in templates.items():
        if template is not None:
            _check_template(template, f"{where}.{key}")
    if platform in ("feishu", "wecom") and not templates["url_template"]:
        raise ConfigError(f"{where}: url_template is required for {platform}: its callbacks carry no link, and a "
                          "card cannot be created without one")
    return Routing(notify=notify, recipients=recipients, recipients_path=path, id_map=dict(id_map),
                   id_map_passthrough=passthrough, **templates)


def _check_template(template: str, where: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"{where}: not a valid template: {e}") from None
    for _, name, _, _ in parsed:
        if name is not None and not name.isidentifier():
            raise ConfigError(f"{where}: template fields must be plain payload field names, not {{{name}}}")


# ---------------------------------------------------------------- request helpers


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data, object_pairs_hook=unique_keys)
    except MalformedPayload as exc:
        raise MalformedPayload(f"{what}: {exc.message}") from None
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayload(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} must be a JSON object")
    return value


def refuse_xml_declarations(data: bytes, what: str) -> str:
    """The XML text, once it is known to hold no DTD: no entity expansion ("billion laughs"), no external entities.

    Only UTF-8 is accepted, so a UTF-16 or UTF-32 body cannot hide a declaration from the text search.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload(f"{what} is not UTF-8 XML") from None
    if "\x00" in text:
        raise MalformedPayload(f"{what} is not UTF-8 XML (it contains NUL characters)")
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise MalformedPayload(f"{what} contains a DOCTYPE or ENTITY declaration, which is refused")
    return text


def parse_xml(data: bytes, what: str) -> ElementTree.Element:
    text = refuse_xml_declarations(data, what)
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise MalformedPayload(f"{what} is not well-formed XML ({e})") from None


def xml_to_dict(element: ElementTree.Element) -> dict[str, Any]:
    """Children as a dict: leaf text for leaves, a dict for nested elements, a list for repeated tags."""
    out: dict[str, Any] = {}
    for child in element:
        value: Any = xml_to_dict(child) if len(child) else (child.text or "")
        if child.tag in out:
            previous = out[child.tag]
            out[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[child.tag] = value
    return out


def check_timestamp(value: str, now: datetime, tolerance_s: int, what: str) -> None:
    """SignatureInvalid unless `value` (unix seconds, or milliseconds if 13+ digits) is within tolerance of now."""
    if not value.isdigit():
        raise SignatureInvalid(f"{what} is not a unix timestamp")
    seconds = int(value) / 1000 if len(value) >= 13 else int(value)
    skew = abs(now.timestamp() - seconds)
    if skew > tolerance_s:
        raise SignatureInvalid(f"{what} is {skew:.0f} s away from now (tolerance {tolerance_s} s): stale or replayed")


def from_epoch(value: Any) -> datetime | None:
    """A UTC datetime from an epoch int or digit string, unit by length: under 12 digits seconds, 12 to 15
    milliseconds, 16 or more microseconds (Feishu's create_time has been seen with 16). None if unusable."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isdigit():
        return None
    divisor = 1 if len(text) < 12 else 1000 if len(text) < 16 else 1_000_000
    try:
        return datetime.fromtimestamp(int(text) / divisor, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- recipients and card fields


def scalars(mapping: Mapping[str, Any]) -> dict[str, str]:
    """The scalar fields of a payload, as strings, for templates (tokens and ciphertexts left out)."""
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if key in _HIDDEN_FIELDS or isinstance(value, (dict, list)) or value is None:
            continue
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def walk_path(root: Any, path: str) -> list[str]:
    """All string leaves at a dotted path; lists are walked element by element, strings split on commas."""
    nodes: list[Any] = [root]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in nodes:
            for item in node if isinstance(node, list) else [node]:
                if isinstance(item, dict) and part in item:
                    nxt.append(item[part])
        nodes = nxt
    found: list[str] = []
    for node in nodes:
        for item in node if isinstance(node, list) else [node]:
            if isinstance(item, (str, int)) and not isinstance(item, bool):
                found.extend(p.strip() for p in str(item).split(",") if p.strip())
    return found


def render(template: str, fields: Mapping[str, str], key: str, platform: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) when a field is missing."""
    try:
        return template.format_map(fields), None
    except KeyError as e:
        return None, f"{key} needs field {e.args[0]!r}, which this {platform} payload lacks"
    except (AttributeError, IndexError, ValueError) as e:
        return None, f"{key} could not be rendered: {e}"


@dataclass(frozen=True, slots=True)
class CardFields:
    title: str | None
    url: str | None
    pc_url: str | None
    recipients: tuple[str, ...]
    unresolved: str | None
    unmapped: tuple[str, ...] = ()


def resolve_card(
    routing: Routing,
    platform: str,
    *,
    payload: Any,
    fields: Mapping[str, str],
    applicant: str | None,
    payload_title: str | None = None,
    payload_url: str | None = None,
    default_title: str,
) -> CardFields:
    """Work out title, links and recipients; any failure becomes an `unresolved` reason, never an exception.

    Title and url: the payload's own (DingTalk) when present, else the configured template, else (title only)
    `default_title`. Recipients: per `routing.notify`, then mapped through `id_map`.
    """
    reasons: list[str] = []
    title, url, pc_url = payload_title or None, payload_url or None, None
    if title is None and routing.title_template:
        title, why = render(routing.title_template, fields, "title_template", platform)
        if why:
            reasons.append(why)
    title = title or (default_title if not reasons else None)
    if url is None and routing.url_template:
        url, why = render(routing.url_template, fields, "url_template", platform)
        if why:
            reasons.append(why)
    if routing.pc_url_template:
        pc_url, why = render(routing.pc_url_template, fields, "pc_url_template", platform)
        if why:
            reasons.append(why)

    ids: list[str]
    if routing.notify == "fixed":
        ids = list(routing.recipients)
    elif routing.notify == "applicant":
        ids = [applicant] if applicant else []
        if not ids:
            reasons.append(f"notify = 'applicant' but this {platform} payload names no applicant")
    else:
        assert routing.recipients_path is not None
        ids = walk_path(payload, routing.recipients_path)
        if not ids:
            reasons.append(f"recipients_path {routing.recipients_path!r} found no ids in this {platform} payload")
    recipients, unmapped = _map_ids(routing, platform, ids) if routing.notify != "fixed" else (ids, [])
    if ids and not recipients:
        shown = ", ".join(unmapped[:5]) + (", ..." if len(unmapped) > 5 else "")
        reasons.append(f"id_map has no DingTalk userid for {platform} user {shown}")
    return CardFields(
        title=title,
        url=url,
        pc_url=pc_url,
        recipients=tuple(dict.fromkeys(recipients)),
        unresolved="; ".join(reasons) or None,
        unmapped=tuple(unmapped),
    )


def _map_ids(routing: Routing, platform: str, ids: Iterable[str]) -> tuple[list[str], list[str]]:
    mapped: list[str] = []
    unmapped: list[str] = []
    for pid in ids:
        if pid in routing.id_map:
            mapped.append(routing.id_map[pid])
        elif routing.id_map_passthrough or platform == "dingtalk":
            mapped.append(pid)
        else:
            unmapped.append(pid)
    return mapped, unmapped


def card_event_fields(card: CardFields) -> dict[str, Any]:
    """The ApprovalEvent keyword arguments that come from `resolve_card`."""
    extra = {"unmapped_ids": ",".join(card.unmapped)} if card.unmapped else {}
    return {
        "title": card.title,
        "url": card.url,
        "pc_url": card.pc_url,
        "recipients": card.recipients,
        "unresolved": card.unresolved,
        "extra": extra,
    }


def wx_keys(cfg: NativeConfig) -> WxKeys:
    """The keys of a WXBizMsgCrypt-family source (DingTalk push, WeCom)."""
    assert isinstance(cfg.keys, WxKeys)
    return cfg.keys


def wx_verify_decrypt(keys: WxKeys, platform: str, signature: str | None, timestamp: str | None,
                      nonce: str | None, encrypt: str, now: datetime, tolerance_s: int) -> bytes:
    """The WXBizMsgCrypt family (DingTalk HTTP push, WeCom): signature first, then the timestamp, then decrypt.

    Checking the signature before touching the ciphertext means an unauthenticated body never reaches the
    cipher, so answers cannot tell padding errors apart for an attacker."""
    if not signature or not timestamp or nonce is None:
        raise SignatureInvalid(f"{platform} callback without msg_signature, timestamp and nonce query parameters")
    if not nc.signatures_match(nc.wx_signature(keys.token.reveal(), timestamp, nonce, encrypt), signature):
        raise SignatureInvalid(f"{platform} msg_signature does not match (wrong token, or a tampered body)")
    check_timestamp(timestamp, now, tolerance_s, f"the {platform} timestamp")
    return nc.wx_decrypt(nc.wx_key(keys.aes_key.reveal()), encrypt, keys.receive_id)
