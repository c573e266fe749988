"""The DingTalk work-notification client: token cache, the five message endpoints, the two directory lookups
(mobile / unionid → userid), errcode → exceptions.

Everything bridge says to DingTalk goes through `Client`, so the awkward parts live in one place:
- DingTalk answers HTTP 200 for errors; the real code is `errcode`, and on `/topapi/*` token and throttling
  errors are wrapped as errcode 88 with the code in the string `sub_code`. `classify()` turns every answer into
  one exception from bridge.errors: Transient (retry with backoff) or Permanent (dead-letter).
- The access token is shared per app (bridge.dingtalk.tokens: in this process, and through the store by every
  process of the fleet), fetched by one caller at a time while the others wait for it, refreshed 10 minutes
  before it expires, and on a token error invalidated, refreshed once and the call retried once.
- Each endpoint has its own client-side rate limiter (DingTalk: 20 calls/s per app per endpoint), shared by the
  fleet's processes on PostgreSQL (bridge.dingtalk.fleetlimit), and every HTTP request has a total timeout.
- The app secret and the access token are scrubbed from every error message, log line and repr.
Wire format: dingtalk-work-notice-api.md §0–§6 (JSON bodies, token in the query, CSV id lists).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from bridge import errors, logs
from bridge.clock import Clock, SystemClock
from bridge.config import DingTalkConfig
from bridge.dingtalk import messages
from bridge.dingtalk.fleetlimit import FleetLimiters, SlotSource
from bridge.dingtalk.ratelimit import EndpointLimiters
from bridge.dingtalk.tokens import TokenRegistry as TokenRegistry
from bridge.dingtalk.tokens import app_key_hash
from bridge.dingtalk.wire import (
    GETBYMOBILE,
    GETBYUNIONID,
    GETTOKEN,
    IP_BAN_RETRY_AFTER_S,
    PATHS,
    PROGRESS,
    RECALL,
    RESULT,
    SEND,
    STATUS_BAR,
    USER_PATHS,
    as_int,
    classify,
)
from bridge.dingtalk.wire import CallObserver as CallObserver
from bridge.dingtalk.wire import ForbiddenEntry as ForbiddenEntry
from bridge.dingtalk.wire import SendProgress as SendProgress
from bridge.dingtalk.wire import SendResult as SendResult
from bridge.secret import Secret

log = logs.get_logger(__name__)

# DingTalk counts a rolling second of calls per app and API as they *arrive*. Between a call starting here and
# arriving there lie a few milliseconds of scheduling jitter on both sides (more under load), enough to put 21
# arrivals into one of DingTalk's seconds when 20 starts were spaced exactly. So the limiter allows `qps` starts
# per 1.02 s: 2% of throughput for no 90018 (bench/drain.py: 19.3 calls/s of 20, 0 throttled).
RATE_WINDOW_S = 1.02

DEFAULT_TOKENS = TokenRegistry()  # this process only; bridge serve passes one backed by its store


# --- the client ---------------------------------------------------------------------------------------


class Client:
    """Async DingTalk work-notification client over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_key: str,
        app_secret: Secret,
        agent_id: int,
        base_url: str = "https://oapi.dingtalk.com",
        qps: float = 20.0,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        observer: CallObserver | None = None,
        tokens: TokenRegistry | None = None,
        app: str = "default",
        slots: SlotSource | None = None,
    ) -> None:
        self._session = session
        self.app = app  # the configured app's name (bridge.dingtalk.apps), for logs
        self.app_key = app_key
        self._secret = app_secret
        self.agent_id = int(agent_id)
        self.base_url = base_url.rstrip("/")
        self._clock: Clock = clock or SystemClock()
        self._observer = observer
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s
        # at most `qps` starts in any RATE_WINDOW_S (see there): about 19.6 calls/s for DingTalk's 20
        # with `slots` (PostgreSQL) the limit holds for the whole fleet of processes (bridge.dingtalk.fleetlimit)
        self._limiters: EndpointLimiters | FleetLimiters = (
            EndpointLimiters(qps / RATE_WINDOW_S, self._clock, window_s=RATE_WINDOW_S) if slots is None else
            FleetLimiters(slots, app_key_hash(self.base_url, app_key), qps / RATE_WINDOW_S, self._clock,
                          window_s=RATE_WINDOW_S))
        self._token = (tokens or DEFAULT_TOKENS).entry(self.base_url, app_key, app_secret, self._clock)

    @classmethod
    def from_config(cls, session: aiohttp.ClientSession, cfg: DingTalkConfig, *, clock: Clock | None = None,
                    observer: CallObserver | None = None, tokens: TokenRegistry | None = None,
                    slots: SlotSource | None = None) -> Client:
        return cls(session, app_key=cfg.app_key, app_secret=cfg.app_secret, agent_id=cfg.agent_id,
                   base_url=cfg.base_url, qps=cfg.qps, timeout_s=cfg.timeout_s, clock=clock, observer=observer,
                   tokens=tokens, slots=slots)

    def __repr__(self) -> str:
        return (f"Client(app_key={self.app_key!r}, agent_id={self.agent_id}, base_url={self.base_url!r}, "
                f"app_secret=****)")

    @property
    def last_token_ok_at(self) -> float | None:
        """`clock.monotonic()` of the last successful gettoken for this app (for /readyz)."""
        return self._token.obtained_at

    @property
    def last_token_error_at(self) -> float | None:
        """`clock.monotonic()` of the last failed gettoken for this app (for /readyz)."""
        return self._token.failed_at

    # --- token ------------------------------------------------------------------------------------

    async def token(self, *, force_refresh: bool = False) -> str:
        """A valid access token; concurrent callers share one gettoken."""
        return await self._get_token(force=force_refresh)

    async def _get_token(self, *, force: bool = False, stale: str | None = None) -> str:
        return await self._token.get(self._fetch_token, force=force, stale=stale)

    async def _fetch_token(self) -> tuple[str, float]:
        """One gettoken call: the token and its lifetime in seconds (bridge.dingtalk.tokens decides when)."""
        params = {"appkey": self.app_key, "appsecret": self._secret.reveal()}
        payload = await self._request(GETTOKEN, "GET", f"{self.base_url}/gettoken", params, None, token_call=False)
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise errors.DingTalkServerError("gettoken answered errcode 0 without an access_token", call=GETTOKEN)
        expires_in = float(as_int(payload.get("expires_in")) or 7200)
        log.info("dingtalk.token_refreshed", app=self.app, app_key=self.app_key, expires_in=int(expires_in))
        if self._observer is not None:
            self._observer.token_refreshed()
        return token, expires_in

    def prefetch(self, call: str) -> None:
        """A `call` (SEND, STATUS_BAR) is likely soon: on a fleet's shared schedule its rate slot is reserved ahead,
        so that round trip overlaps the caller's own work (bridge.dingtalk.fleetlimit); locally, nothing to do."""
        if isinstance(self._limiters, FleetLimiters):
            self._limiters.prefetch(call)

    # --- the five calls ---------------------------------------------------------------------------

    async def send(self, msg: Mapping[str, Any], *, userids: Sequence[str] = (), dept_ids: Sequence[int] = (),
                   to_all_user: bool = False) -> int:
        """asyncsend_v2: send a work notification; returns the task_id. Invalid messages send nothing."""
        messages.validate(msg)
        if isinstance(userids, str) or isinstance(dept_ids, str):
            raise errors.MessageInvalid("userids and dept_ids must be sequences, not one string")
        body: dict[str, Any] = {"agent_id": self.agent_id, "msg": dict(msg)}
        if userids:
            bad = [u for u in userids if not isinstance(u, str) or not u or "," in u]
            if bad:
                raise errors.MessageInvalid(f"userids must be non-empty strings without commas; got {bad[:5]!r}")
            body["userid_list"] = ",".join(userids)
        if dept_ids:
            if any(isinstance(d, bool) or not isinstance(d, int) for d in dept_ids):
                raise errors.MessageInvalid(f"dept_ids must be integers; got {list(dept_ids)[:5]!r}")
            body["dept_id_list"] = ",".join(str(d) for d in dept_ids)
        if to_all_user:
            body["to_all_user"] = True
        if not (userids or dept_ids or to_all_user):
            raise errors.MessageInvalid("no recipients: give userids, dept_ids or to_all_user=True")
        payload = await self._topapi(SEND, body)
        task_id = as_int(payload.get("task_id"))
        if task_id is None:
            raise errors.PermanentDingTalkError("asyncsend_v2 answered errcode 0 without a task_id", call=SEND,
                                                request_id=payload.get("request_id"))
        return task_id

    async def get_send_progress(self, task_id: int) -> SendProgress:
        payload = await self._topapi(PROGRESS, {"agent_id": self.agent_id, "task_id": int(task_id)})
        progress = raw if isinstance(raw := payload.get("progress"), Mapping) else {}
        return SendProgress(status=as_int(progress.get("status")) or 0,
                            percent=as_int(progress.get("progress_in_percent")) or 0)

    async def get_send_result(self, task_id: int) -> SendResult:
        payload = await self._topapi(RESULT, {"agent_id": self.agent_id, "task_id": int(task_id)})
        return SendResult.from_wire(payload.get("send_result"))

    async def update_status_bar(self, task_id: int, status_value: str, status_bg: str | None = None) -> None:
        if not status_value:
            raise errors.MessageInvalid("status_value is required for a status bar update")
        body: dict[str, Any] = {"agent_id": self.agent_id, "task_id": int(task_id), "status_value": status_value}
        if status_bg:
            body["status_bg"] = messages.normalise_status_bg(status_bg, field="status_bg")
        await self._topapi(STATUS_BAR, body)

    async def recall(self, task_id: int) -> None:
        await self._topapi(RECALL, {"agent_id": self.agent_id, "msg_task_id": int(task_id)})

    # --- the directory ---------------------------------------------------------------------------

    async def userid_by_mobile(self, mobile: str) -> str:
        """v2/user/getbymobile: the userid of the employee with this mobile number (an unknown number raises
        the PermanentDingTalkError DingTalk answers; `[dingtalk] unknown_user_codes` names its errcodes)."""
        return await self._userid(GETBYMOBILE, {"mobile": mobile})

    async def userid_by_unionid(self, unionid: str) -> str:
        """user/getbyunionid: the userid of the employee with this unionid."""
        return await self._userid(GETBYUNIONID, {"unionid": unionid})

    async def _userid(self, call: str, body: Mapping[str, Any]) -> str:
        payload = await self._topapi(call, body, path=USER_PATHS[call])
        result = raw if isinstance(raw := payload.get("result"), Mapping) else {}
        userid = result.get("userid")
        if not isinstance(userid, str) or not userid:
            raise errors.PermanentDingTalkError(f"{call} answered errcode 0 without result.userid", call=call,
                                                request_id=payload.get("request_id"))
        return userid

    # --- transport --------------------------------------------------------------------------------

    async def _topapi(self, call: str, body: Mapping[str, Any], *, path: str | None = None) -> dict[str, Any]:
        """POST a topapi call; on a refused token, refresh once and retry once."""
        url = f"{self.base_url}{path or '/topapi/message/corpconversation/' + PATHS[call]}"
        token = await self._get_token()
        try:
            return await self._request(call, "POST", url, {"access_token": token}, body)
        except errors.DingTalkTokenError:
            pass
        token = await self._get_token(stale=token)
        try:
            return await self._request(call, "POST", url, {"access_token": token}, body)
        except errors.DingTalkTokenError as exc:
            raise errors.DingTalkTokenError(
                f"{call}: access token still refused after a refresh ({exc.message})", call=call, errcode=exc.errcode,
                sub_code=exc.sub_code, errmsg=exc.errmsg, request_id=exc.request_id) from None

    async def _request(self, call: str, method: str, url: str, params: dict[str, str], body: Any, *,
                       token_call: bool = True) -> dict[str, Any]:
        """One rate-limited HTTP request; returns the JSON answer or raises a scrubbed DingTalkError."""
        await self._limiters.for_call(call).acquire()
        started = self._clock.monotonic()
        try:
            result = await self._exchange(call, method, url, params, body, token_call=token_call)
        except errors.DingTalkError as exc:
            self._finished(call, exc.code, started)
            log.warning("dingtalk.call_failed", app=self.app, call=call, errcode=exc.errcode, sub_code=exc.sub_code,
                        request_id=exc.request_id, http_status=exc.http_status, error=type(exc).__name__,
                        message=exc.message)
            raise
        self._finished(call, "0", started)
        return result

    def _finished(self, call: str, code: str, started: float) -> None:
        if self._observer is not None:
            self._observer.call_finished(call, code, self._clock.monotonic() - started)

    async def _exchange(self, call: str, method: str, url: str, params: dict[str, str], body: Any, *,
                        token_call: bool) -> dict[str, Any]:
        secrets = [s for s in (self._secret.reveal(), params.get("access_token")) if s]
        try:
            async with self._session.request(method, url, params=params, json=body, timeout=self._timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError:
            raise errors.DingTalkNetworkError(f"{call} timed out after {self.timeout_s:g} s", call=call) from None
        except aiohttp.ClientError as exc:
            detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            raise errors.DingTalkNetworkError(f"{call} could not reach DingTalk: {detail}", call=call) from None
        text = _scrub(raw.decode("utf-8", errors="replace"), secrets)
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if status >= 500:
            raise errors.DingTalkServerError(call=call, http_status=status)
        if not isinstance(payload, dict):
            if "<html" in text[:2000].lower() or status in (403, 429):
                raise errors.DingTalkThrottled(f"{call} refused: DingTalk answered a block page (IP ban?)",
                                               call=call, http_status=status, retry_after=IP_BAN_RETRY_AFTER_S)
            raise errors.DingTalkServerError(f"{call} answered something that is not a JSON object", call=call,
                                             http_status=status)
        error = classify(call, payload, token_call=token_call, http_status=status)
        if error is not None:
            raise error
        return payload


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced by ****."""
    for secret in secrets:
        text = text.replace(secret, "****")
    return text
