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
import contextvars
import logging
import re
import sys
import time
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


class _Chain:
    """The configuration `configure` installed, kept to recognise it later: while structlog still runs exactly
    this chain (same processor objects, writer factory and wrapper class), `Logger` runs it itself."""

    __slots__ = ("factory", "level", "processors", "snapshot", "wrapper")

    def __init__(self, processors: list[Any], factory: _WriterFactory, wrapper: Any, level: int) -> None:
        self.processors, self.snapshot = processors, tuple(processors)
        self.factory, self.wrapper, self.level = factory, wrapper, level

    def installed(self) -> bool:
        cfg = _STRUCTLOG_CONFIG
        if cfg is None:  # a structlog without its config object: never run the chain here
            return False
        processors = cfg.default_processors
        return (processors is self.processors and cfg.logger_factory is self.factory
                and cfg.default_wrapper_class is self.wrapper and cfg.default_context_class is dict
                and tuple(processors) == self.snapshot)


_STRUCTLOG_CONFIG: Any = getattr(getattr(structlog, "_config", None), "_CONFIG", None)
_chain: _Chain | None = None  # set by configure()
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


class Logger:
    """`structlog.get_logger(name)` that costs little per line, and writes exactly what structlog would.

    Why: a webhook logs a line, and structlog's general path (a lazy proxy that binds a new logger per line
    unless `cache_logger_on_first_use`, which bridge cannot set because tests and in-process commands such as
    `bridge ingest` configure logging again; then the bound logger's method, `_proxy_to_logger`,
    `_process_event` and a copy of the empty bound context) cost as much as the processors themselves.
    While the configuration is the one `configure` installed (`_Chain.installed`: a few identity tests),
    `debug`/`info`/`warning`/`error`/`critical` run the same processors on the same event dict and hand the
    line to the same writer themselves: a line with a request's context, in a loop, 12.8 -> 6.5 us (with
    `bind_request`). Anything else (`exception`,
    `bind`, a configuration swapped by a test such as `structlog.testing.capture_logs`, which changes the
    processor list in place) goes through structlog's bound logger, kept until the configuration changes."""

    __slots__ = ("_bound", "_key", "_name", "_writer", "_writer_of")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._key: tuple[Any, ...] = ()
        self._writer: Any = None
        self._writer_of: _WriterFactory | None = None

    def _current(self) -> Any:
        cfg = structlog.get_config()
        key = (cfg["processors"], cfg["wrapper_class"], cfg["logger_factory"], cfg["context_class"])
        old = self._key
        if len(old) != 4 or not all(a is b for a, b in zip(key, old, strict=True)):
            self._bound = structlog.get_logger(self._name).bind()
            self._key = key
        return self._bound

    def _log(self, method: str, event: str, kw: dict[str, Any]) -> Any:
        chain = _chain
        if chain is None or not chain.installed():
            return getattr(self._current(), method)(event, **kw)
        if _LEVELS[method] < chain.level:
            return None
        if self._writer_of is not chain.factory:
            self._writer, self._writer_of = chain.factory(self._name), chain.factory
        writer = self._writer
        kw["event"] = event
        line: Any = kw
        for processor in chain.processors:
            line = processor(writer, method, line)
        writer.msg(line)
        return None

    def debug(self, event: str, **kw: Any) -> Any:
        return self._log("debug", event, kw)

    def info(self, event: str, **kw: Any) -> Any:
        return self._log("info", event, kw)

    def warning(self, event: str, **kw: Any) -> Any:
        return self._log("warning", event, kw)

    def error(self, event: str, **kw: Any) -> Any:
        return self._log("error", event, kw)

    def critical(self, event: str, **kw: Any) -> Any:
        return self._log("critical", event, kw)

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
_REQUEST: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("bridge_request_context")


def bind_request(**fields: Any) -> contextvars.Token[dict[str, Any]]:
    """Bind `fields` to every line logged from here on in this context (a webhook request), as
    `structlog.contextvars.bind_contextvars` does, in one context variable: set once and reset once per
    request, where structlog's own functions set and clear one variable per key (3.4 -> 0.4 us per webhook).
    Pass the token of the first call to `reset_request` when the request is done."""
    return _REQUEST.set({**_REQUEST.get({}), **fields})


def reset_request(token: contextvars.Token[dict[str, Any]]) -> None:
    """Forget everything bound since `token`'s `bind_request` (aiohttp runs a connection's requests one after
    another in one task: what one bound must not reach the next)."""
    _REQUEST.reset(token)


def merge_context(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`structlog.contextvars.merge_contextvars`, reading only structlog's own context variables (its registry
    of every key ever bound) instead of copying and walking the whole context (asyncio's and aiohttp's
    variables too) on every line; then what `bind_request` bound."""
    if _CONTEXT_VARS is None:  # a structlog without the registry: its own processor
        structlog.contextvars.merge_contextvars(logger, name, event_dict)
    else:
        for key, var in _CONTEXT_VARS.items():
            value = var.get()
            if value is not Ellipsis:
                event_dict.setdefault(key[_PREFIX_LEN:], value)
    for key, value in _REQUEST.get({}).items():
        event_dict.setdefault(key, value)
    return event_dict


def iso_utc(unix_us: int) -> str:
    """`datetime.fromtimestamp(unix_us / 1e6, UTC).isoformat()` with Z for +00:00, as structlog's
    `TimeStamper(fmt="iso", utc=True)` writes it (no fraction when the microseconds are 0)."""
    seconds, micros = divmod(unix_us, 1_000_000)
    prefix = _seconds_text(seconds)
    return f"{prefix}.{micros:06d}Z" if micros else prefix + "Z"


class _SecondsText:
    """The date and time of day of one Unix second as text, worked out once per second. One tuple, replaced
    whole: a thread logging at the same moment reads the old pair or the new one, never half of each."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, seconds: int) -> str:
        cached = self._cached
        if cached[0] != seconds:
            cached = self._cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
        return cached[1]


_seconds_text = _SecondsText()


def add_timestamp(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The `timestamp` field, as `TimeStamper(fmt="iso", utc=True)` writes it, in a quarter of its time: the
    date and time of day are formatted once per second, not once per line."""
    event_dict["timestamp"] = iso_utc(time.time_ns() // 1000)
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
        add_timestamp,
    ]
    renderer: list[Any]
    if fmt == "json":
        # no locals in tracebacks: a frame's variables may hold a secret the scrubber cannot see inside
        tracebacks = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(
            show_locals=False))
        renderer = [tracebacks, scrubber, render_json]
    else:
        renderer = [scrubber, structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())]
    global _chain
    processors = [*shared, structlog.processors.StackInfoRenderer(), *renderer]
    factory, wrapper = _WriterFactory(stream), structlog.make_filtering_bound_logger(number)
    structlog.configure(
        processors=processors,
        logger_factory=factory,
        wrapper_class=wrapper,
        context_class=dict,
        cache_logger_on_first_use=False,  # tests swap the configuration (structlog.testing.capture_logs)
    )
    _chain = _Chain(processors, factory, wrapper, number)
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
    global _chain
    saved, saved_chain = structlog.get_config(), _chain
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    configure(fmt=fmt, level=level)
    try:
        yield
    finally:
        structlog.configure(**saved)
        _chain = saved_chain
        root.handlers[:] = handlers
        root.setLevel(root_level)
