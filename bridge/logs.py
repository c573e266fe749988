"""Logging: one structlog configuration for the whole process.

JSON lines when stderr is not a terminal (what log shippers and `grep` want), a readable console format
when it is. Context bound with `structlog.contextvars` (source, approval_id, event_id, job_id, task_id)
appears on every line logged inside it, including lines from stdlib loggers such as aiohttp.access.
A last processor scrubs anything that looks like a secret, as a safety net behind the rule that
secrets are never passed to a logger in the first place.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"(secret|token|password|aes_key|encrypt_key|authorization)", re.IGNORECASE)
_ALLOWED_KEYS = frozenset({"task_id", "token_refreshes", "event_id"})


class _Scrubber:
    """Masks values of secret-looking keys and any registered secret value found inside strings."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()

    def register(self, values: Iterable[str]) -> None:
        self.values = tuple(sorted({v for v in (*self.values, *values) if v and len(v) >= 4}, key=len, reverse=True))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str) and self.values:
            for secret in self.values:
                if secret in value:
                    value = value.replace(secret, "****")
        return value

    def __call__(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key not in _ALLOWED_KEYS and _SECRET_KEYS.search(key) and event_dict[key] not in (None, ""):
                event_dict[key] = "****"
            else:
                event_dict[key] = self._clean(event_dict[key])
        return event_dict


scrubber = _Scrubber()


def register_secrets(values: Iterable[str]) -> None:
    """Tell the log scrubber about secret values (app secret, webhook secrets, admin token)."""
    scrubber.register(values)


def configure(*, fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging once, before anything logs.

    fmt: "json", "console", or "auto" (console on a terminal, JSON otherwise).
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer: list[Any]
    if fmt == "json":
        renderer = [
            structlog.processors.dict_tracebacks,
            scrubber,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        renderer = [scrubber, structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # aiohttp's access log duplicates webhook.* events at info level; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # python-statemachine narrates every transition at debug level, without bridge's dotted event names.
    logging.getLogger("statemachine").setLevel(logging.WARNING)
