"""bridge's exceptions, in one tree.

    BridgeError
    ├── ConfigError                  the configuration file is invalid (names the file and the key)
    ├── InputError                   a webhook / ingested line was refused; carries the HTTP answer
    │   ├── PayloadTooLarge          413
    │   ├── RequestTimeout           408 (the body came too slowly)
    │   ├── UnsupportedMediaType     415
    │   ├── UnknownSource            404
    │   ├── SignatureInvalid         401 (bad, missing or stale signature)
    │   ├── MalformedPayload         400 (not JSON / XML, undecryptable, wrong receiver id)
    │   └── EventInvalid             400 (well-formed, but fields are wrong: `.problems` names each)
    ├── StorageUnavailable           503: the store cannot take writes right now (read-only, disk full)
    ├── StorageInUse                 another `bridge serve` holds the database (its .lock file)
    ├── AlreadyDecided               apply_decision: the inbox event was decided already (by another decider);
    │                                the transaction changed nothing
    ├── MessageInvalid               a DingTalk `msg` breaks a documented limit; caught before sending
    └── DingTalkError                a DingTalk call failed; `.call`, `.errcode`, `.sub_code`, `.errmsg`,
        │                            `.request_id` say which and how
        ├── TransientDingTalkError   worth retrying later, with backoff
        │   ├── DingTalkNetworkError     connection refused / reset, timeout
        │   ├── DingTalkServerError      HTTP 5xx, errcode -1 or 500 ("system busy")
        │   ├── DingTalkThrottled        90018 / 90002 / 90019 / other 900xx (also under 88), IP ban page
        │   └── DingTalkTokenError       token still refused after one refresh (40014 / 42001 / 40001 /
        │                                88 + sub_code 40014 / 40000 / 42001)
        └── PermanentDingTalkError   retrying cannot help: bad parameters (40035, 400002), 40056, 41020,
                                     60011, 60020, 90020 monthly quota, bad credentials (40096), ...

A closed DingTalk window (recall past 24 h, status bar update past 7 days) is not an exception: the job
handlers see it from the card's age and finish the job as `expired` or `fallback` (bridge.jobs), and a
recall DingTalk refuses with 400002 (`dingtalk.wire.RECALL_REFUSED`) falls back the same way.

The worker retries exactly the `TransientDingTalkError` branch; everything else under `DingTalkError`
goes to the dead-letter list with its message. Docstrings double as default messages. No exception
here ever carries a secret or an access token: the DingTalk client scrubs them before raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BridgeError(Exception):
    """bridge failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(BridgeError):
    """The configuration is invalid."""

    def __init__(self, message: str | None = None, *, messages: Sequence[str] = ()) -> None:
        super().__init__(message or (messages[0] if messages else None))
        # Every problem found, first one first: `bridge check-config` reports them all in one run.
        self.messages: tuple[str, ...] = tuple(messages) or (self.message,)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: which field (dotted path) and what is wrong with it."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InputError(BridgeError):
    """The request was refused."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str | None = None, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(problems)

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.problems:
            body["problems"] = [p.as_dict() for p in self.problems]
        return body


class PayloadTooLarge(InputError):
    """The request body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class RequestTimeout(InputError):
    """The request body was not received in time."""

    status = 408
    code = "request_timeout"


class UnsupportedMediaType(InputError):
    """The request body must be JSON (Content-Type: application/json)."""

    status = 415
    code = "unsupported_media_type"


class UnknownSource(InputError):
    """No source with this name is configured."""

    status = 404
    code = "unknown_source"


class SignatureInvalid(InputError):
    """The request signature is missing, wrong or outside the timestamp tolerance."""

    status = 401
    code = "signature_invalid"


class MalformedPayload(InputError):
    """The request body could not be read."""

    status = 400
    code = "malformed_payload"


class EventInvalid(InputError):
    """The event is invalid."""

    status = 400
    code = "invalid_event"


class StorageUnavailable(BridgeError):
    """Storage is unavailable; nothing was accepted. Retry later."""


class StorageInUse(BridgeError):
    """The database is in use by another bridge serve."""


class AlreadyDecided(BridgeError):
    """The event was already decided; this decision was not written."""


class MessageInvalid(BridgeError):
    """The DingTalk message breaks a documented limit."""


class DingTalkError(BridgeError):
    """A DingTalk call failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        call: str = "",
        errcode: int | None = None,
        sub_code: str | None = None,
        errmsg: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.call = call
        self.errcode = errcode
        self.sub_code = sub_code
        self.errmsg = errmsg
        self.request_id = request_id
        self.http_status = http_status
        self.retry_after = retry_after
        if message is None:
            parts = [f"{call or 'dingtalk'} failed"]
            if errcode is not None:
                parts.append(f"errcode={errcode}")
            if sub_code:
                parts.append(f"sub_code={sub_code}")
            if errmsg:
                parts.append(f"errmsg={errmsg!r}")
            if http_status is not None and http_status != 200:
                parts.append(f"http_status={http_status}")
            if request_id:
                parts.append(f"request_id={request_id}")
            message = " ".join(parts)
        super().__init__(message)

    @property
    def code(self) -> str:
        """The most specific code: the sub_code under an errcode 88 wrapper, else the errcode."""
        if self.sub_code:
            return self.sub_code
        if self.errcode is not None:
            return str(self.errcode)
        if self.http_status is not None:
            return f"http_{self.http_status}"
        return "network"

    def as_dict(self) -> dict[str, object]:
        return {
            "call": self.call,
            "errcode": self.errcode,
            "sub_code": self.sub_code,
            "errmsg": self.errmsg,
            "request_id": self.request_id,
            "http_status": self.http_status,
            "error": type(self).__name__,
            "message": self.message,
        }


class TransientDingTalkError(DingTalkError):
    """A DingTalk call failed in a way that may succeed later."""


class DingTalkNetworkError(TransientDingTalkError):
    """DingTalk could not be reached (connection error or timeout)."""


class DingTalkServerError(TransientDingTalkError):
    """DingTalk answered with a server error (HTTP 5xx, errcode -1 or 500)."""


class DingTalkThrottled(TransientDingTalkError):
    """DingTalk throttled the call (900xx, or the IP-ban page)."""


class DingTalkTokenError(TransientDingTalkError):
    """DingTalk refused the access token even after a refresh."""


class PermanentDingTalkError(DingTalkError):
    """A DingTalk call failed in a way that retrying cannot fix."""
