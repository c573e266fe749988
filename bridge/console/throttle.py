"""Failed console logins, throttled with backoff, without letting one client lock the operator out.

The admin token is a long random string, so guessing it online is hopeless; the throttle makes it slower
still and keeps a flood of wrong tokens from filling the log. No decision here rests on an address or a
forwarded header (behind a proxy every client has the proxy's address, and headers are whatever the client
says). Instead there are two kinds of bucket:

- one **shared** bucket for every browser bridge does not know: after `FREE_FAILURES` wrong tokens, each
  further one closes the login form to all of them for a delay that doubles, up to `MAX_DELAY_S`;
- one bucket **per device**: a browser that logged in before carries a device cookie (signed with the admin
  token, `DEVICE_TTL_S`), and its attempts count only against its own bucket. Someone hammering the form
  therefore delays new browsers at most `MAX_DELAY_S` at a time, never the operator's own browser, and never
  the bearer header, the admin API or the CLI.

A bucket forgets its failures after `QUIET_S` without one. While a bucket is closed, attempts are refused
(429 with Retry-After) before the token is even compared, so a closed form is no oracle. Memory is bounded:
the shared bucket plus at most `MAX_DEVICES` device buckets (only a cookie that verifies gets one).
The clock is passed in (monotonic seconds); nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["FREE_FAILURES", "MAX_DELAY_S", "Bucket", "LoginThrottle", "Verdict"]

FREE_FAILURES = 5
BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
QUIET_S = 600.0
MAX_DEVICES = 256
DEVICE_TTL_S = 30 * 24 * 3600
SHARED = ""  # the shared bucket's key


@dataclass(slots=True)
class Bucket:
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = -math.inf
    burst: bool = False  # throttling engaged since the last quiet period (logged once)
    refused: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failure did: the delay it imposed (0: none yet) and whether it started a burst (log it)."""

    retry_after_s: float
    burst_started: bool
    in_burst: bool
    failures: int


class LoginThrottle:
    """The buckets and their rules (one per process; see the module's docstring)."""

    def __init__(self) -> None:
        self._shared = Bucket()
        self._devices: OrderedDict[str, Bucket] = OrderedDict()

    def _bucket(self, device: str | None, now: float) -> Bucket:
        if not device:
            b = self._shared
        else:
            b = self._devices.pop(device) if device in self._devices else Bucket()
            self._devices[device] = b  # most recently used last
            while len(self._devices) > MAX_DEVICES:
                self._devices.popitem(last=False)
        if now - b.last_failure > QUIET_S and now >= b.blocked_until:
            b.failures, b.burst, b.refused = 0, False, 0
        return b

    def wait(self, device: str | None, now: float) -> float:
        """Seconds before this client may try again (0: the form is open to it)."""
        b = self._bucket(device, now)
        if now < b.blocked_until:
            b.refused += 1
            return b.blocked_until - now
        return 0.0

    def failed(self, device: str | None, now: float) -> Verdict:
        b = self._bucket(device, now)
        b.failures += 1
        b.last_failure = now
        delay = 0.0
        started = False
        if b.failures > FREE_FAILURES:
            delay = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (b.failures - FREE_FAILURES - 1))
            b.blocked_until = now + delay
            started, b.burst = not b.burst, True
        return Verdict(retry_after_s=delay, burst_started=started, in_burst=b.burst, failures=b.failures)

    def succeeded(self, device: str | None) -> None:
        """A right token clears that device's bucket; the shared one only forgets with time."""
        if device:
            self._devices.pop(device, None)

    @property
    def devices(self) -> int:
        return len(self._devices)
