"""Each tenant's configuration snapshot as the control API serves it, encoded once per
revision.

SDKs poll ``GET /v1/config`` with ``If-None-Match``; the body and its ETag are kept per
tenant until the tenant's revision moves, so a poll that finds nothing new costs a
lookup, not an encoding.
"""

from __future__ import annotations

import hashlib

from services.control.backend import ControlBackend
from services.control.views import tenant_state


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class ConfigCache:
    def __init__(self, backend: ControlBackend) -> None:
        self._backend = backend
        self._documents: dict[str, tuple[int, str, bytes]] = {}

    def document(self, tenant_id: str) -> tuple[str, bytes]:
        """The tenant's snapshot as JSON, and its ETag."""
        with self._backend.lock:
            tenant = tenant_state(self._backend, tenant_id)
            cached = self._documents.get(tenant_id)
            if cached is None or cached[0] != tenant.revision:
                body = tenant.snapshot().model_dump_json().encode()
                cached = (tenant.revision, etag_of(body), body)
                self._documents[tenant_id] = cached
        _, etag, body = cached
        return etag, body
