"""Configuration changes pushed to SDKs: ``GET /v1/config/stream``, Server-Sent Events.

Any key of the tenant (``ingest`` included). The stream sends the tenant's snapshot at
once (``event: config``, ``id:`` its ETag, ``data:`` the snapshot JSON, the body
``GET /v1/config`` answers), then again within ``TICK_S`` of every change the control
log applies, and a comment every ``KEEPALIVE_S`` so proxies and clients see it alive.
A stream ends after ``MAX_STREAM_S`` (the SDK reconnects), when its key is revoked, or
when the client leaves. At most ``MAX_STREAMS_PER_TENANT`` streams per tenant (429
above): SDKs then fall back to ``GET /v1/config`` with ``If-None-Match``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from services.control.deps import AnyKey, BackendDep, ConfigCacheDep

router = APIRouter(tags=["config"])

TICK_S = 0.05
KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0
MAX_STREAMS_PER_TENANT = 200

_open_streams: Counter[str] = Counter()
_streams_lock = threading.Lock()


@router.get("/v1/config/stream", response_class=StreamingResponse)
async def config_stream(
    request: Request, caller: AnyKey, backend: BackendDep, cache: ConfigCacheDep
) -> StreamingResponse:
    """The caller's tenant's snapshot now and on every change (Server-Sent Events)."""
    tenant_id = caller.tenant_id
    with _streams_lock:
        if _open_streams[tenant_id] >= MAX_STREAMS_PER_TENANT:
            raise HTTPException(
                429,
                f"tenant '{tenant_id}' has {MAX_STREAMS_PER_TENANT} config streams open; "
                "poll GET /v1/config instead",
                headers={"Retry-After": "30"},
            )
        _open_streams[tenant_id] += 1

    def revoked() -> bool:
        with backend.lock:
            record = backend.state.keys.get(caller.key_id)
        return record is None or record.revoked

    async def events() -> AsyncIterator[bytes]:
        try:
            sent_etag = None
            started = last_sent = time.monotonic()
            while not await request.is_disconnected() and not revoked():
                etag, body = cache.document(tenant_id)
                now = time.monotonic()
                if etag != sent_etag:
                    yield b"event: config\nid: " + etag.encode() + b"\ndata: " + body + b"\n\n"
                    sent_etag, last_sent = etag, now
                elif now - last_sent >= KEEPALIVE_S:
                    yield b": keepalive\n\n"
                    last_sent = now
                if now - started >= MAX_STREAM_S:
                    break
                await asyncio.sleep(TICK_S)
        finally:
            with _streams_lock:
                _open_streams[tenant_id] -= 1

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
