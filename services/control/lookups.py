"""What the control plane's commands and reads look up, and how they refuse.

``Refused`` carries the HTTP status and, per field, the reason (the API answers it as
``{"detail", "errors"}``); ``refuse`` makes one for a single field. The lookups answer a
tenant's experiment, flag, metric or API key, or refuse with a 404 naming it; the checks
refuse (409) what a tenant may not hold more of, or twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from schemas.errors import FieldError
from schemas.limits import MAX_DEFINITIONS_PER_TENANT
from services.control_domain.api_keys import KeyRecord
from services.control_domain.control_state import (
    ControlState,
    ExperimentEntry,
    FlagEntry,
    MetricEntry,
    TenantState,
)
from services.control_domain.rollout_state import RolloutEntry

_Entry = TypeVar("_Entry")


class Refused(Exception):
    """A change the projection does not allow; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, subject: str, problems: list[FieldError]) -> None:
        self.status = status
        self.subject = subject
        self.problems = problems
        super().__init__(f"{subject}: " + "; ".join(f"{p.field}: {p.reason}" for p in problems))


def refuse(status: int, subject: str, field: str, reason: str) -> Refused:
    return Refused(status, subject, [FieldError(field=field, reason=reason)])


@dataclass(frozen=True)
class Author:
    tenant_id: str
    key_id: str


def tenant_of(state: ControlState, tenant_id: str) -> TenantState:
    tenant = state.tenant(tenant_id)
    if tenant is None:
        raise refuse(404, "unknown tenant", "tenant_id", f"no tenant '{tenant_id}'")
    return tenant


def _named_entry(
    state: ControlState,
    tenant_id: str,
    entries: Callable[[TenantState], Mapping[str, _Entry]],
    kind: str,
    field: str,
    name: str,
) -> _Entry:
    """The tenant's ``kind`` called ``name`` (from ``entries``), or a 404 naming ``field``."""
    tenant = state.tenant(tenant_id)
    entry = None if tenant is None else entries(tenant).get(name)
    if entry is None:
        raise refuse(404, f"unknown {kind}", field, f"no {kind} '{name}' for tenant '{tenant_id}'")
    return entry


def experiment_entry(state: ControlState, tenant_id: str, key: str) -> ExperimentEntry:
    return _named_entry(
        state, tenant_id, lambda tenant: tenant.experiments, "experiment", "key", key
    )


def flag_entry(state: ControlState, tenant_id: str, key: str) -> FlagEntry:
    return _named_entry(state, tenant_id, lambda tenant: tenant.flags, "flag", "key", key)


def rollout_entry(state: ControlState, tenant_id: str, key: str) -> RolloutEntry:
    return _named_entry(state, tenant_id, lambda tenant: tenant.rollouts, "rollout", "key", key)


def key_record(state: ControlState, tenant_id: str, key_id: str) -> KeyRecord:
    record = state.keys.get(key_id)
    if record is None or record.tenant_id != tenant_id:
        raise refuse(404, "unknown key", "key_id", f"no key '{key_id}' for tenant '{tenant_id}'")
    return record


def metric_entry(state: ControlState, tenant_id: str, name: str) -> MetricEntry:
    return _named_entry(state, tenant_id, lambda tenant: tenant.metrics, "metric", "name", name)


def check_room(kind: str, held: int, limit: int = MAX_DEFINITIONS_PER_TENANT) -> None:
    """Refuse (409) a new definition or key once the tenant holds ``limit`` of them."""
    if held >= limit:
        raise refuse(
            409, "limit reached", kind, f"the tenant has {held} {kind}; the limit is {limit}"
        )


def check_key_free_of_flags(tenant: TenantState, key: str) -> None:
    """Refuse (409) an experiment named as one of the tenant's flags."""
    if key in tenant.flags:
        raise refuse(409, "duplicate key", "key", f"a flag named '{key}' already exists")
