"""Control events: every change to an experiment is an event on the control topic.

The platform's view of experiments is the projection of this topic (last
``ExperimentDefined`` per tenant and key wins); nothing else is authoritative.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.experiment import Experiment
from schemas.identifiers import TenantId


def _now() -> datetime:
    return datetime.now(UTC)


class ExperimentDefined(BaseModel):
    """An experiment was created or given a new definition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["experiment_defined"] = "experiment_defined"
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    tenant_id: TenantId
    author: str = Field(min_length=1, description="Who made the change (user or key id).")
    reason: str = ""
    occurred_at: AwareDatetime = Field(default_factory=_now)
    experiment: Experiment

    @property
    def partition_key(self) -> bytes:
        return f"{self.tenant_id}:{self.experiment.key}".encode()


#: Every kind of control event; a union once more kinds (start, ramp, rollback) exist.
ControlEvent = ExperimentDefined


def parse_control_event(payload: bytes | str) -> ControlEvent:
    """Validate one control event from the control topic."""
    return ExperimentDefined.model_validate_json(payload)
