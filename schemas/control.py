"""Control events: every change to tenants, keys, experiments and flags is an event.

The control topic holds them in one partition, kept forever; the platform's view of
tenants, API keys, experiments, flags and metrics is the projection of that log
(``services.control_domain.control_state``), nothing else is authoritative. Every event names its
tenant, author (an API key id, or the operator for bootstrap), time and reason.

Experiment, flag and metric events carry the full definition *after* the change, so a reader
never needs older events to know the current definition ("latest wins"), and the audit
diff of a change is the difference of two consecutive definitions. API keys are carried
only as their SHA-256 hash, never in clear.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.identifiers import Key, TenantId
from schemas.limits import MAX_NAME_CHARS, MAX_VERSION, Name, Text
from schemas.rollout import MAX_ROLLOUT_STEPS, Decision, DecisionEvidence, RolloutPlan

Role = Literal["admin", "ingest", "read"]
#: A key id: public, shown in audit logs; the secret part of a key is never stored.
KeyId = Annotated[str, Field(pattern=r"^[a-z0-9]{8,32}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _now() -> datetime:
    return datetime.now(UTC)


class _ControlEventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    tenant_id: TenantId
    author: str = Field(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="Who made the change (user or key id).",
    )
    reason: Text = ""
    occurred_at: AwareDatetime = Field(default_factory=_now)

    @property
    def subject(self) -> str:
        """What the event is about within its tenant (experiment or flag key, key id)."""
        return ""

    @property
    def partition_key(self) -> bytes:
        return f"{self.tenant_id}:{self.subject}".encode()


class TenantCreated(_ControlEventBase):
    type: Literal["tenant_created"] = "tenant_created"
    name: Name = ""


class ApiKeyIssued(_ControlEventBase):
    type: Literal["api_key_issued"] = "api_key_issued"
    key_id: KeyId
    key_hash: Sha256Hex = Field(description="SHA-256 (hex) of the full key; never the key.")
    role: Role
    label: Text = ""

    @property
    def subject(self) -> str:
        return self.key_id


class ApiKeyRevoked(_ControlEventBase):
    type: Literal["api_key_revoked"] = "api_key_revoked"
    key_id: KeyId

    @property
    def subject(self) -> str:
        return self.key_id


class HoldoutSet(_ControlEventBase):
    """The tenant-wide holdout: this percent of units is kept out of every experiment."""

    type: Literal["holdout_set"] = "holdout_set"
    percent: float = Field(ge=0, le=100)


class ExperimentDefined(_ControlEventBase):
    """An experiment was created or given a new definition (a new version)."""

    type: Literal["experiment_defined"] = "experiment_defined"
    experiment: Experiment

    @property
    def subject(self) -> str:
        return self.experiment.key


class ExperimentChanged(_ControlEventBase):
    """Started, paused, ramped or concluded: ``experiment`` is the definition after it."""

    type: Literal[
        "experiment_started", "experiment_paused", "experiment_ramped", "experiment_concluded"
    ]
    experiment: Experiment

    @property
    def subject(self) -> str:
        return self.experiment.key


class ExperimentRolledBack(_ControlEventBase):
    """An earlier version's configuration restored, as a new version."""

    type: Literal["experiment_rolled_back"] = "experiment_rolled_back"
    to_version: int = Field(
        ge=1, le=MAX_VERSION, description="The version whose configuration was restored."
    )
    experiment: Experiment

    @property
    def subject(self) -> str:
        return self.experiment.key


class FlagDefined(_ControlEventBase):
    """A flag was created, given a new definition, or ramped: ``flag`` is the result."""

    type: Literal["flag_defined", "flag_ramped"] = "flag_defined"
    flag: Flag

    @property
    def subject(self) -> str:
        return self.flag.key


class KillSwitchSet(_ControlEventBase):
    """A flag or experiment turned off for everyone (``killed``), or back on."""

    type: Literal["kill_switch_set"] = "kill_switch_set"
    key: Key
    killed: bool

    @property
    def subject(self) -> str:
        return self.key


class MetricDefined(_ControlEventBase):
    """A tenant's metric was created or given a new definition: ``metric`` is the result."""

    type: Literal["metric_defined"] = "metric_defined"
    version: int = Field(
        ge=1, le=MAX_VERSION, description="1 when created, one more on every change."
    )
    metric: MetricDefinition

    @property
    def subject(self) -> str:
        return self.metric.name


class RolloutDefined(_ControlEventBase):
    """A rollout plan was applied (created, or given a new version)."""

    type: Literal["rollout_defined"] = "rollout_defined"
    plan: RolloutPlan

    @property
    def subject(self) -> str:
        return self.plan.key


class RolloutCommanded(_ControlEventBase):
    """A person approved the next step, paused, resumed or aborted a rollout."""

    type: Literal["rollout_approved", "rollout_paused", "rollout_resumed", "rollout_aborted"]
    key: Key
    plan_version: int = Field(ge=1, le=MAX_VERSION)
    step_index: int | None = Field(
        default=None, ge=0, lt=MAX_ROLLOUT_STEPS, description="The step approved."
    )

    @property
    def subject(self) -> str:
        return self.key


#: Checks one plan version may make (a check a second for 30 years).
MAX_CHECKS = 10**9
#: A Kafka offset's largest value (a signed 64-bit integer).
MAX_OFFSET = 2**63 - 1


class RolloutDecided(_ControlEventBase):
    """What the controller decided at one check of a rollout, and why.

    ``event_id`` is derived from (tenant, rollout, plan version, check index), so a
    controller that restarts and makes the same check again writes the same id."""

    type: Literal["rollout_decided"] = "rollout_decided"
    key: Key
    plan_version: int = Field(ge=1, le=MAX_VERSION)
    check_index: int = Field(ge=0, le=MAX_CHECKS)
    decision: Decision
    step_index: int = Field(ge=0, lt=MAX_ROLLOUT_STEPS, description="The step after it.")
    percent: float = Field(ge=0, le=100, description="Of the segment in the rollout after it.")
    notify: bool = Field(default=False, description="A failure whose action is notify.")
    evidence: DecisionEvidence
    read_offset: int | None = Field(
        default=None,
        ge=0,
        le=MAX_OFFSET,
        description=(
            "The control log's next offset when the check read the rollout. The decision "
            "is void if the rollout was changed (a plan, an approval, a pause) at or after "
            "it: the check read too early, and is made again."
        ),
    )

    @property
    def subject(self) -> str:
        return self.key


#: Every kind of control event, told apart by ``type``.
ControlEvent = Annotated[
    TenantCreated
    | ApiKeyIssued
    | ApiKeyRevoked
    | HoldoutSet
    | ExperimentDefined
    | ExperimentChanged
    | ExperimentRolledBack
    | FlagDefined
    | KillSwitchSet
    | MetricDefined
    | RolloutDefined
    | RolloutCommanded
    | RolloutDecided,
    Field(discriminator="type"),
]
#: The events that carry an experiment definition.
ExperimentEvent = ExperimentDefined | ExperimentChanged | ExperimentRolledBack
#: The events about rollouts.
RolloutEvent = RolloutDefined | RolloutCommanded | RolloutDecided

_CONTROL_EVENT: TypeAdapter[ControlEvent] = TypeAdapter(ControlEvent)


def parse_control_event(payload: bytes | str) -> ControlEvent:
    """Validate one control event from the control topic (``ValidationError`` if invalid)."""
    return _CONTROL_EVENT.validate_json(payload)


def control_event_json(event: ControlEvent) -> bytes:
    """The bytes a control event is written as on the control topic."""
    return event.model_dump_json().encode()
