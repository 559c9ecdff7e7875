"""Feature flags under ``/v1/tenants/{tenant}/flags``: list, create, define a new
version, read, ramp, kill, history.

Reads take ``admin`` or ``read`` keys, changes ``admin`` keys. Every change answers a
``FlagChangeResult``: what was written, and the flag as it now reads.
"""

from __future__ import annotations

from fastapi import APIRouter

from schemas.control_api import (
    FlagChangeResult,
    FlagRampBody,
    FlagState,
    FlagWrite,
    HistoryEntry,
    KillBody,
)
from schemas.identifiers import Key, TenantId
from services.control import commands, views
from services.control.backend import ControlBackend
from services.control.deps import AdminKey, BackendDep, ReaderKey, WriterDep
from services.control.routers.paths import same_as_path
from services.control.writes import Command, ControlWriter
from services.control_domain.api_keys import KeyRecord

router = APIRouter(prefix="/v1/tenants/{tenant}/flags", tags=["flags"])


def _change(
    writer: ControlWriter, backend: ControlBackend, caller: KeyRecord, key: str, command: Command
) -> FlagChangeResult:
    written = writer.write(caller, command)
    return written.result(FlagChangeResult, flag=views.flag_state(backend, caller.tenant_id, key))


@router.get("")
def list_flags(tenant: TenantId, caller: ReaderKey, backend: BackendDep) -> list[FlagState]:
    with backend.lock:
        keys = sorted(views.tenant_state(backend, tenant).flags)
        return [views.flag_state(backend, tenant, key) for key in keys]


@router.post("", status_code=201)
def create_flag(
    tenant: TenantId, body: FlagWrite, caller: AdminKey, backend: BackendDep, writer: WriterDep
) -> FlagChangeResult:
    """Create a flag; 409 if the key is taken."""
    return _change(
        writer,
        backend,
        caller,
        body.flag.key,
        lambda a: commands.define_flag(
            backend.state, a, body.flag, create_only=True, reason=body.reason
        ),
    )


@router.put("/{key}")
def put_flag(
    tenant: TenantId,
    key: Key,
    body: FlagWrite,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> FlagChangeResult:
    """Create, or define a new version (the same definition again changes nothing)."""
    same_as_path("flag.key", body.flag.key, key)
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.define_flag(
            backend.state, a, body.flag, create_only=False, reason=body.reason
        ),
    )


@router.get("/{key}")
def get_flag(tenant: TenantId, key: Key, caller: ReaderKey, backend: BackendDep) -> FlagState:
    return views.flag_state(backend, tenant, key)


@router.post("/{key}/ramp")
def ramp_flag(
    tenant: TenantId,
    key: Key,
    body: FlagRampBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> FlagChangeResult:
    """Serve the on value to this percent of eligible units."""
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.ramp_flag(backend.state, a, key, body.ramp, body.reason),
    )


@router.post("/{key}/kill")
def kill_flag(
    tenant: TenantId,
    key: Key,
    body: KillBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> FlagChangeResult:
    """The kill switch: everyone gets the off value while set."""
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.set_kill_switch(backend.state, a, key, body.killed, body.reason),
    )


@router.get("/{key}/history")
def flag_history(
    tenant: TenantId, key: Key, caller: ReaderKey, backend: BackendDep
) -> list[HistoryEntry]:
    """Every change: author (key id), time, reason and the diff of the configuration."""
    views.flag_state(backend, tenant, key)
    return views.history(backend, tenant, key)
