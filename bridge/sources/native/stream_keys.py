"""The settings of a DingTalk Stream-mode source (`transport = "stream"`).

Why a module of its own: `NativeConfig` (in `common`) holds them, and the Stream frame code (`stream_frames`)
imports `common`; keeping the dataclass here avoids a cycle. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.secret import Secret


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """A DingTalk Stream-mode source: the app's credentials, the gateway and the connection tuning.

    `gateway_url` is the open-connection API's base (https://api.dingtalk.com; the simulator's URL in tests).
    Reconnects wait `reconnect_base_s` × 2^n (capped at `reconnect_max_s`, jittered); `keepalive_s` is the
    WebSocket ping interval (a connection that misses a pong for as long is dropped and reopened).
    """

    client_id: str
    client_secret: Secret
    gateway_url: str = "https://api.dingtalk.com"
    reconnect_base_s: float = 1.0
    reconnect_max_s: float = 60.0
    keepalive_s: float = 30.0
