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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from schemas.config import ConfigSnapshot, ExperimentConfig, FlagConfig
from schemas.control import (
    ControlEvent,
    ExperimentChanged,
    ExperimentDefined,
    ExperimentRolledBack,
    FlagDefined,
    HoldoutSet,
    KillSwitchSet,
    MetricDefined,
    RolloutCommanded,
    RolloutDecided,
    RolloutDefined,
    TenantCreated,
)
from schemas.control_api import FieldChange, HistoryEntry, QuarantinedEvent
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.identifiers import Key, TenantId

if TYPE_CHECKING:
    from services.control_domain.rollout_state import RolloutEntry
from schemas.limits import (
    MAX_HISTORY_PER_TENANT,
    MAX_QUARANTINE_REASON_CHARS,
    MAX_QUARANTINED_PER_TENANT,
)
from services.control_domain.api_keys import KeyRing


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
    #: Control events naming this tenant that could not be read or applied (the newest).
    quarantined: list[QuarantinedEvent] = field(default_factory=list)
    #: Rollout plans by key (``services.control_domain.rollout_state``).
    rollouts: dict[str, RolloutEntry] = field(default_factory=dict)

    def record(self, entry: HistoryEntry, metric: bool = False) -> None:
        """Keep ``entry``, and only the newest ``MAX_HISTORY_PER_TENANT`` of its kind (the
        whole audit log stays on the control topic and in the control service's file)."""
        history = self.metric_history if metric else self.history
        history.append(entry)
        if len(history) > MAX_HISTORY_PER_TENANT:
            del history[: len(history) - MAX_HISTORY_PER_TENANT]

    def history_of(self, key: str) -> list[HistoryEntry]:
        return [entry for entry in self.history if entry.key == key]

    def metric_history_of(self, name: str) -> list[HistoryEntry]:
        return [entry for entry in self.metric_history if entry.key == name]

    def quarantined_of(self, key: str) -> list[QuarantinedEvent]:
        return [event for event in self.quarantined if event.key == key]

    def snapshot(self) -> ConfigSnapshot:
        from services.control_domain.rollout_state import active_flag_exposure_keys

        exposure_keys = active_flag_exposure_keys(self.rollouts)
        return ConfigSnapshot(
            tenant_id=self.tenant_id,
            revision=self.revision,
            holdout_percent=self.holdout_percent,
            experiments=[
                ExperimentConfig(experiment=entry.experiment, killed=entry.killed)
                for _, entry in sorted(self.experiments.items())
            ],
            flags=[
                FlagConfig(
                    flag=entry.flag, killed=entry.killed, exposure_key=exposure_keys.get(key)
                )
                for key, entry in sorted(self.flags.items())
            ],
        )


