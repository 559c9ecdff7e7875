"""The results API's JSON: scorecards, the experiments projection and loading progress.

A ``Scorecard`` compares every treatment of an experiment with its control on every
metric, from the sufficient statistics the stream keeps. Figures that cannot be computed
(too few units, no variance) are ``null`` with a ``reason``; no float in these models is
ever NaN or infinite, so the JSON is valid everywhere.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.experiment import Aggregation, Experiment
from schemas.identifiers import EventName, Key, TenantId

TestName = Literal["welch_t", "two_proportion_z"]
Verdict = Literal["better", "worse", "inconclusive", "not_computable"]


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Interval(_Result):
    """A point estimate with its two-sided confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float


class ArmSummary(_Result):
    variant_key: Key
    units: int = Field(ge=0)
    mean: float | None = Field(description="Mean unit-level metric value; null without units.")


class MetricComparison(_Result):
    """One metric, one treatment against the control."""

    metric: Key
    event: EventName
    aggregation: Aggregation
    role: Literal["primary", "secondary", "guardrail"]
    direction: Literal["increase", "decrease"]
    test: TestName
    control: ArmSummary
    treatment: ArmSummary
    absolute_effect: Interval | None = Field(description="Treatment mean minus control mean.")
    relative_effect: Interval | None = Field(
        description="Absolute effect over the control mean (0.05 = +5%), delta-method CI."
    )
    p_value: float | None = Field(ge=0, le=1)
    significant: bool = Field(description="p_value below the scorecard's alpha.")
    verdict: Verdict = Field(
        description="Significant and in the metric's better direction, the worse one, or not."
    )
    reason: str | None = Field(
        default=None, description="Why some figures are null; null when all are computed."
    )


class SampleRatioCheck(_Result):
    """Chi-square test of the observed units per variant against the designed weights."""

    observed_units: dict[str, int]
    expected_share: dict[str, float]
    p_value: float | None = Field(ge=0, le=1)
    threshold: float = Field(description="srm_detected when p_value is below this.")
    srm_detected: bool
    reason: str | None = None


class Scorecard(_Result):
    tenant_id: TenantId
    experiment_key: Key
    experiment_version: int
    status: str
    control_variant: Key
    confidence_level: float = Field(gt=0, lt=1)
    total_units: int = Field(ge=0)
    excluded_units: int = Field(ge=0, description="Units left out: they saw several variants.")
    sample_ratio: SampleRatioCheck
    trustworthy: bool = Field(description="False when the assignment itself looks broken (SRM).")
    warnings: list[str] = Field(default_factory=list)
    metrics: list[MetricComparison]


class ExperimentView(_Result):
    """The current definition of an experiment: its latest ``ExperimentDefined`` event."""

    tenant_id: TenantId
    key: Key
    defined_at: AwareDatetime
    author: str
    reason: str
    event_id: uuid.UUID
    experiment: Experiment


class LoadProgress(_Result):
    """How far the stream and the results loader are through the log.

    ``stream`` and ``loaded`` map topic -> partition -> next offset; ``rejected``
    counts, per topic, messages the loader could not parse (kept in ``load_rejections``).
    """

    stream: dict[str, dict[str, int]]
    loaded: dict[str, dict[str, int]]
    rejected: dict[str, int]
