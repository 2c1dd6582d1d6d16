"""Access control and request hygiene for the web app.

* **Token**: when the server has a token, API clients send ``Authorization: Bearer
  <token>``; browsers log in once with a form and get an HttpOnly, SameSite=Strict
  session cookie (an HMAC of the token, so changing the token logs everybody out).
  Without a token (loopback only, see :class:`~facesense.web.config.ServeConfig`)
  everything is open.
* **Body size**: :class:`BodyLimitMiddleware` refuses request bodies over the limit
  with 413 before the app reads them (by ``Content-Length``, and by counting for
  chunked uploads).
* **Hosts and origins**: :class:`HostCheckMiddleware` refuses other ``Host`` names
  on a server without a token (DNS rebinding) and, token or not, writes that a
  browser sends for any page but the dashboard's own (``Origin`` null or foreign,
  or ``Sec-Fetch-Site`` other than same-origin): cross-site request forgery.
* **Headers**: :class:`SecurityHeadersMiddleware` adds a strict Content Security
  Policy (everything from this server, no inline script), ``nosniff`` and
  ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "SESSION_COOKIE",
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "HostCheckMiddleware",
    "SecurityHeadersMiddleware",
    "check_token",
    "is_authorized",
    "is_same_origin",
    "safe_next",
    "session_value",
]

SESSION_COOKIE = "facesense_session"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SESSION_MESSAGE = b"facesense-session-v1"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def session_value(token: str) -> str:
    """The session cookie's value for ``token``."""
    return hmac.new(token.encode("utf-8"), _SESSION_MESSAGE, hashlib.sha256).hexdigest()


def check_token(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the server's."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def is_authorized(request: Request, token: str | None) -> bool:
    """Whether the request carries the bearer token or a valid session cookie."""
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and check_token(value.strip(), token):
        return True
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return False
    return hmac.compare_digest(cookie.encode("utf-8"), session_value(token).encode("utf-8"))


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to after logging in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(ch) < 32 for ch in target):
        return default
    return target


class BodyTooLarge(HTTPException):
    """The request body is over the limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body is over the {_mb(limit)} limit")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n} bytes"


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes`` with 413 and a JSON message.

    Args:
        app: the ASGI app.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, {"error": "invalid Content-Length header"})
                    return
                if length > self.max_bytes:
                    await _send_json(send, 413, {"error": f"request body is over the {_mb(self.max_bytes)} limit"})
                    return
        received = 0
        limit = self.max_bytes

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response."""

    HEADERS = (
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class HostCheckMiddleware:
    """Refuse requests for other host names and cross-site writes.

    * With ``allowed_hosts`` (a server without a token, bound to loopback), the
      ``Host`` header must name one of them: a web page elsewhere cannot reach the
      dashboard by pointing a DNS name of its own at 127.0.0.1 (DNS rebinding).
    * A write (POST, PUT, PATCH, DELETE) sent by a browser on behalf of any page but
      the dashboard's own is refused with 403, token or not (cross-site request
      forgery: a form post, or a ``no-cors`` ``fetch`` from a sandboxed iframe, needs
      no CORS permission to *send*). The browser says who is asking:

      - ``Origin`` must be this server's own origin (the ``Host`` the request was sent
        to); ``null`` (sandboxed frames, ``data:`` and ``file:`` pages, some redirects)
        and every other origin, another port on the same host included, are refused;
      - without ``Origin``, ``Sec-Fetch-Site`` (Fetch Metadata) must be ``same-origin``
        or ``none`` (typed by the user); ``same-site`` (another port of 127.0.0.1 is
        the same *site*) and ``cross-site`` are refused.

      A request with neither header is not from a browser page (curl, scripts, the
      CLI) and passes: browsers send ``Origin`` with every write they make.

    Args:
        app: the ASGI app.
        allowed_hosts: host names (no port) accepted in ``Host``; ``None`` accepts any.
    """

    UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    SAFE_FETCH_SITES = frozenset({"same-origin", "none"})

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str] | None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else frozenset(h.lower().strip("[]") for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get("host", "")
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            await _send_json(send, 400, {"error": f"unexpected Host header {host!r}"})
            return
        if scope.get("method", "GET") in self.UNSAFE and not self._same_origin(headers, host, scope.get("scheme", "http")):
            await _send_json(send, 403, {"error": "cross-site request refused"})
            return
        await self.app(scope, receive, send)

    def _same_origin(self, headers: dict[str, str], host: str, scheme: str) -> bool:
        """Whether a write comes from this server's own pages (or from no browser page at all)."""
        origin = headers.get("origin")
        if origin is not None:
            return is_same_origin(origin, host, scheme)
        site = headers.get("sec-fetch-site")
        return site is None or site.strip().lower() in self.SAFE_FETCH_SITES


def is_same_origin(origin: str, host: str, scheme: str = "http") -> bool:
    """Whether an ``Origin`` header names the server the request was sent to.

    Args:
        origin: the ``Origin`` header.
        host: the ``Host`` header.
        scheme: the request's scheme (``https`` behind a TLS proxy that says so), for
            the port of a ``Host`` without one.

    ``null``, anything that is not ``http(s)://host[:port]``, and another host name or
    port are not the same origin (a port left out is the scheme's default, 80 or 443).
    """
    from urllib.parse import urlsplit

    text = origin.strip().lower()
    if not text or text == "null":
        return False
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path or parts.query or parts.fragment:
        return False
    if parts.username is not None or parts.password is not None:
        return False
    served = _host_and_port(host, _DEFAULT_PORTS.get(scheme.lower(), 80))
    return served == (parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


def _host_and_port(host: str, default_port: int) -> tuple[str, int] | None:
    """``(host name, port)`` of a ``Host`` header, ``None`` when it is malformed."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit("//" + host.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.username is not None:
        return None
    return parts.hostname, port or default_port


def _hostname(host: str) -> str:
    """``Host`` header without the port, lower case, IPv6 brackets removed."""
    text = host.strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text
