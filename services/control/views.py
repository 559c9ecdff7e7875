"""The control API's reads of the projection: a tenant, key, experiment, flag or metric as
its answer shows it.

Each reads under the backend's lock. An unknown experiment, flag or metric is a 404
(``Refused``) that also names, for each control event about that key that no reader
could use (quarantined), its offset and why it was skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from schemas.control_api import (
    ExperimentState,
    FlagState,
    HistoryEntry,
    KeyView,
    MetricState,
    QuarantinedEvent,
    TenantView,
)
from schemas.errors import FieldError
from services.control import lookups
from services.control.backend import ControlBackend
from services.control.lookups import Refused
from services.control_domain.api_keys import KeyRecord
from services.control_domain.control_state import ControlState, TenantState


def tenant_state(backend: ControlBackend, tenant_id: str) -> TenantState:
    """The tenant's state; an empty one for a tenant nobody created."""
    with backend.lock:
        tenant = backend.state.tenant(tenant_id)
    return tenant if tenant is not None else TenantState(tenant_id)


def tenant_view(backend: ControlBackend, tenant_id: str) -> TenantView:
    with backend.lock:
        state = tenant_state(backend, tenant_id)
        return TenantView(
            tenant_id=tenant_id,
            name=state.name,
            holdout_percent=state.holdout_percent,
            experiments=len(state.experiments),
            flags=len(state.flags),
            errors=list(state.quarantined),
        )


def key_view(record: KeyRecord) -> KeyView:
    return KeyView(
        key_id=record.key_id,
        tenant_id=record.tenant_id,
        role=record.role,
        revoked=record.revoked,
        label=record.label,
    )


def _quarantined(backend: ControlBackend, tenant_id: str, key: str) -> list[QuarantinedEvent]:
    return tenant_state(backend, tenant_id).quarantined_of(key)


def _unknown(backend: ControlBackend, error: Refused, tenant_id: str, key: str) -> Refused:
    """``error`` (a 404), also saying why when events about ``key`` were quarantined."""
    for event in _quarantined(backend, tenant_id, key):
        error.problems.append(
            FieldError(
                field="key",
                reason=f"the control event at offset {event.offset} about '{key}' "
                f"could not be used and was skipped: {event.reason}",
            )
        )
    return error


Entry = TypeVar("Entry")


def _found(
    backend: ControlBackend,
    lookup: Callable[[ControlState, str, str], Entry],
    tenant_id: str,
    key: str,
) -> Entry:
    """``lookup``'s entry, or its 404 with why events about ``key`` were quarantined."""
    try:
        return lookup(backend.state, tenant_id, key)
    except Refused as error:
        raise _unknown(backend, error, tenant_id, key) from None


def experiment_state(backend: ControlBackend, tenant_id: str, key: str) -> ExperimentState:
    with backend.lock:
        entry = _found(backend, lookups.experiment_entry, tenant_id, key)
        return ExperimentState(
            tenant_id=tenant_id,
            key=key,
            killed=entry.killed,
            versions=sorted(entry.versions),
            experiment=entry.experiment,
            errors=_quarantined(backend, tenant_id, key),
        )


def flag_state(backend: ControlBackend, tenant_id: str, key: str) -> FlagState:
    with backend.lock:
        entry = _found(backend, lookups.flag_entry, tenant_id, key)
        return FlagState(
            tenant_id=tenant_id,
            key=key,
            killed=entry.killed,
            versions=sorted(entry.versions),
            flag=entry.flag,
            errors=_quarantined(backend, tenant_id, key),
        )


def metric_state(backend: ControlBackend, tenant_id: str, name: str) -> MetricState:
    with backend.lock:
        entry = _found(backend, lookups.metric_entry, tenant_id, name)
        return MetricState(
            tenant_id=tenant_id,
            name=name,
            version=entry.version,
            versions=sorted(entry.versions),
            metric=entry.metric,
            errors=_quarantined(backend, tenant_id, name),
        )


def history(backend: ControlBackend, tenant_id: str, key: str) -> list[HistoryEntry]:
    """Every change of the experiment or flag ``key`` (kept, the newest)."""
    with backend.lock:
        return tenant_state(backend, tenant_id).history_of(key)


def metric_history(backend: ControlBackend, tenant_id: str, name: str) -> list[HistoryEntry]:
    with backend.lock:
        return tenant_state(backend, tenant_id).metric_history_of(name)
