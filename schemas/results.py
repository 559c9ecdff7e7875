"""The results API's JSON: scorecards, the experiments projection and loading progress.

A ``Scorecard`` compares every treatment of an experiment with its control on every
metric, from the sufficient statistics the stream keeps. Figures that cannot be computed
(too few units, no variance) are ``null`` with a ``reason``; no float in these models is
ever NaN or infinite, so the JSON is valid everywhere.

Over 400 lines on purpose: it is one declarative list of the results API's models, each
a few fields with their descriptions, kept in one place so the exported JSON Schemas
and the scorecard's ``TypedDict`` documents (``analytics.scorecard.documents``) are
checked against one module.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.experiment import Aggregation, Experiment
from schemas.identifiers import EventName, Key, TenantId

TestName = Literal["welch_t", "two_proportion_z", "ratio_delta", "cuped_welch_t"]
Verdict = Literal["better", "worse", "inconclusive", "not_computable"]
IntervalMethod = Literal["welch_t", "wald", "newcombe", "delta"]
Correction = Literal["holm", "bonferroni", "benjamini_hochberg", "none"]
Scale = Literal["relative", "absolute"]
#: Why figures are null (``reason`` says it in words):
#: ``invalid_units`` units not a whole number >= 0; ``no_units`` an arm has none;
#: ``too_few_units`` an arm has 1 (2 are needed); ``non_finite_sums`` a sum is NaN or
#: infinite; ``inconsistent_sums`` Σx² below (Σx)²/n or conversions outside [0, n];
#: ``zero_denominator`` a ratio's denominator sums to 0 in an arm; ``no_events`` every
#: value is 0 in both arms; ``zero_variance`` no variance to test with (both arms
#: constant, or a relative effect whose delta-method variance is 0, as when the
#: treatment's units are all 0); ``control_mean_not_positive`` a relative effect over a
#: control mean <= 0; ``metric_not_computed`` the metric's sums were never computed
#: (run ``liftstream replay``).
ReasonCode = Literal[
    "invalid_units",
    "no_units",
    "too_few_units",
    "non_finite_sums",
    "inconsistent_sums",
    "zero_denominator",
    "no_events",
    "zero_variance",
    "control_mean_not_positive",
    "metric_not_computed",
    "not_computable",
]
PlannedUnitsSource = Literal["option", "experiment", "plan", "default"]


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
    mean_ci: Interval | None = Field(
        default=None,
        description="Wilson score interval of a conversion rate; null for other metrics.",
    )


class SequentialResult(_Result):
    """Always-valid inference, valid however often anyone looks: half of alpha spent by
    the planned units (Brownian exit boundary), half on the normal-mixture mSPRT."""

    p_value: float = Field(
        ge=0, le=1, description="Always-valid p-value at this look, on the row's scale."
    )
    confidence_sequence: Interval = Field(
        description="The effect on the row's scale; covers it at every look at once."
    )
    mixing_variance: float = Field(
        gt=0,
        description="τ² of the N(0, τ²) mixture (at alpha / 2); on relative rows, over the "
        "log of the ratio of means (the test runs there, its sequence mapped back to "
        "relative effects).",
    )
    planned_units: int = Field(
        gt=0,
        description="Tuning: units (both arms) by which half of alpha is spent and at "
        "which the mixture's sequence is tightest.",
    )
    may_stop: bool = Field(description="p_value below alpha: stopping now keeps alpha.")


class BayesianResult(_Result):
    """Posterior summaries of the effect on the row's scale, in the metric's better
    direction."""

    prior: str = Field(description="The prior the posterior is built on.")
    chance_to_beat_control: float = Field(ge=0, le=1)
    expected_loss_ship: float = Field(
        ge=0,
        description="Expected loss of shipping the treatment, on the row's scale (metric "
        "units for absolute, a fraction of the control mean for relative).",
    )
    expected_loss_keep: float = Field(
        ge=0, description="Expected loss of keeping the control, on the row's scale."
    )


class CupedSummary(_Result):
    """How CUPED adjusted a comparison: y - θ (c - c̄), c the pre-exposure covariate."""

    theta: float = Field(description="Pooled within-arm slope of the metric on the covariate.")
    variance_reduction: float | None = Field(
        description="Share of the difference's variance removed (about rho²)."
    )
    lookback_days: float = Field(gt=0, description="The covariate's window before exposure.")


class MetricComparison(_Result):
    """One metric, one treatment against the control."""

    metric: Key
    event: EventName
    aggregation: Aggregation
    role: Literal["primary", "secondary", "guardrail"]
    direction: Literal["increase", "decrease"]
    test: TestName
    scale: Scale = Field(
        default="absolute",
        description="The scale of p_value, adjusted_p_value, adjusted_effect, significant, "
        "verdict, sequential, bayesian and detectable_effect: relative (relative_effect) or "
        "absolute (absolute_effect).",
    )
    control: ArmSummary
    treatment: ArmSummary
    absolute_effect: Interval | None = Field(description="Treatment mean minus control mean.")
    relative_effect: Interval | None = Field(
        description="Absolute effect over the control mean (0.05 = +5%); delta-method CI "
        "with Student's t at the Welch-Satterthwaite degrees of freedom."
    )
    p_value: float | None = Field(
        ge=0, le=1, description="Fixed-horizon p-value on the row's scale, unadjusted."
    )
    significant: bool = Field(
        description="adjusted_p_value (p_value when there is none) below the scorecard's alpha."
    )
    verdict: Verdict = Field(
        description="Significant and in the metric's better direction, the worse one, or not."
    )
    reason: str | None = Field(
        default=None,
        description="Why some figures are null (the row's scale first); null when all are "
        "computed.",
    )
    reason_code: ReasonCode | None = Field(default=None, description="reason as a stable code.")
    interval_method: IntervalMethod | None = Field(
        default=None,
        description="How absolute_effect's interval was made: welch_t, wald, or newcombe "
        "(conversions with fewer than 10 conversions or non-conversions in an arm), delta.",
    )
    adjusted_p_value: float | None = Field(
        default=None, ge=0, le=1, description="p_value after the scorecard's correction."
    )
    adjusted_effect: Interval | None = Field(
        default=None,
        description="The effect on the row's scale with its interval at "
        "adjusted_confidence_level, which agrees with adjusted_p_value.",
    )
    adjusted_confidence_level: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="1 - alpha / m (Bonferroni, also for Holm), 1 - alpha R / m (Benjamini-"
        "Hochberg's false-coverage-rate intervals, R discoveries) or 1 - alpha (none); m the "
        "comparisons of the row's family (experiment and metric role).",
    )
    sequential: SequentialResult | None = None
    bayesian: BayesianResult | None = None
    detectable_effect: float | None = Field(
        default=None,
        ge=0,
        description="Effect on the row's scale detectable with the units so far (80% power, "
        "alpha).",
    )
    cuped: CupedSummary | None = Field(
        default=None,
        description="Set when the comparison is CUPED-adjusted (test cuped_welch_t); the arm "
        "means are then the adjusted means.",
    )
    source: Literal["stream", "replay"] | None = Field(
        default=None,
        description="Where the figures came from: the stream's live aggregates, or a stored "
        "`liftstream replay` of the metric's current definition; null when neither has them.",
    )


class SampleRatioCheck(_Result):
    """Chi-square test of the observed units per variant against the designed weights."""

    observed_units: dict[str, int]
    expected_share: dict[str, float]
    p_value: float | None = Field(ge=0, le=1)
    threshold: float = Field(description="srm_detected when p_value is below this.")
    srm_detected: bool
    reason: str | None = None


class PipelineError(_Result):
    """Something of this experiment the platform could not process, and why: a metric
    definition the stream quarantined, or a control event the results service could not
    read. Everything else of the experiment (and of every other tenant) goes on."""

    stage: Literal["stream", "loader"] = Field(description="Who could not process it.")
    subject: str = Field(description="The metric, or the control event's type and offset.")
    reason: str
    at: AwareDatetime | None = Field(default=None, description="When it was reported.")


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
    correction: Correction = Field(
        default="none",
        description="Multiple-comparison correction behind adjusted_p_value, applied per family "
        "of comparisons: each metric role (primary, secondary, guardrail) is its own family.",
    )
    may_stop: bool = Field(
        default=False,
        description="Sequential test: every primary metric is decided (always-valid p below "
        "alpha) or a guardrail is significantly worse, and the scorecard is trustworthy.",
    )
    stop_reason: str | None = None
    scale: Scale = Field(default="absolute", description="The scale of every row's headline.")
    planned_units: int | None = Field(
        default=None,
        gt=0,
        description="Units (all variants) the sequential tests are tuned to: their confidence "
        "sequences are tightest there.",
    )
    planned_units_source: PlannedUnitsSource | None = Field(
        default=None,
        description="Where planned_units came from: the caller (option), the experiment's "
        "planned_units, liftstream plan's sample size for the primary metric (plan), or the "
        "default when there is no data to plan from.",
    )
    planned_units_basis: str | None = Field(
        default=None, description="How planned_units was arrived at, in words."
    )
    errors: list[PipelineError] = Field(
        default_factory=list,
        description="Definitions of this experiment the pipeline quarantined (their metrics "
        "have no live figures), with the reason.",
    )


class ExperimentView(_Result):
    """The current definition of an experiment: its latest ``ExperimentDefined`` event."""

    tenant_id: TenantId
    key: Key
    defined_at: AwareDatetime
    author: str
    reason: str
    event_id: uuid.UUID
    experiment: Experiment
    errors: list[PipelineError] = Field(
        default_factory=list, description="What of this experiment could not be processed."
    )


class LoadProgress(_Result):
    """How far the stream and the results loader are through the log.

    ``stream`` and ``loaded`` map topic -> partition -> next offset; ``rejected``
    counts, per topic, messages the loader could not parse (kept in ``load_rejections``).
    """

    stream: dict[str, dict[str, int]]
    loaded: dict[str, dict[str, int]]
    rejected: dict[str, int]


class CellStats(_Result):
    """Σx and Σx² of one (event, aggregation) over a variant's units."""

    event: str
    aggregation: Aggregation
    sum: float = Field(description="Σx over the variant's units.")
    sum_sq: float = Field(description="Σx² over the variant's units.")


