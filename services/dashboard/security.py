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
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response

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


class SecurityHeaders(BaseHTTPMiddleware):
    """Sets the security headers of every answer."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        headers = response.headers
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "same-origin"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if "cache-control" not in headers:
            headers["Cache-Control"] = "no-store"
        return response


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
