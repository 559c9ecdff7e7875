"""The control API's rollout bodies and answers (``/v1/tenants/{tenant}/rollouts``)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.control import MAX_CHECKS
from schemas.control_api import ChangeResult
from schemas.limits import Text
from schemas.rollout import (
    MAX_ROLLOUT_STEPS,
    Decision,
    DecisionEvidence,
    RolloutPlan,
    RolloutStatus,
)

#: Most decisions one ``/decisions`` answer holds.
MAX_DECISIONS_PER_ANSWER = 1000
#: Changes (plans applied, people's commands) a rollout's state shows, the newest.
MAX_CHANGES_SHOWN = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RolloutWrite(_Body):
    plan: RolloutPlan
    reason: Text = ""


class RolloutCommandBody(_Body):
    reason: Text = ""
    step: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ROLLOUT_STEPS,
        description="approve: the step (1-based) approved; the next step when unset.",
    )


class RolloutDecisionView(BaseModel):
    offset: int
    event_id: uuid.UUID
    author: str
    occurred_at: AwareDatetime
    plan_version: int
    check_index: int = Field(ge=0, le=MAX_CHECKS)
    decision: Decision
    step: int = Field(description="The step (1-based) after the decision.")
    percent: float
    notify: bool
    reason: str
    evidence: DecisionEvidence


class RolloutChange(BaseModel):
    offset: int
    type: str
    author: str
    reason: str
    occurred_at: AwareDatetime
    plan_version: int
    step: int | None = None


class RolloutState(BaseModel):
    tenant_id: str
    key: str
    status: RolloutStatus
    step: int = Field(description="The current step, 1-based.")
    percent: float = Field(description="Of the segment in the rollout now (0 once rolled back).")
    started_at: AwareDatetime
    step_started_at: AwareDatetime
    approved_steps: list[int]
    checks: int = Field(description="Checks decided for the current plan version.")
    automatic_rollbacks: int
    entered: bool = Field(
        default=True,
        description="False while the plan's entry gate has not let the first step start.",
    )
    versions: list[int]
    plan: RolloutPlan
    last_decision: RolloutDecisionView | None = None
    changes: list[RolloutChange] = Field(default_factory=list)


class RolloutChangeResult(ChangeResult):
    rollout: RolloutState


class WebhookSecret(BaseModel):
    secret: str = Field(description="HMAC-SHA256 key of this tenant's webhook signatures.")
    header: Literal["X-Liftstream-Signature"] = "X-Liftstream-Signature"
    scheme: str = "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<body>')>"