class VariantDay(_Result):
    """One variant's cumulative figures at the end of a day."""

    variant_key: str
    units: int = Field(ge=0, description="Units counted as of the end of the day.")
    excluded_units: int = Field(ge=0, description="Units that had seen several variants.")
    stats: list[CellStats]


class MetricDay(_Result):
    """One metric's treatment-against-control comparison on the cumulative figures."""

    metric: str
    variant_key: str = Field(description="The treatment compared with the control.")
    p_value: float | None
    adjusted_p_value: float | None
    sequential_p_value: float | None = Field(description="Always-valid p-value at this look.")
    absolute_effect: float | None = Field(description="Treatment mean minus control mean.")
    absolute_ci_low: float | None = Field(
        default=None, description="Lower end of absolute_effect's confidence interval."
    )
    absolute_ci_high: float | None = Field(
        default=None, description="Upper end of absolute_effect's confidence interval."
    )
    significant: bool
    reason: str | None = Field(description="Why figures are missing, when they are.")


class DayResults(_Result):
    """An experiment's cumulative figures and comparisons at the end of one UTC day."""

    day: date
    total_units: int = Field(ge=0)
    excluded_units: int = Field(ge=0)
    variants: list[VariantDay]
    sample_ratio_p_value: float | None
    metrics: list[MetricDay]


