"""Who may use the console: the admin token, either as a session cookie or as a bearer header.

Never weaker than the admin API: without `[server] admin_token` the console is off (403), whatever the listen
address. A login form checks the token (constant time) and sets a session cookie that is HttpOnly,
SameSite=Strict and scoped to /console. Its value is `<issued>.<hmac>`: an HMAC-SHA256, under a key drawn
at random when the process starts, of the admin token and the issue time; nothing secret is in it, a new
token or a restart ends every session, and it expires after `SESSION_TTL_S`.

CSRF: every state-changing POST made with the cookie must carry `csrf`, an HMAC of the session value under
the same key (per session, never stored); it is checked in constant time. A request that authenticates
with `Authorization: Bearer` needs no CSRF token, for the same reason the admin API needs none: a
cross-site page cannot make a browser send that header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

from aiohttp import web

from bridge import logs
from bridge.admin import host_allowed
from bridge.appkeys import CLOCK, CONFIG
from bridge.console.html import esc, page
from bridge.console.throttle import DEVICE_TTL_S, LoginThrottle
from bridge.web import Handler

log = logs.get_logger("bridge.console")


COOKIE = "bridge_console"
DEVICE_COOKIE = "bridge_console_device"  # "this browser logged in before": its own login throttle bucket
SESSION_TTL_S = 12 * 3600
KEY = web.AppKey("bridge.console.key", bytes)
THROTTLE = web.AppKey("bridge.console.throttle", LoginThrottle)
_DEVICE_KEY = b"bridge.console.device"  # device cookies are signed with the admin token, so they outlive restarts
ADMIN_MARK = "bridge_admin_route"  # bridge.admin's marker: routes served only on the admin listener
_CSRF = web.RequestKey("bridge.console.csrf", str)


class Access(StrEnum):
    SESSION = "session"
    BEARER = "bearer"


def new_key() -> bytes:
    return secrets.token_bytes(32)


def _mac(key: bytes, token: str, *parts: str) -> str:
    return hmac.new(key, "\x00".join((token, *parts)).encode(), hashlib.sha256).hexdigest()


def new_session(key: bytes, token: str, now_s: int) -> str:
    return f"{now_s}.{_mac(key, token, 'session', str(now_s))}"


def session_valid(key: bytes, token: str, value: str, now_s: int) -> bool:
    issued, _, mac = value.partition(".")
    if not issued.isdigit() or not 0 <= now_s - int(issued) <= SESSION_TTL_S:
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, token, "session", issued).encode())


def new_device(token: str, now_s: int) -> str:
    nonce = secrets.token_hex(8)
    return f"{nonce}.{now_s}.{_mac(_DEVICE_KEY, token, 'device', nonce, str(now_s))}"


def device_of(request: web.Request, token: str) -> str | None:
    """The id of the browser's device cookie when it verifies and has not expired, else None (shared bucket)."""
    nonce, _, rest = request.cookies.get(DEVICE_COOKIE, "").partition(".")
    issued, _, mac = rest.partition(".")
    if not nonce or not issued.isdigit() or not 0 <= _now_s(request) - int(issued) <= DEVICE_TTL_S:
        return None
    if not hmac.compare_digest(mac.encode(), _mac(_DEVICE_KEY, token, "device", nonce, issued).encode()):
        return None
    return nonce


def csrf_for(key: bytes, token: str, session: str) -> str:
    return _mac(key, token, "csrf", session)


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _now_s(request: web.Request) -> int:
    return int(request.app[CLOCK].now().timestamp())


def authenticate(request: web.Request, token: str) -> Access | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return Access.BEARER if token_matches(value, token) else None
    cookie = request.cookies.get(COOKIE)
    if cookie and session_valid(request.app[KEY], token, cookie, _now_s(request)):
        return Access.SESSION
    return None


def csrf_token(request: web.Request) -> str:
    """The CSRF token the current page's forms carry."""
    token: str = request.get(_CSRF) or ""
    return token


def _wants_json(request: web.Request) -> bool:
    """Scripts' requests (the JSON routes, the live fragments, Accept: JSON): refused, never redirected."""
    return (request.path.endswith((".json", "/live"))
            or "application/json" in request.headers.get("Accept", ""))


def refuse(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """A refusal as JSON for scripts, as a short page for browsers."""
    if _wants_json(request) or request.method == "POST":
        return web.json_response({"error": code, "message": message}, status=status)
    return web.Response(status=status, content_type="text/html",
                        text=page("错误 Error", f'<section class="error"><h1>{status}</h1><p>{esc(message)}</p>'
                                  '<p><a href="/console">返回 Back</a></p></section>', csrf=None))


def protected(handler: Handler) -> Handler:
    """Require the admin token (and, for a cookie-authenticated POST, the CSRF token) before `handler`."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.app[CONFIG].server.admin_token
        if token is None:
            return refuse(request, 403, "console_disabled",
                          "the console is disabled: set [server] admin_token (it is required, loopback included)")
        if not host_allowed(request.headers.get("Host", ""), request.app[CONFIG].admin.allowed_hosts):
            log.warning("console.host_refused", path=request.path[:200])
            return refuse(request, 403, "host_not_allowed", "this Host header is not in [admin] allowed_hosts")
        access = authenticate(request, token.reveal())
        if access is None:
            if request.method == "GET" and not _wants_json(request):
                raise web.HTTPSeeOther(f"/console/login?next={request.path_qs[:500]}")
            log.warning("console.unauthorized", path=request.path[:200])
            return refuse(request, 401, "unauthorized", "log in at /console/login or send Authorization: Bearer")
        session = request.cookies.get(COOKIE, "") if access == Access.SESSION else "bearer"
        expected = csrf_for(request.app[KEY], token.reveal(), session)
        request[_CSRF] = expected
        if request.method == "POST" and access == Access.SESSION:
            form = await request.post()
            given = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning("console.csrf_refused", path=request.path[:200])
                return refuse(request, 403, "csrf", "missing or wrong CSRF token: reload the page and try again")
        return await handler(request)

    setattr(wrapped, ADMIN_MARK, True)
    return wrapped


def set_session(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    resp.set_cookie(COOKIE, new_session(request.app[KEY], token, _now_s(request)), max_age=SESSION_TTL_S,
                    path="/console", httponly=True, samesite="Strict", secure=request.secure)


def set_device(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    resp.set_cookie(DEVICE_COOKIE, new_device(token, _now_s(request)), max_age=DEVICE_TTL_S,
                    path="/console/login", httponly=True, samesite="Strict", secure=request.secure)


def clear_session(resp: web.StreamResponse) -> None:
    resp.del_cookie(COOKIE, path="/console")
