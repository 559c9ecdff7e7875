"""Scorecard documents: the JSON-ready dicts the scorecard builds, typed field by field.

Each ``TypedDict`` here has exactly the fields of its model in ``schemas.results`` (a
unit test compares them, nested documents included), so mypy checks every dict the
builders write against the schema, and the documents validate into the models
unchanged. They stay plain dicts at run time: building ~10 pydantic objects per
comparison costs far more than computing it (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from schemas.results import (
    Correction,
    IntervalMethod,
    PlannedUnitsSource,
    ReasonCode,
    Scale,
    TestName,
    Verdict,
)


class IntervalDoc(TypedDict):
    estimate: float
    ci_low: float
    ci_high: float


class ArmSummaryDoc(TypedDict):
    variant_key: str
    units: int
    mean: float | None
    mean_ci: IntervalDoc | None


class SequentialDoc(TypedDict):
    p_value: float
    confidence_sequence: IntervalDoc
    mixing_variance: float
    planned_units: int
    may_stop: bool


class BayesianDoc(TypedDict):
    prior: str
    chance_to_beat_control: float
    expected_loss_ship: float
    expected_loss_keep: float


class CupedDoc(TypedDict):
    theta: float
    variance_reduction: float | None
    lookback_days: float


class MetricComparisonDoc(TypedDict):
    metric: str
    event: str
    aggregation: str  # the value of schemas.experiment.Aggregation
    role: Literal["primary", "secondary", "guardrail"]
    direction: Literal["increase", "decrease"]
    test: TestName
    scale: Scale
    control: ArmSummaryDoc
    treatment: ArmSummaryDoc
    absolute_effect: IntervalDoc | None
    relative_effect: IntervalDoc | None
    p_value: float | None
    significant: bool
    verdict: Verdict
    reason: str | None
    reason_code: ReasonCode | None
    interval_method: IntervalMethod | None
    adjusted_p_value: float | None
    adjusted_effect: IntervalDoc | None
    adjusted_confidence_level: float | None
    sequential: SequentialDoc | None
    bayesian: BayesianDoc | None
    detectable_effect: float | None
    cuped: CupedDoc | None
    source: Literal["stream", "replay"] | None


class SampleRatioDoc(TypedDict):
    observed_units: dict[str, int]
    expected_share: dict[str, float]
    p_value: float | None
    threshold: float
    srm_detected: bool
    reason: str | None


class PipelineErrorDoc(TypedDict):
    stage: Literal["stream", "loader"]
    subject: str
    reason: str
    at: NotRequired[str | None]


class ScorecardDoc(TypedDict):
    tenant_id: str
    experiment_key: str
    experiment_version: int
    status: str
    control_variant: str
    confidence_level: float
    total_units: int
    excluded_units: int
    sample_ratio: SampleRatioDoc
    trustworthy: bool
    warnings: list[str]
    metrics: list[MetricComparisonDoc]
    correction: Correction
    may_stop: bool
    stop_reason: str | None
    scale: Scale
    planned_units: int | None
    planned_units_source: PlannedUnitsSource | None
    planned_units_basis: str | None
    errors: list[PipelineErrorDoc]


#: Each document type and the model it must match (tests compare their fields).
DOCUMENT_MODELS: dict[str, type] = {
    "Interval": IntervalDoc,
    "ArmSummary": ArmSummaryDoc,
    "SequentialResult": SequentialDoc,
    "BayesianResult": BayesianDoc,
    "CupedSummary": CupedDoc,
    "MetricComparison": MetricComparisonDoc,
    "SampleRatioCheck": SampleRatioDoc,
    "PipelineError": PipelineErrorDoc,
    "Scorecard": ScorecardDoc,
}
