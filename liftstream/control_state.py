"""The projection of the control topic: tenants, keys, experiments, flags, metrics, history.

``ControlState.apply(offset, event)`` folds one control event into the state, in log
order. It is pure (no I/O) and lenient: events on the log are facts, validated when they
were written (``services.control.commands``), so applying never refuses one; an event for
a tenant nobody created still counts (logs written before tenants existed stay readable).
Rebuilding from offset 0 therefore always gives the same state.

Each change to an experiment, flag or metric is kept as a ``HistoryEntry`` with its author, time,
reason and the field-by-field diff of the configuration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, JsonValue

from liftstream.api_keys import KeyRing
from schemas.config import ConfigSnapshot, ExperimentConfig, FlagConfig
from schemas.control import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ControlEvent,
    ExperimentChanged,
    ExperimentDefined,
    ExperimentRolledBack,
    FlagDefined,
    HoldoutSet,
    KillSwitchSet,
    MetricDefined,
    TenantCreated,
)
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    before: JsonValue = None
    after: JsonValue = None


class HistoryEntry(BaseModel):
    """One change as ``history`` shows it."""

    model_config = ConfigDict(frozen=True)

    offset: int
    event_id: uuid.UUID
    type: str
    key: str
    author: str
    reason: str
    occurred_at: AwareDatetime
    version: int | None = None
    diff: list[FieldChange]


def config_diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Every leaf that differs between two JSON values, as dotted paths (list items by index)."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for name in sorted(set(before) | set(after)):
            child = f"{path}.{name}" if path else str(name)
            changes += config_diff(before.get(name), after.get(name), child)
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        changes = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            changes += config_diff(old, new, f"{path}.{index}" if path else str(index))
        return changes
    if before == after and type(before) is type(after):
        return []
    return [FieldChange(field=path, before=before, after=after)]


@dataclass
class ExperimentEntry:
    experiment: Experiment
    killed: bool = False
    #: Each version's definition as it was last defined, for roll-backs.
    versions: dict[int, Experiment] = field(default_factory=dict)


@dataclass
class FlagEntry:
    flag: Flag
    killed: bool = False
    versions: dict[int, Flag] = field(default_factory=dict)


@dataclass
class MetricEntry:
    metric: MetricDefinition
    version: int
    versions: dict[int, MetricDefinition] = field(default_factory=dict)


@dataclass
class TenantState:
    tenant_id: str
    created: bool = False
    name: str = ""
    holdout_percent: float = 0.0
    experiments: dict[str, ExperimentEntry] = field(default_factory=dict)
    flags: dict[str, FlagEntry] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    metrics: dict[str, MetricEntry] = field(default_factory=dict)
    #: Kept apart from ``history``: a metric may share its name with an experiment.
    metric_history: list[HistoryEntry] = field(default_factory=list)
    #: Offset of the last event that changed what SDKs are served (the config snapshot).
    revision: int = -1

    def history_of(self, key: str) -> list[HistoryEntry]:
        return [entry for entry in self.history if entry.key == key]

    def metric_history_of(self, name: str) -> list[HistoryEntry]:
        return [entry for entry in self.metric_history if entry.key == name]

    def snapshot(self) -> ConfigSnapshot:
        return ConfigSnapshot(
            tenant_id=self.tenant_id,
            revision=self.revision,
            holdout_percent=self.holdout_percent,
            experiments=[
                ExperimentConfig(experiment=entry.experiment, killed=entry.killed)
                for _, entry in sorted(self.experiments.items())
            ],
            flags=[
                FlagConfig(flag=entry.flag, killed=entry.killed)
                for _, entry in sorted(self.flags.items())
            ],
        )


def _dump(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")


class ControlState:
    """Everything the control topic says, up to ``next_offset``."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantState] = {}
        self.keys = KeyRing()
        self.next_offset = 0

    def tenant(self, tenant_id: str) -> TenantState | None:
        return self.tenants.get(tenant_id)

    def _tenant(self, tenant_id: str) -> TenantState:
        if tenant_id not in self.tenants:
            self.tenants[tenant_id] = TenantState(tenant_id)
        return self.tenants[tenant_id]

    def apply(self, offset: int, event: ControlEvent) -> None:
        """Fold the event at ``offset`` into the state (events must come in log order)."""
        self.next_offset = max(self.next_offset, offset + 1)
        tenant = self._tenant(event.tenant_id)
        self.keys.apply(event)
        if isinstance(event, TenantCreated):
            tenant.created = True
            tenant.name = event.name
        elif isinstance(event, ApiKeyIssued | ApiKeyRevoked):
            pass
        elif isinstance(event, HoldoutSet):
            before = tenant.holdout_percent
            tenant.holdout_percent = event.percent
            tenant.revision = offset
            self._record(tenant, offset, event, "", None, "holdout_percent", before, event.percent)
        elif isinstance(event, ExperimentDefined | ExperimentChanged | ExperimentRolledBack):
            self._apply_experiment(tenant, offset, event)
        elif isinstance(event, FlagDefined):
            previous = tenant.flags.get(event.flag.key)
            before = None if previous is None else previous.flag
            if previous is None:
                previous = tenant.flags[event.flag.key] = FlagEntry(event.flag)
            previous.flag = event.flag
            previous.versions[event.flag.version] = event.flag
            tenant.revision = offset
            self._record_diff(tenant, offset, event, event.flag.key, event.flag.version, before)
        elif isinstance(event, MetricDefined):
            self._apply_metric(tenant, offset, event)
        elif isinstance(event, KillSwitchSet):
            target: ExperimentEntry | FlagEntry | None = tenant.experiments.get(
                event.key
            ) or tenant.flags.get(event.key)
            if target is None:
                return
            before_killed = target.killed
            target.killed = event.killed
            tenant.revision = offset
            self._record(
                tenant, offset, event, event.key, None, "killed", before_killed, event.killed
            )

    def _apply_experiment(
        self,
        tenant: TenantState,
        offset: int,
        event: ExperimentDefined | ExperimentChanged | ExperimentRolledBack,
    ) -> None:
        experiment = event.experiment
        entry = tenant.experiments.get(experiment.key)
        before = None if entry is None else entry.experiment
        if entry is None:
            entry = tenant.experiments[experiment.key] = ExperimentEntry(experiment)
        entry.experiment = experiment
        entry.versions[experiment.version] = experiment
        tenant.revision = offset
        self._record_diff(tenant, offset, event, experiment.key, experiment.version, before)

    def _apply_metric(self, tenant: TenantState, offset: int, event: MetricDefined) -> None:
        # Metrics are not served to SDKs, so the config revision stays as it is.
        metric = event.metric
        entry = tenant.metrics.get(metric.name)
        before = None if entry is None else entry.metric
        if entry is None:
            entry = tenant.metrics[metric.name] = MetricEntry(metric, event.version)
        entry.metric = metric
        entry.version = event.version
        entry.versions[event.version] = metric
        tenant.metric_history.append(
            _history_entry(
                offset, event, metric.name, event.version, config_diff(_dump(before), _dump(metric))
            )
        )

    def _record_diff(
        self,
        tenant: TenantState,
        offset: int,
        event: ExperimentDefined | ExperimentChanged | ExperimentRolledBack | FlagDefined,
        key: str,
        version: int,
        before: BaseModel | None,
    ) -> None:
        after = event.flag if isinstance(event, FlagDefined) else event.experiment
        tenant.history.append(
            _history_entry(offset, event, key, version, config_diff(_dump(before), _dump(after)))
        )

    def _record(
        self,
        tenant: TenantState,
        offset: int,
        event: ControlEvent,
        key: str,
        version: int | None,
        name: str,
        before: JsonValue,
        after: JsonValue,
    ) -> None:
        tenant.history.append(
            _history_entry(
                offset, event, key, version, [FieldChange(field=name, before=before, after=after)]
            )
        )


def _history_entry(
    offset: int, event: ControlEvent, key: str, version: int | None, diff: list[FieldChange]
) -> HistoryEntry:
    """One audit line: who changed ``key`` when and why, and what changed."""
    return HistoryEntry(
        offset=offset,
        event_id=event.event_id,
        type=event.type,
        key=key,
        author=event.author,
        reason=event.reason,
        occurred_at=event.occurred_at,
        version=version,
        diff=diff,
    )
