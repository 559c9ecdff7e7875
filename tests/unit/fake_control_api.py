"""A stand-in for the control service's config endpoint (SDK config poller and
OpenFeature provider tests)."""

from __future__ import annotations

import httpx

from schemas.config import ConfigSnapshot


class FakeControlApi:
    """Serves one snapshot with an ETag the way the control service does; can go down."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        self.down = False
        self.garbage = False
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.garbage:
            return httpx.Response(200, content=b'{"tenant_id": 7}', headers={"ETag": '"x"'})
        etag = f'"{self.snapshot.revision}"'
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers={"ETag": etag})
        return httpx.Response(200, content=self.snapshot.model_dump_json(), headers={"ETag": etag})
