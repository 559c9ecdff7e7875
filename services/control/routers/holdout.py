"""``PUT /v1/tenants/{tenant}/holdout``: the tenant-wide holdout (admin keys)."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.control_api import ChangeResult, HoldoutBody
from schemas.identifiers import TenantId
from services.control import commands
from services.control.deps import AdminKey, BackendDep, WriterDep

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["holdout"])


@router.put("/holdout")
def set_holdout(
    tenant: TenantId, body: HoldoutBody, caller: AdminKey, backend: BackendDep, writer: WriterDep
) -> ChangeResult:
    """The tenant-wide holdout: this percent of units sees no experiment."""
    written = writer.write(
        caller, lambda a: commands.set_holdout(backend.state, a, body.percent, body.reason)
    )
    return written.result(ChangeResult)
