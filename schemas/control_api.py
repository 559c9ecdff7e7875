"""What the control API (``services.control``) takes and answers, for its clients.

Requests carry a ``reason`` kept in the audit log; numbers must be finite (JSON has no
NaN, but Python's parser lets it in). A change answers a ``ChangeResult``: ``changed`` is
false, with no event, when the request matched the current state; otherwise it names the
control event written and its offset on the control topic. Experiments, flags and
metrics answer their current state with it. The state of each also lists, in
``errors``, the control events about it that no reader could use (quarantined).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from schemas.control import Role
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.limits import MAX_VERSION, Text

# Requests.


class ControlRequest(BaseModel):
    """A request body: finite numbers only."""

    model_config = ConfigDict(allow_inf_nan=False)


#: Each request's last field (validation errors name fields in their order).
_REASON = Field(default="", description="Why: kept in the audit log.")


class ExperimentWrite(ControlRequest):
    """Create an experiment or define its next version."""

    experiment: Experiment
    reason: Text = _REASON


class FlagWrite(ControlRequest):
    """Create a flag or define its next version."""

    flag: Flag
    reason: Text = _REASON


class MetricWrite(ControlRequest):
    """Create a metric or define its next version."""

    metric: MetricDefinition
    reason: Text = _REASON


class ReasonBody(ControlRequest):
    """A change that needs nothing but a reason (start, pause, conclude, revoke)."""

    reason: Text = _REASON


class RampBody(ControlRequest):
    traffic: float = Field(description="Percent of eligible units included, in (0, 100].")
    reason: Text = _REASON


class FlagRampBody(ControlRequest):
    ramp: float = Field(description="Percent of eligible units served the on value.")
    reason: Text = _REASON


class RollbackBody(ControlRequest):
    to_version: int = Field(ge=1, le=MAX_VERSION, description="The version to restore.")
    reason: Text = _REASON


class KillBody(ControlRequest):
    killed: bool = Field(default=True, description="Set the kill switch; false clears it.")
    reason: Text = _REASON


class HoldoutBody(ControlRequest):
    percent: float = Field(description="Percent of units that see no experiment, in [0, 100].")
    reason: Text = _REASON


class KeyRequest(ControlRequest):
    role: Role
    label: Text = Field(default="", description="What the key is for.")
    reason: Text = _REASON


# What the projection keeps and shows.


class FieldChange(BaseModel):
    """One leaf of a configuration that a change set from ``before`` to ``after``."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path (list items by index); empty for the whole.")
    before: JsonValue = None
    after: JsonValue = None


class HistoryEntry(BaseModel):
    """One change as ``history`` shows it."""

    model_config = ConfigDict(frozen=True)

    offset: int
    event_id: uuid.UUID
    type: str
    key: str
    author: str = Field(description="The key id that made the change.")
    reason: str
    occurred_at: AwareDatetime
    version: int | None = None
    diff: list[FieldChange]


class QuarantinedEvent(BaseModel):
    """A control event that could not be read or applied: skipped, and shown to its tenant."""

    model_config = ConfigDict(frozen=True)

    offset: int
    type: str | None = Field(default=None, description="The event's type, if it could be read.")
    key: str | None = Field(
        default=None, description="The experiment, flag, metric or API key it names, if any."
    )
    reason: str


_ERRORS: Any = Field(
    default_factory=list,
    description="Control events about this key that no reader could use: skipped, with why.",
)


# Answers.


class ChangeResult(BaseModel):
    changed: bool = Field(description="False when the request matched the current state.")
    type: str | None = Field(default=None, description="The control event written, if any.")
    event_id: uuid.UUID | None = None
    offset: int | None = Field(default=None, description="Its offset on the control topic.")


class ExperimentState(BaseModel):
    tenant_id: str
    key: str
    killed: bool
    versions: list[int] = Field(description="Every version defined, oldest first.")
    experiment: Experiment
    errors: list[QuarantinedEvent] = _ERRORS


class ExperimentChangeResult(ChangeResult):
    experiment: ExperimentState


class FlagState(BaseModel):
    tenant_id: str
    key: str
    killed: bool
    versions: list[int] = Field(description="Every version defined, oldest first.")
    flag: Flag
    errors: list[QuarantinedEvent] = _ERRORS


class FlagChangeResult(ChangeResult):
    flag: FlagState


class MetricState(BaseModel):
    tenant_id: str
    name: str
    version: int
    versions: list[int] = Field(description="Every version defined, oldest first.")
    metric: MetricDefinition
    errors: list[QuarantinedEvent] = _ERRORS


class MetricChangeResult(ChangeResult):
    metric: MetricState


class KeyView(BaseModel):
    key_id: str
    tenant_id: str
    role: Role
    revoked: bool
    label: str


class KeyCreated(KeyView):
    key: str = Field(description="The key itself: shown this once, never stored.")
    event_id: uuid.UUID


class TenantView(BaseModel):
    tenant_id: str
    name: str
    holdout_percent: float
    experiments: int = Field(description="How many experiments the tenant defined.")
    flags: int = Field(description="How many flags the tenant defined.")
    errors: list[QuarantinedEvent] = Field(
        default_factory=list,
        description="The tenant's control events no reader could use (the newest), with why.",
    )