class DailyResults(_Result):
    """``GET .../experiments/{key}/daily``: daily cumulative snapshots (late events land
    on their own day; recomputed from the raw log)."""

    tenant_id: TenantId
    experiment_key: Key
    experiment_version: int
    days: list[DayResults] = Field(
        description="From the first exposure's day (or ``since``) to the last event's (or "
        "``through``), at most MAX_DAILY_DAYS days; earlier events are in the first day's "
        "cumulative figures."
    )
    clamped: str | None = Field(
        default=None,
        description="Why fewer days are shown than asked for (the data's span, or the "
        "maximum days per request); null when none were cut.",
    )


class RejectedCount(_Result):
    """Refused messages of a tenant with one (stage, field)."""

    stage: str = Field(description="Who refused them: collector, stream, loader.")
    field: str = Field(description="The field named by the first error; '' for the whole.")
    count: int = Field(ge=0)
    example: str = Field(description="The reason given for one of them.")


class ExperimentHealth(_Result):
    """``GET .../experiments/{key}/health``: what the pipeline counted for the experiment
    and its tenant, so a team sees what was dropped, late or refused, and why.

    Exposure counts are the experiment's; outcomes and refused messages belong to no
    experiment, so theirs are the tenant's. "Late" means received on a later UTC day than
    the event's timestamp: it changed a day ``/daily`` had already shown.
    """

    tenant_id: TenantId
    experiment_key: Key
    exposures: int = Field(ge=0, description="Exposure events stored (each once).")
    duplicate_exposures: int = Field(ge=0, description="Exposures received again, dropped.")
    late_exposures: int = Field(ge=0)
    units: int = Field(ge=0, description="Units counted by the stream.")
    units_in_several_variants: int = Field(
        ge=0, description="Units the stream excluded: they saw more than one variant."
    )
    tenant_outcomes: int = Field(ge=0, description="The tenant's outcome events stored.")
    tenant_duplicate_outcomes: int = Field(ge=0)
    tenant_late_outcomes: int = Field(ge=0)
    tenant_rejected: int = Field(
        ge=0, description="The tenant's messages refused (dead letters and loader rejections)."
    )
    rejected_by_reason: list[RejectedCount] = Field(
        description="The tenant's refused messages by stage and field, most frequent first."
    )
    errors: list[PipelineError]
    empty_raw_log: bool = Field(
        description="No exposure of this experiment is in the raw log: replays and /daily "
        "have nothing to compute from."
    )


class TenantRejections(_Result):
    """``GET .../deadletters``: the tenant's refused messages (dead letters and loader
    rejections), counted by stage and field."""

    tenant_id: TenantId
    rejected: int = Field(ge=0, description="All of the tenant's refused messages.")
    by_reason: list[RejectedCount] = Field(description="By stage and field, most frequent first.")
