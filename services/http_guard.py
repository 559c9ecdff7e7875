"""What the control and results services put in front of every route: a body-size limit
that refuses before anything is parsed or authenticated, and error answers that say what
a client can act on and nothing about the platform's insides.

- ``BodyLimit`` (ASGI middleware): a request whose ``Content-Length`` is above the limit is
  answered 413 at once, without reading the body; a body sent without a length (chunked)
  is counted as it arrives and refused with 413 as soon as it passes the limit. The route,
  and with it the key check, only runs on a body that fits. The body is held in memory
  (at most the limit) and handed to the route unchanged.
- ``install_error_handlers``: ``ServiceUnavailable`` is a 503 with ``Retry-After`` and a
  public message (the private detail, with broker addresses or client settings, goes to
  the log only); any other unhandled exception is a 500 whose body holds only a reference
  to the log line with the traceback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from schemas.limits import MAX_BODY_BYTES

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _size_words(limit: int) -> str:
    return (
        f"{limit} bytes ({limit / 1024 / 1024:g} MiB)" if limit >= 1024 * 1024 else f"{limit} bytes"
    )


async def _answer(send: Send, status: int, detail: str, field: str = "") -> None:
    body = orjson.dumps({"detail": detail, "errors": [{"field": field, "reason": detail}]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse (413) request bodies larger than ``max_bytes`` before the app sees them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> str:
        return f"the request body is {size}; the limit is {_size_words(self.max_bytes)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [value for name, value in scope["headers"] if name == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number", "content-length")
                return
            if length > self.max_bytes:
                await _answer(send, 413, self._too_large(f"{length} bytes"), "body")
                return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await _answer(send, 413, self._too_large(f"over {received} bytes"), "body")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ServiceUnavailable(Exception):
    """A dependency (the broker, a follower) cannot serve the request now: 503, retry.

    ``public`` is what the client reads; ``detail`` (addresses, settings, the library's
    error) is logged only.
    """

    def __init__(self, public: str, detail: str = "", retry_after_s: int = 1) -> None:
        super().__init__(public)
        self.public = public
        self.detail = detail
        self.retry_after_s = retry_after_s


def install_error_handlers(app: FastAPI, service: str) -> None:
    """503 for ``ServiceUnavailable``, a bare 500 for anything unhandled; details logged."""
    logger = logging.getLogger(f"services.{service}")

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceUnavailable)
        logger.warning(
            "%s %s answered 503: %s (%s)",
            request.method,
            request.url.path,
            error.public,
            error.detail,
        )
        return JSONResponse(
            {"detail": error.public},
            status_code=503,
            headers={"Retry-After": str(error.retry_after_s)},
        )

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        logger.error(
            "%s %s failed (reference %s)",
            request.method,
            request.url.path,
            reference,
            exc_info=error,
        )
        return JSONResponse(
            {"detail": f"internal error (reference {reference} in the {service} log)"},
            status_code=500,
        )

    app.add_exception_handler(ServiceUnavailable, unavailable)
    app.add_exception_handler(Exception, unexpected)
