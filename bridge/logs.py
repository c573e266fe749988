"""Logging: one structlog configuration for the whole process.

JSON lines when stderr is not a terminal (what log shippers and `grep` want), a readable console format
when it is. Context bound with `structlog.contextvars` (source, approval_id, event_id, job_id, task_id)
appears on every line logged inside it, including lines from stdlib loggers such as aiohttp.access.
A last processor scrubs anything that looks like a secret, as a safety net behind the rule that
secrets are never passed to a logger in the first place.

Why bridge's own lines skip the stdlib `logging` machinery: a webhook logs at least one line, and going
through `logging.Logger`, a `LogRecord` and `ProcessorFormatter` cost about as much as the rest of the
line. structlog's filtering bound logger drops disabled levels at the call (a no-op method) and writes the
rendered line straight to the stream; JSON is rendered with orjson. Only foreign stdlib loggers (aiohttp,
asyncio) still go through a `logging` handler, with the same processors, so every line looks alike.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, TextIO, cast

import orjson
import structlog

_SECRET_KEYS = re.compile(r"(secret|token|password|aes_key|encrypt_key|authorization)", re.IGNORECASE)
_ALLOWED_KEYS = frozenset({"task_id", "token_refreshes", "event_id"})


class _Scrubber:
    """Masks values of secret-looking keys and any registered secret value found inside strings."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()
        self._secret_key: dict[str, bool] = {}  # key name -> looks like a secret (keys repeat: ask the regex once)

    def register(self, values: Iterable[str]) -> None:
        self.values = tuple(sorted({v for v in (*self.values, *values) if v and len(v) >= 4}, key=len, reverse=True))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str) and self.values:
            for secret in self.values:
                if secret in value:
                    value = value.replace(secret, "****")
        return value

    def __call__(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        secret_key = self._secret_key
        # One pass over every string value at once for the registered secrets (a few C substring searches):
        # a line that holds none, nearly every line, is not searched value by value.
        values = self.values
        if values:
            joined = "\0".join([v for v in event_dict.values() if isinstance(v, str)])
            if not any(secret in joined for secret in values):
                values = ()
        for key, value in event_dict.items():
            is_secret = secret_key.get(key)
            if is_secret is None:
                is_secret = key not in _ALLOWED_KEYS and _SECRET_KEYS.search(key) is not None
                if len(secret_key) < 4096:
                    secret_key[key] = is_secret
            if is_secret and value not in (None, ""):
                event_dict[key] = "****"
            elif values and isinstance(value, str):
                event_dict[key] = self._clean(value)
        return event_dict


scrubber = _Scrubber()


def register_secrets(values: Iterable[str]) -> None:
    """Tell the log scrubber about secret values (app secret, webhook secrets, admin token)."""
    scrubber.register(values)


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured (tests and in-process
    CLI runs swap it; a captured stream may be closed by the time a later line is logged)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _NamedWriter(structlog.WriteLogger):
    """structlog's WriteLogger with the `name` that `add_logger_name` reads (the dotted module name)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _WriterFactory:
    """One writer per logger name, kept: structlog asks for one on every line (loggers are not cached, so tests
    can swap the configuration), and a writer holds nothing but the stream and the name."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._writers: dict[str, _NamedWriter] = {}

    def __call__(self, *args: Any) -> _NamedWriter:
        name = str(args[0]) if args else "bridge"
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = _NamedWriter(self.stream, name)
        return writer


class Logger:
    """`structlog.get_logger(name)` with its bound logger kept until structlog's configuration changes.

    Why: structlog's lazy proxy binds a new logger (the logger factory's writer and a wrapper object) for every
    line unless `cache_logger_on_first_use`, which bridge cannot set: tests and in-process commands such as
    `bridge ingest` configure logging again, and a cached logger would keep writing the old way. This one
    checks that the processors, wrapper class, logger factory and context class are still the ones it was
    bound with (four identity tests) and rebinds when not: 7.5 -> 5.7 us per line in a loop. Tests capturing
    logs (`structlog.testing.capture_logs`) still work: they change the processor list in place."""

    __slots__ = ("_bound", "_key", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._key: tuple[Any, ...] = ()

    def _current(self) -> Any:
        cfg = structlog.get_config()
        key = (cfg["processors"], cfg["wrapper_class"], cfg["logger_factory"], cfg["context_class"])
        old = self._key
        if len(old) != 4 or not all(a is b for a, b in zip(key, old, strict=True)):
            self._bound = structlog.get_logger(self._name).bind()
            self._key = key
        return self._bound

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)


def get_logger(name: str) -> Logger:
    """The logger for a module's lines (its dotted name is the `logger` field)."""
    return Logger(name)


def _fallback(value: Any) -> str:
    return repr(value)


def render_json(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    """One JSON line, UTF-8 as it is (采购申请 stays readable); anything orjson cannot encode as its repr."""
    return orjson.dumps(event_dict, default=_fallback, option=orjson.OPT_NON_STR_KEYS).decode()


_CONTEXT_VARS: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
_PREFIX_LEN = len(structlog.contextvars.STRUCTLOG_KEY_PREFIX)


def merge_context(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`structlog.contextvars.merge_contextvars`, reading only structlog's own context variables (its registry
    of every key ever bound) instead of copying and walking the whole context (asyncio's and aiohttp's
    variables too) on every line."""
    if _CONTEXT_VARS is None:  # a structlog without the registry: its own processor
        return structlog.contextvars.merge_contextvars(logger, name, event_dict)
    for key, var in _CONTEXT_VARS.items():
        value = var.get()
        if value is not Ellipsis:
            event_dict.setdefault(key[_PREFIX_LEN:], value)
    return event_dict


def configure(*, fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging once, before anything logs.

    fmt: "json", "console", or "auto" (console on a terminal, JSON otherwise).
    """
    stream = stream or cast(TextIO, _CurrentStderr())
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    number = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        merge_context,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    if fmt == "json":
        # no locals in tracebacks: a frame's variables may hold a secret the scrubber cannot see inside
        tracebacks = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(
            show_locals=False))
        renderer = [tracebacks, scrubber, render_json]
    else:
        renderer = [scrubber, structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *renderer],
        logger_factory=_WriterFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=False,  # tests swap the configuration (structlog.testing.capture_logs)
    )
    handler = logging.StreamHandler(stream)  # foreign stdlib loggers only: aiohttp, asyncio, libraries
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    # aiohttp's access log duplicates webhook.* events at info level; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # python-statemachine narrates every transition at debug level, without bridge's dotted event names.
    logging.getLogger("statemachine").setLevel(logging.WARNING)


@contextlib.contextmanager
def configured(*, fmt: str = "auto", level: str = "info") -> Iterator[None]:
    """`configure` for the length of a block, then the configuration before it again: for a command that
    runs inside another program (`bridge.cli.main.main` called in-process) and must not leave its logging
    behind, such as `bridge ingest`."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    configure(fmt=fmt, level=level)
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(root_level)
