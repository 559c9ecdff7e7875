"""The dashboard's browser-facing protections: security headers, and the CSRF check every
state-changing request passes.

Content-Security-Policy: scripts and stylesheets only from this origin (the vendored htmx,
the dashboard's CSS and the charts' stylesheet); no inline script or style, no plugin, no
framing, forms post only here. CSRF: a POST must carry the session's token (form field
``csrf_token`` or header ``X-CSRF-Token``, compared in constant time), and, when the
browser sends an ``Origin`` header, come from this origin. The cookie's SameSite=Strict
is a second layer, not the only one.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the security headers on every answer, and ``no-store`` on those
    that set no caching of their own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SET]
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = [*headers, *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


_SET = {name for name, _ in _HEADERS}


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def check_csrf(request: Request, expected: str, submitted: str | None) -> None:
    """403 unless ``submitted`` (form field or header) equals ``expected`` and the request
    is same-origin."""
    token = submitted or request.headers.get(CSRF_HEADER, "")
    if not same_origin(request):
        raise HTTPException(status_code=403, detail="cross-origin request refused")
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(
            status_code=403,
            detail="the form's security token is missing or stale: reload the page and retry",
        )
