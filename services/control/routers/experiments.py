"""Experiments under ``/v1/tenants/{tenant}/experiments``: list, create, define a new
version, read, start, pause, conclude, ramp, roll back, kill, history.

Reads take ``admin`` or ``read`` keys, changes ``admin`` keys. Every change answers an
``ExperimentChangeResult``: what was written, and the experiment as it now reads.
"""

from __future__ import annotations

from fastapi import APIRouter

from schemas.control_api import (
    ExperimentChangeResult,
    ExperimentState,
    ExperimentWrite,
    HistoryEntry,
    KillBody,
    RampBody,
    ReasonBody,
    RollbackBody,
)
from schemas.identifiers import Key, TenantId
from services.control import commands, views
from services.control.backend import ControlBackend
from services.control.deps import AdminKey, BackendDep, ReaderKey, WriterDep
from services.control.routers.paths import same_as_path
from services.control.writes import Command, ControlWriter
from services.control_domain.api_keys import KeyRecord

router = APIRouter(prefix="/v1/tenants/{tenant}/experiments", tags=["experiments"])


def _change(
    writer: ControlWriter, backend: ControlBackend, caller: KeyRecord, key: str, command: Command
) -> ExperimentChangeResult:
    written = writer.write(caller, command)
    return written.result(
        ExperimentChangeResult,
        experiment=views.experiment_state(backend, caller.tenant_id, key),
    )


@router.get("")
def list_experiments(
    tenant: TenantId, caller: ReaderKey, backend: BackendDep
) -> list[ExperimentState]:
    with backend.lock:
        keys = sorted(views.tenant_state(backend, tenant).experiments)
        return [views.experiment_state(backend, tenant, key) for key in keys]


def _define(backend: ControlBackend, body: ExperimentWrite, create_only: bool) -> Command:
    return lambda a: commands.define_experiment(
        backend.state,
        a,
        body.experiment,
        status_given="status" in body.experiment.model_fields_set,
        create_only=create_only,
        reason=body.reason,
    )


@router.post("", status_code=201)
def create_experiment(
    tenant: TenantId,
    body: ExperimentWrite,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Create an experiment; 409 if the key is taken."""
    command = _define(backend, body, create_only=True)
    return _change(writer, backend, caller, body.experiment.key, command)


@router.put("/{key}")
def put_experiment(
    tenant: TenantId,
    key: Key,
    body: ExperimentWrite,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Create, or define a new version (the same definition again changes nothing)."""
    same_as_path("experiment.key", body.experiment.key, key)
    return _change(writer, backend, caller, key, _define(backend, body, create_only=False))


@router.get("/{key}")
def get_experiment(
    tenant: TenantId, key: Key, caller: ReaderKey, backend: BackendDep
) -> ExperimentState:
    return views.experiment_state(backend, tenant, key)


def _lifecycle(
    action: commands.Action,
    key: str,
    body: ReasonBody,
    caller: KeyRecord,
    backend: ControlBackend,
    writer: ControlWriter,
) -> ExperimentChangeResult:
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.change_status(backend.state, a, key, action, body.reason),
    )


@router.post("/{key}/start")
def start_experiment(
    tenant: TenantId,
    key: Key,
    body: ReasonBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Start the experiment (409 if its status forbids it)."""
    return _lifecycle("start", key, body, caller, backend, writer)


@router.post("/{key}/pause")
def pause_experiment(
    tenant: TenantId,
    key: Key,
    body: ReasonBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Pause the experiment (409 if its status forbids it)."""
    return _lifecycle("pause", key, body, caller, backend, writer)


@router.post("/{key}/conclude")
def conclude_experiment(
    tenant: TenantId,
    key: Key,
    body: ReasonBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Conclude the experiment (409 if its status forbids it)."""
    return _lifecycle("conclude", key, body, caller, backend, writer)


@router.post("/{key}/ramp")
def ramp_experiment(
    tenant: TenantId,
    key: Key,
    body: RampBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Change the traffic ramp; units already in stay in, on the same variant."""
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.ramp_experiment(backend.state, a, key, body.traffic, body.reason),
    )


@router.post("/{key}/rollback")
def roll_back_experiment(
    tenant: TenantId,
    key: Key,
    body: RollbackBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """Restore an earlier version's configuration as the next version."""
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.roll_back_experiment(
            backend.state, a, key, body.to_version, body.reason
        ),
    )


@router.post("/{key}/kill")
def kill_experiment(
    tenant: TenantId,
    key: Key,
    body: KillBody,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> ExperimentChangeResult:
    """The kill switch: nobody is assigned while set (``killed: false`` clears it)."""
    return _change(
        writer,
        backend,
        caller,
        key,
        lambda a: commands.set_kill_switch(backend.state, a, key, body.killed, body.reason),
    )


@router.get("/{key}/history")
def experiment_history(
    tenant: TenantId, key: Key, caller: ReaderKey, backend: BackendDep
) -> list[HistoryEntry]:
    """Every change: author (key id), time, reason and the diff of the configuration."""
    views.experiment_state(backend, tenant, key)
    return views.history(backend, tenant, key)