def _dump(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")


_KEY: TypeAdapter[str] = TypeAdapter(Key)
_TENANT: TypeAdapter[str] = TypeAdapter(TenantId)


def _well_formed(adapter: TypeAdapter[str], value: Any) -> str | None:
    """``value`` if it is a well-formed id of ``adapter``'s kind, else None."""
    if not isinstance(value, str):
        return None
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


class ControlState:
    """Everything the control topic says, up to ``next_offset``."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantState] = {}
        self.keys = KeyRing()
        self.next_offset = 0
        #: Events skipped as unreadable or inapplicable, over all tenants.
        self.quarantined_count = 0

    def tenant(self, tenant_id: str) -> TenantState | None:
        return self.tenants.get(tenant_id)

    def apply(self, offset: int, event: ControlEvent) -> None:
        """Fold the event at ``offset`` into the state (events must come in log order).

        Whatever can fail (diffs, history entries) is computed before anything changes, so
        an event that raises leaves the state as it was.
        """
        commit = self._change(offset, event)
        self.next_offset = max(self.next_offset, offset + 1)
        commit()

    def check(self, event: ControlEvent) -> None:
        """Raise whatever applying ``event`` next would raise; change nothing."""
        self._change(self.next_offset, event)

    def quarantine(self, offset: int, key: bytes | None, value: bytes | None, reason: str) -> None:
        """Skip the message at ``offset``: count it, and show it to the tenant it names."""
        self.next_offset = max(self.next_offset, offset + 1)
        self.quarantined_count += 1
        tenant_id, kind, subject = _peek(key, value)
        if len(reason) > MAX_QUARANTINE_REASON_CHARS:
            reason = reason[:MAX_QUARANTINE_REASON_CHARS] + f"… ({len(reason)} characters)"
        if tenant_id is None:
            return
        tenant = self.tenants.setdefault(tenant_id, TenantState(tenant_id))
        tenant.quarantined.append(
            QuarantinedEvent(offset=offset, type=kind, key=subject, reason=reason)
        )
        del tenant.quarantined[:-MAX_QUARANTINED_PER_TENANT]

    def _change(self, offset: int, event: ControlEvent) -> Callable[[], None]:
        existing = self.tenants.get(event.tenant_id)
        tenant = existing if existing is not None else TenantState(event.tenant_id)
        change = self._tenant_change(tenant, offset, event)

        def commit() -> None:
            self.tenants.setdefault(event.tenant_id, tenant)
            self.keys.apply(event)
            change()

        return commit

    def _tenant_change(
        self, tenant: TenantState, offset: int, event: ControlEvent
    ) -> Callable[[], None]:
        if isinstance(event, TenantCreated):

            def created() -> None:
                tenant.created = True
                tenant.name = event.name

            return created
        if isinstance(event, HoldoutSet):
            entry = _history_entry(
                offset,
                event,
                "",
                None,
                [
                    FieldChange(
                        field="holdout_percent", before=tenant.holdout_percent, after=event.percent
                    )
                ],
            )

            def holdout() -> None:
                tenant.holdout_percent = event.percent
                tenant.revision = offset
                tenant.record(entry)

            return holdout
        if isinstance(event, ExperimentDefined | ExperimentChanged | ExperimentRolledBack):
            return self._experiment_change(tenant, offset, event)
        if isinstance(event, FlagDefined):
            return self._flag_change(tenant, offset, event)
        if isinstance(event, MetricDefined):
            return self._metric_change(tenant, offset, event)
        if isinstance(event, KillSwitchSet):
            return self._kill_change(tenant, offset, event)
        if isinstance(event, RolloutDefined | RolloutCommanded | RolloutDecided):
            from services.control_domain.rollout_state import rollout_change

            return rollout_change(tenant, offset, event)
        return lambda: None  # API keys: the KeyRing alone

    def _experiment_change(
        self,
        tenant: TenantState,
        offset: int,
        event: ExperimentDefined | ExperimentChanged | ExperimentRolledBack,
    ) -> Callable[[], None]:
        experiment = event.experiment
        current = tenant.experiments.get(experiment.key)
        before = None if current is None else current.experiment
        entry = _history_entry(
            offset,
            event,
            experiment.key,
            experiment.version,
            config_diff(_dump(before), _dump(experiment)),
        )

        def commit() -> None:
            target = tenant.experiments.setdefault(experiment.key, ExperimentEntry(experiment))
            target.experiment = experiment
            target.versions[experiment.version] = experiment
            tenant.revision = offset
            tenant.record(entry)

        return commit

    def _flag_change(
        self, tenant: TenantState, offset: int, event: FlagDefined
    ) -> Callable[[], None]:
        flag = event.flag
        current = tenant.flags.get(flag.key)
        before = None if current is None else current.flag
        entry = _history_entry(
            offset, event, flag.key, flag.version, config_diff(_dump(before), _dump(flag))
        )

        def commit() -> None:
            target = tenant.flags.setdefault(flag.key, FlagEntry(flag))
            target.flag = flag
            target.versions[flag.version] = flag
            tenant.revision = offset
            tenant.record(entry)

        return commit

    def _metric_change(
        self, tenant: TenantState, offset: int, event: MetricDefined
    ) -> Callable[[], None]:
        # Metrics are not served to SDKs, so the config revision stays as it is.
        metric = event.metric
        current = tenant.metrics.get(metric.name)
        before = None if current is None else current.metric
        entry = _history_entry(
            offset, event, metric.name, event.version, config_diff(_dump(before), _dump(metric))
        )

        def commit() -> None:
            target = tenant.metrics.setdefault(metric.name, MetricEntry(metric, event.version))
            target.metric = metric
            target.version = event.version
            target.versions[event.version] = metric
            tenant.record(entry, metric=True)

        return commit

    def _kill_change(
        self, tenant: TenantState, offset: int, event: KillSwitchSet
    ) -> Callable[[], None]:
        target: ExperimentEntry | FlagEntry | None = tenant.experiments.get(
            event.key
        ) or tenant.flags.get(event.key)
        if target is None:
            return lambda: None
        entry = _history_entry(
            offset,
            event,
            event.key,
            None,
            [FieldChange(field="killed", before=target.killed, after=event.killed)],
        )

        def commit() -> None:
            assert target is not None
            target.killed = event.killed
            tenant.revision = offset
            tenant.record(entry)

        return commit


def _peek(key: bytes | None, value: bytes | None) -> tuple[str | None, str | None, str | None]:
    """(tenant, type, subject) of a message that is not a valid control event, as far as
    they can be told: from its JSON if it parses, else from its Kafka key
    (``tenant:subject``). Only well-formed ids are believed."""
    document: Any = None
    if value is not None:
        try:
            document = orjson.loads(value)
        except (orjson.JSONDecodeError, RecursionError):
            document = None
    if not isinstance(document, dict):
        document = {}
    key_tenant, _, key_subject = (key or b"").decode("utf-8", "replace").partition(":")
    tenant = _well_formed(_TENANT, document.get("tenant_id")) or _well_formed(_TENANT, key_tenant)
    kind = _well_formed(_KEY, document.get("type"))
    subject: Any = None
    for holder, field_name in (
        ("experiment", "key"),
        ("flag", "key"),
        ("metric", "name"),
    ):
        inner = document.get(holder)
        if isinstance(inner, dict) and field_name in inner:
            subject = inner[field_name]
            break
    else:
        subject = document.get("key", document.get("key_id"))
    return tenant, kind, _well_formed(_KEY, subject) or _well_formed(_KEY, key_subject)


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
