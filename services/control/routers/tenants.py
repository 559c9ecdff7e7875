"""``GET /v1/tenants/{tenant}``: the tenant's name, holdout, counts and quarantined events."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.control_api import TenantView
from schemas.identifiers import TenantId
from services.control import views
from services.control.deps import BackendDep, ReaderKey

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["tenants"])


@router.get("")
def get_tenant(tenant: TenantId, caller: ReaderKey, backend: BackendDep) -> TenantView:
    return views.tenant_view(backend, tenant)
