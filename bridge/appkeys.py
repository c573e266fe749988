"""The typed keys under which the aiohttp application holds bridge's collaborators.

Why it exists: the app factory (`bridge.app`) stores them, and the receiver (`bridge.web`) and the admin API
(`bridge.admin`) read them. With the keys in one module none of those three needs another just for a key, so
the admin API no longer reaches back into the factory that mounts it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aiohttp import web

from bridge.clock import Clock
from bridge.config import Config
from bridge.dingtalk.apps import AppClients
from bridge.metrics import Metrics
from bridge.priority import IntakeFirst
from bridge.rejections import RejectionLog
from bridge.sources.stream import StreamClient
from bridge.store import Store
from bridge.worker import Worker

__all__ = ["ADMIN_PORTS", "CLIENTS", "CLOCK", "CONFIG", "INTAKE", "METRICS", "REJECTIONS", "ROLE", "STORE",
           "STREAMS", "WAKE", "WORKER", "Role"]


class Role(StrEnum):
    """What one `bridge serve` process does (`--role`). Any mix works against one PostgreSQL database."""

    ALL = "all"  # receive webhooks, decide and deliver
    RECEIVER = "receiver"  # only verify, store and answer webhooks (and serve the admin API)
    WORKER = "worker"  # only decide and deliver (webhooks are not served here)

    @property
    def receives(self) -> bool:
        return self is not Role.WORKER

    @property
    def works(self) -> bool:
        return self is not Role.RECEIVER


CONFIG = web.AppKey("bridge.config", Config)
STORE = web.AppKey("bridge.store", Store)
CLOCK = web.AppKey("bridge.clock", Clock)
METRICS = web.AppKey("bridge.metrics", Metrics)
WAKE: web.AppKey[Callable[[], None]] = web.AppKey("bridge.wake")
# the receiver's webhook arrivals, which the worker of the same process gives way to (bridge.priority)
INTAKE = web.AppKey("bridge.intake", IntakeFirst)
WORKER = web.AppKey("bridge.worker", Worker)
# name → the DingTalk client of each configured app (bridge.dingtalk.apps)
CLIENTS: web.AppKey[AppClients[Any]] = web.AppKey("bridge.dingtalk.clients")
ROLE = web.AppKey("bridge.role", Role)
# The local ports of a separate admin listener ([admin] port), filled in by `bridge.app.serve` once bound.
# Empty: the admin API shares the webhook listener.
ADMIN_PORTS = web.AppKey("bridge.admin_ports", set[int])
REJECTIONS = web.AppKey("bridge.rejections", RejectionLog)
STREAMS: web.AppKey[list[StreamClient]] = web.AppKey("bridge.streams")
