"""Metric definitions under ``/v1/tenants/{tenant}/metrics``: list, create (version 1),
define the next version, read, history.

Reads take ``admin`` or ``read`` keys, changes ``admin`` keys. Every change answers a
``MetricChangeResult``: what was written, and the metric as it now reads.
"""

from __future__ import annotations

from fastapi import APIRouter

from schemas.control_api import HistoryEntry, MetricChangeResult, MetricState, MetricWrite
from schemas.identifiers import Key, TenantId
from services.control import commands, views
from services.control.backend import ControlBackend
from services.control.deps import AdminKey, BackendDep, ReaderKey, WriterDep
from services.control.routers.paths import same_as_path
from services.control.writes import ControlWriter
from services.control_domain.api_keys import KeyRecord

router = APIRouter(prefix="/v1/tenants/{tenant}/metrics", tags=["metrics"])


def _define(
    writer: ControlWriter,
    backend: ControlBackend,
    caller: KeyRecord,
    body: MetricWrite,
    create_only: bool,
) -> MetricChangeResult:
    written = writer.write(
        caller,
        lambda a: commands.define_metric(
            backend.state, a, body.metric, create_only=create_only, reason=body.reason
        ),
    )
    name = body.metric.name
    return written.result(
        MetricChangeResult, metric=views.metric_state(backend, caller.tenant_id, name)
    )


@router.get("")
def list_metrics(tenant: TenantId, caller: ReaderKey, backend: BackendDep) -> list[MetricState]:
    with backend.lock:
        names = sorted(views.tenant_state(backend, tenant).metrics)
        return [views.metric_state(backend, tenant, name) for name in names]


@router.post("", status_code=201)
def create_metric(
    tenant: TenantId, body: MetricWrite, caller: AdminKey, backend: BackendDep, writer: WriterDep
) -> MetricChangeResult:
    """Create a metric (version 1); 409 if the name is taken."""
    return _define(writer, backend, caller, body, create_only=True)


@router.put("/{name}")
def put_metric(
    tenant: TenantId,
    name: Key,
    body: MetricWrite,
    caller: AdminKey,
    backend: BackendDep,
    writer: WriterDep,
) -> MetricChangeResult:
    """Create, or define the next version (the same definition again changes nothing)."""
    same_as_path("metric.name", body.metric.name, name)
    return _define(writer, backend, caller, body, create_only=False)


@router.get("/{name}")
def get_metric(tenant: TenantId, name: Key, caller: ReaderKey, backend: BackendDep) -> MetricState:
    return views.metric_state(backend, tenant, name)


@router.get("/{name}/history")
def metric_history(
    tenant: TenantId, name: Key, caller: ReaderKey, backend: BackendDep
) -> list[HistoryEntry]:
    """Every version: author (key id), time, reason and the diff of the definition."""
    views.metric_state(backend, tenant, name)
    return views.metric_history(backend, tenant, name)
