"""API keys: ``GET /v1/whoami`` (any key) and, for admin keys, a tenant's keys under
``/v1/tenants/{tenant}/keys``: list, issue (the answer holds the key, shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.control import ApiKeyIssued, ControlEvent
from schemas.control_api import KeyCreated, KeyRequest, KeyView, ReasonBody
from schemas.identifiers import TenantId
from services.control import commands, lookups, views
from services.control.deps import AdminKey, AnyKey, BackendDep, WriterDep
from services.control.lookups import Author
from services.control_domain.api_keys import NewKey

whoami_router = APIRouter(tags=["keys"])
router = APIRouter(prefix="/v1/tenants/{tenant}/keys", tags=["keys"])


@whoami_router.get("/v1/whoami")
def whoami(caller: AnyKey) -> KeyView:
    """The key the request carries: its id, tenant and role."""
    return views.key_view(caller)


@router.get("")
def list_keys(tenant: TenantId, caller: AdminKey, backend: BackendDep) -> list[KeyView]:
    with backend.lock:
        return [views.key_view(record) for record in backend.state.keys.of_tenant(tenant)]


@router.post("", status_code=201)
def create_key(
    tenant: TenantId, body: KeyRequest, caller: AdminKey, backend: BackendDep, writer: WriterDep
) -> KeyCreated:
    """Issue a key; the response holds the key itself, which is never shown again."""
    issued: list[tuple[ApiKeyIssued, NewKey]] = []

    def command(author: Author) -> ControlEvent:
        issued.append(commands.issue_key(backend.state, author, body.role, body.label, body.reason))
        return issued[-1][0]

    writer.write(caller, command)
    [(event, key)] = issued
    return KeyCreated(
        key_id=key.key_id,
        tenant_id=tenant,
        role=body.role,
        revoked=False,
        label=body.label,
        key=key.secret_key,
        event_id=event.event_id,
    )


@router.post("/{key_id}/revoke")
def revoke_key(
    tenant: TenantId,
    key_id: str,
    body: ReasonBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> KeyView:
    """Revoke a key: every service refuses it from now on."""
    writer.write(caller, lambda a: commands.revoke_key(backend.state, a, key_id, body.reason))
    with backend.lock:
        return views.key_view(lookups.key_record(backend.state, tenant, key_id))
