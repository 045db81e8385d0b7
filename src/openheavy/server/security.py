"""The server's guards, as plain ASGI middleware in front of every route (the API, `/mcp` and the web
view alike): the API key, request body size, and Host/Origin checks.

- Key: `Authorization: Bearer KEY`, compared in constant time. Browsers get a session cookie instead
  (HttpOnly, SameSite=Strict) from `/login`; it holds an HMAC of the key, never the key itself.
- Host: bound to loopback, only loopback host names are served, so a web page cannot reach the server
  through a DNS name rebound to 127.0.0.1 (DNS rebinding).
- Origin: a state-changing request from a browser must come from the server's own origin (CSRF).
- Body: beyond the limit, 413 before the application reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "SESSION_COOKIE",
    "BodyLimit",
    "HostGuard",
    "KeyGuard",
    "key_matches",
    "session_token",
]

SESSION_COOKIE = "openheavy_session"
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without the key: the login form, and the stylesheet and script it uses.
_PUBLIC_PREFIXES = ("/login", "/static/")


def session_token(key: str) -> str:
    """The web view's session cookie value for `key`: proves knowledge of the key without holding it."""
    return hmac.new(key.encode(), b"openheavy web session", hashlib.sha256).hexdigest()


def key_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so response timing tells nothing about how much of a key was right."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _host_name(host: str) -> str:
    """`127.0.0.1:8000` → `127.0.0.1`; `[::1]:8000` → `[::1]`."""
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _reply(
    send: Send, status: int, body: dict[str, object], headers: Iterable[tuple[str, str]] = ()
) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, object]:
    """An error in the OpenAI API's shape, which its clients turn into a readable exception."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class HostGuard:
    """Refuses a Host header that is not a loopback name (when bound to loopback), and an unsafe request
    whose Origin is not the server's own."""

    def __init__(self, app: ASGIApp, *, loopback: bool) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if self.loopback and _host_name(host) not in _LOOPBACK_NAMES:
            await _reply(
                send,
                421,
                error_body(
                    f"host {host!r} is not served: this server answers on loopback names only "
                    "(127.0.0.1, localhost, [::1])",
                    "invalid_request_error",
                    "bad_host",
                ),
            )
            return
        origin = _header(scope, b"origin")
        if scope["method"] not in _SAFE_METHODS and origin and urlsplit(origin).netloc != host:
            await _reply(
                send,
                403,
                error_body(
                    f"cross-origin request from {origin} refused: browsers may only post to this server "
                    "from its own pages",
                    "invalid_request_error",
                    "cross_origin",
                ),
            )
            return
        await self.app(scope, receive, send)


class KeyGuard:
    """Requires the API key on every route but the login form and static files."""

    def __init__(self, app: ASGIApp, *, key: str) -> None:
        self.app = app
        self.key = key
        self.session = session_token(key)

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        if scheme.lower() == "bearer" and key_matches(token.strip(), self.key):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie"))
        except Exception:  # a malformed Cookie header is no session
            return False
        morsel = cookie.get(SESSION_COOKIE)
        return morsel is not None and key_matches(morsel.value, self.session)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_PUBLIC_PREFIXES) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        wants_page = scope["method"] == "GET" and "text/html" in _header(scope, b"accept")
        if wants_page and not path.startswith(("/v1/", "/mcp")):
            location = "/login?next=" + quote(path, safe="/")
            await send(
                {"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode())]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await _reply(
            send,
            401,
            error_body(
                "missing or wrong API key: send `Authorization: Bearer KEY` (the key the server was started "
                "with, from --api-key-file or OPENHEAVY_SERVER_KEY)",
                "authentication_error",
                "invalid_api_key",
            ),
            headers=[("www-authenticate", 'Bearer realm="openheavy"')],
        )


class BodyLimit:
    """Answers 413 to a request body over `max_bytes`, whether it declares its length or is chunked."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._too_large(send, int(declared))
                return
            await self.app(scope, receive, send)  # the server holds the client to the declared length
            return
        # Chunked: read it all (up to the limit) before the application sees any of it.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send, None)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, size: int | None) -> None:
        got = f" ({size:,} bytes)" if size is not None else ""
        await _reply(
            send,
            413,
            error_body(
                f"request body too large{got}: the limit is {self.max_bytes:,} bytes — send a shorter "
                "conversation, or raise the server's limit",
                "invalid_request_error",
                "body_too_large",
            ),
        )
