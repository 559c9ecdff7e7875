"""The configuration snapshot SDKs poll: ``GET /v1/config`` (the caller's tenant) and
``GET /v1/tenants/{tenant}/config``; any key of the tenant, ``ingest`` keys included.
Answered 304 when ``If-None-Match`` holds the current ETag."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from schemas.config import ConfigSnapshot
from schemas.identifiers import TenantId
from services.control.config_cache import ConfigCache
from services.control.deps import AnyKey, ConfigCacheDep

router = APIRouter(tags=["config"])


@router.get("/v1/config")
def config(request: Request, caller: AnyKey, cache: ConfigCacheDep) -> Response:
    """The caller's tenant's configuration snapshot; 304 when ``If-None-Match`` matches."""
    return _snapshot(cache, caller.tenant_id, request)


@router.get("/v1/tenants/{tenant}/config", response_model=ConfigSnapshot)
def tenant_config_route(
    tenant: TenantId, request: Request, caller: AnyKey, cache: ConfigCacheDep
) -> Response:
    return _snapshot(cache, tenant, request)


def _snapshot(cache: ConfigCache, tenant_id: str, request: Request) -> Response:
    etag, body = cache.document(tenant_id)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
