"""Rollout plans, and the evidence a rollout decision carries.

A rollout plan (``liftstream rollout apply -f plan.yaml``) moves one candidate (a variant
of an experiment, or a flag's on value) through steps (1% -> 5% -> 25% ...) of a segment
of units, watched by guardrail metrics and health gates. The controller
(``services.controller``) checks it every ``check_interval_s`` and writes each decision
(advance, hold, rollback, complete, inconclusive) to the control topic with its
``DecisionEvidence``.

A step's ``percent`` is the share of the segment in the rollout (the experiment's
``traffic``): the experiment's weights split it between the candidate and the concurrent
control (the holdback), so the candidate is always compared with control units exposed at
the same time, never with history. Traffic buckets are monotonic: a unit in the rollout
at 5% stays in it, on the same arm, at 25%.

A flag target (``target: {flag: KEY}``) has no weights: a step's ``percent`` is the share
of the segment served the flag's on value, and as many units again (the top of the same
traffic bucket, the flag's ``holdback``) are served off and logged as its concurrent
control, so a flag's step is at most 50%; completing the rollout serves on to the whole
segment. The arms are the flag's exposures, variants ``on`` and ``off`` of its key.

An ``entry_gate`` (``ShadowEntryGate``) holds the rollout before its first step, serving
the candidate to nobody, until a shadow test of the candidate passes the results
service's gate; each check keeps the gate's answer (``ShadowGateInput``) in its inputs.

Every field is bounded (hostile input is normal input); a refused plan names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from schemas.flags import MAX_HOLDBACK, OFF_VARIANT, ON_VARIANT
from schemas.identifiers import Key
from schemas.limits import MAX_VERSION, Text
from schemas.targeting import TargetingRule

#: Most steps of one plan; guardrails of one plan; webhooks of one plan.
MAX_ROLLOUT_STEPS = 20
MAX_GUARDRAILS = 16
MAX_WEBHOOKS = 5
MAX_WEBHOOK_URL_CHARS = 2048
#: The longest a step may last at the least (30 days), and the longest check interval.
MAX_STEP_DURATION_S = 30 * 24 * 3600.0
MIN_CHECK_INTERVAL_S = 1.0
MAX_CHECK_INTERVAL_S = 24 * 3600.0
#: Most units per arm a step may ask for, and the most units a plan may plan for.
MAX_STEP_UNITS = 10**9
MAX_ROLLOUT_PLANNED_UNITS = 10**12

FailureAction = Literal["rollback", "hold", "notify"]
Decision = Literal["advance", "hold", "rollback", "complete", "inconclusive"]
RolloutStatus = Literal["running", "paused", "rolled_back", "completed", "aborted"]

_PLAN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RolloutTarget(BaseModel):
    """The candidate: one variant of an experiment, or a flag's on value, served to a
    segment of units. Exactly one of ``experiment`` (with ``variant``) and ``flag``."""

    model_config = ConfigDict(
        **_PLAN,
        json_schema_extra={
            "oneOf": [  # null stands for unset
                {
                    "required": ["experiment", "variant"],
                    "properties": {
                        "experiment": {"type": "string"},
                        "variant": {"type": "string"},
                        "flag": {"type": "null"},
                    },
                },
                {
                    "required": ["flag"],
                    "properties": {
                        "flag": {"type": "string"},
                        "experiment": {"type": "null"},
                        "variant": {"type": "null"},
                    },
                },
            ]
        },
    )

    experiment: Key | None = Field(
        default=None, description="The experiment whose traffic the rollout ramps."
    )
    variant: Key | None = Field(
        default=None, description="The candidate variant (not the experiment's control)."
    )
    flag: Key | None = Field(
        default=None,
        description="The flag the rollout ramps: its on value is the candidate, its off value "
        "(served to as many units, held back) the control.",
    )
    segment: TargetingRule | None = Field(
        default=None,
        description="Who the rollout covers, in the targeting rules' language (e.g. region "
        "= eu); it becomes the experiment's (or flag's) targeting. Everyone if unset.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> RolloutTarget:
        if self.flag is not None:
            if self.experiment is not None:
                raise ValueError("flag: a target is an experiment's variant or a flag, not both")
            if self.variant is not None:
                raise ValueError("variant: a flag has no variants: its candidate is its on value")
        elif self.experiment is None:
            raise ValueError(
                "experiment: name the experiment (with its candidate variant) or the flag "
                "the rollout ramps"
            )
        elif self.variant is None:
            raise ValueError(f"variant: the candidate variant of '{self.experiment}' is required")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_target(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An experiment's target is written as before flags could be targets, so services
        # from before (whose target forbids unknown fields) keep reading its events.
        data: dict[str, Any] = handler(self)
        for name in ("experiment", "variant", "flag"):
            if data.get(name, "") is None:
                del data[name]
        return data

    @property
    def key(self) -> str:
        """The experiment's or the flag's key: the exposures' ``experiment_key``."""
        key = self.flag if self.flag is not None else self.experiment
        assert key is not None
        return key

    @property
    def is_flag(self) -> bool:
        return self.flag is not None

    @property
    def candidate(self) -> str:
        """The treatment arm's variant key (``on`` for a flag)."""
        variant = ON_VARIANT if self.flag is not None else self.variant
        assert variant is not None
        return variant


class RolloutStep(BaseModel):
    model_config = _PLAN

    percent: float = Field(
        gt=0,
        le=100,
        description="Percent of the segment in the rollout (a flag: served on, at most 50).",
    )
    min_duration_s: float = Field(
        default=0.0, ge=0, le=MAX_STEP_DURATION_S, description="Least time on this step."
    )
    min_units_per_arm: int = Field(
        default=0, ge=0, le=MAX_STEP_UNITS, description="Least units in each arm to leave it."
    )
    approval: bool = Field(
        default=False, description="A person must approve (`rollout approve`) before it starts."
    )


class Guardrail(BaseModel):
    """A metric that must not get worse than ``tolerance``: a guardrail may roll back, a
    signal may only hold; ``dry_run`` evaluates and reports it without acting on it."""

    model_config = _PLAN

    metric: Key = Field(
        description="A metric of the target experiment, by name; for a flag target, one of "
        "the tenant's metrics (liftstream metric apply)."
    )
    direction: Literal["increase", "decrease"] = Field(
        description="Which way is better (errors, latency: decrease)."
    )
    tolerance: float = Field(
        default=0.0, ge=0, le=1e12, description="The regression tolerated (0: none)."
    )
    scale: Literal["relative", "absolute"] = Field(
        default="relative",
        description="relative: tolerance is a share of the control mean (0.05 = 5%); "
        "absolute: in the metric's units.",
    )
    role: Literal["guardrail", "signal"] = "guardrail"
    dry_run: bool = False


class HealthGates(BaseModel):
    model_config = _PLAN

    srm_p: float = Field(
        default=0.001, gt=0, le=0.5, description="Sample-ratio mismatch when p is below this."
    )
    max_multiple_exposure_rate: float = Field(
        default=0.01, ge=0, le=1, description="Share of units seen in both arms."
    )
    no_data_grace_s: float = Field(
        default=600.0,
        ge=0,
        le=MAX_STEP_DURATION_S,
        description="After this long without units in both arms the check is inconclusive.",
    )
    max_dead_letter_rate: float = Field(
        default=0.01,
        ge=0,
        le=1e6,
        description="The tenant's refused events since the rollout started, per unit in it.",
    )


class FailureActions(BaseModel):
    model_config = _PLAN

    guardrail: FailureAction = "rollback"
    health: FailureAction = "hold"
    no_data: FailureAction = "hold"


class Webhook(BaseModel):
    model_config = _PLAN

    url: str = Field(
        max_length=MAX_WEBHOOK_URL_CHARS,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description="Called (POST, HMAC-SHA256 signed) on every decision.",
    )


def _without_unset_gate(data: dict[str, Any]) -> dict[str, Any]:
    # Written as before entry gates existed when there is none, so services from before
    # (whose models forbid unknown fields) keep reading plans and decisions without one.
    if data.get("entry_gate", "") is None:
        del data["entry_gate"]
    return data


class ShadowEntryGate(BaseModel):
    """The rollout starts (its first step) only once shadow test ``shadow`` shows the
    candidate's mismatch rate beyond the noise floor below ``max_mismatch_beyond_noise``
    with ``confidence`` (the results service's ``/shadows/{name}/gate``)."""

    model_config = _PLAN

    shadow: Key = Field(description="The shadow test's name (`client.shadow(name, ...)`).")
    max_mismatch_beyond_noise: float = Field(
        ge=0, le=1, description="The largest mismatch rate beyond noise allowed (0.001 = 0.1%)."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Of the one-sided upper bound compared."
    )


class RolloutPlan(BaseModel):
    """What a release engineer writes (YAML) and applies."""

    model_config = _PLAN

    key: Key
    description: Text = ""
    version: int = Field(default=1, ge=1, le=MAX_VERSION)
    target: RolloutTarget
    steps: list[RolloutStep] = Field(min_length=1, max_length=MAX_ROLLOUT_STEPS)
    guardrails: list[Guardrail] = Field(default_factory=list, max_length=MAX_GUARDRAILS)
    health: HealthGates = Field(default_factory=HealthGates)
    on_failure: FailureActions = Field(default_factory=FailureActions)
    check_interval_s: float = Field(default=60.0, ge=MIN_CHECK_INTERVAL_S, le=MAX_CHECK_INTERVAL_S)
    alpha: float = Field(
        default=0.05,
        gt=0,
        le=0.2,
        description="False-rollback rate over the whole rollout, split evenly across the "
        "guardrails and signals.",
    )
    planned_units: int = Field(
        default=10_000,
        gt=0,
        le=MAX_ROLLOUT_PLANNED_UNITS,
        description="Units (both arms) at which the always-valid tests are tightest.",
    )
    webhooks: list[Webhook] = Field(default_factory=list, max_length=MAX_WEBHOOKS)
    entry_gate: ShadowEntryGate | None = Field(
        default=None,
        description="A shadow test the candidate must pass before the first step starts; "
        "until then nobody is served the candidate.",
    )

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_gate(handler(self))

    @model_validator(mode="after")
    def _check(self) -> RolloutPlan:
        for index in range(1, len(self.steps)):
            if self.steps[index].percent <= self.steps[index - 1].percent:
                raise ValueError(
                    f"steps.{index}.percent: {self.steps[index].percent:g} must be above the "
                    f"previous step's {self.steps[index - 1].percent:g}"
                )
        if self.target.is_flag:
            for index, step in enumerate(self.steps):
                if step.percent > MAX_HOLDBACK:
                    raise ValueError(
                        f"steps.{index}.percent: {step.percent:g} is above {MAX_HOLDBACK:g}: a "
                        "flag's step serves on to that share of the segment and holds as many "
                        "units back on off as its control (completing the rollout serves on "
                        "to 100%)"
                    )
        names = [guardrail.metric for guardrail in self.guardrails]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"guardrails.{index}.metric: '{name}' is guarded twice")
        return self

    @property
    def control_variant(self) -> str | None:
        """The control arm's variant key when the plan alone says it (``off`` for a flag;
        an experiment's control is in its definition)."""
        return OFF_VARIANT if self.target.is_flag else None

    @property
    def alpha_per_test(self) -> float:
        """alpha split evenly (Bonferroni) over the plan's guardrails and signals."""
        return self.alpha / max(1, len(self.guardrails))


# What a check saw and concluded: kept in the decision event, so that the decision can be
# recomputed from the control log alone.

Number = Annotated[float, Field(allow_inf_nan=False)]


class MetricInput(BaseModel):
    """One arm's sufficient statistics of one metric (``sum_y``...: ratio metrics)."""

    model_config = _PLAN

    n: int = Field(ge=0)
    sum_x: Number = 0.0
    sum_xx: Number = Field(default=0.0, ge=0)
    sum_y: Number = 0.0
    sum_yy: Number = Field(default=0.0, ge=0)
    sum_xy: Number = 0.0


class ArmInput(BaseModel):
    model_config = _PLAN

    units: int = Field(default=0, ge=0)
    excluded_units: int = Field(default=0, ge=0, description="Seen in more than one variant.")
    metrics: dict[Key, MetricInput] = Field(default_factory=dict, max_length=MAX_GUARDRAILS)


class ShadowGateInput(BaseModel):
    """What the results service said of a plan's entry gate at a check (or why it could not
    be asked: ``available`` false)."""

    model_config = _PLAN

    shadow: Key
    available: bool = Field(description="False: the results service could not be asked.")
    allowed: bool = False
    max_mismatch_beyond_noise: Number = Field(ge=0, le=1)
    confidence: Number = Field(gt=0.5, lt=1)
    estimate: Number | None = None
    low: Number | None = None
    upper: Number | None = Field(default=None, description="The one-sided upper bound.")
    candidate_runs: int = Field(default=0, ge=0)
    candidate_mismatches: int = Field(default=0, ge=0)
    secondary_runs: int = Field(default=0, ge=0)
    secondary_mismatches: int = Field(default=0, ge=0)
    detail: Text = Field(default="", description="The results service's reason, or the error.")


class CheckInputs(BaseModel):
    """Everything one check reads besides the plan and the rollout's state."""

    model_config = _PLAN

    as_of: AwareDatetime
    control: ArmInput = Field(default_factory=ArmInput)
    treatment: ArmInput = Field(default_factory=ArmInput)
    ratio_metrics: list[Key] = Field(
        default_factory=list,
        max_length=MAX_GUARDRAILS,
        description="Metrics analysed as Σx/Σy (mean, ratio) rather than per unit.",
    )
    dead_letters: int = Field(default=0, ge=0, description="The tenant's, since the start.")
    control_weight: float = Field(default=50.0, gt=0, le=100)
    treatment_weight: float = Field(default=50.0, gt=0, le=100)
    entry_gate: ShadowGateInput | None = Field(
        default=None, description="The entry gate's result, read before the first step."
    )

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_gate(handler(self))


class GuardrailResult(BaseModel):
    model_config = _PLAN

    metric: Key
    role: Literal["guardrail", "signal"]
    dry_run: bool
    direction: Literal["increase", "decrease"]
    scale: Literal["relative", "absolute"]
    n_control: int
    n_treatment: int
    control_mean: Number | None
    treatment_mean: Number | None
    effect: Number | None = Field(description="Treatment vs control on ``scale``.")
    interval: tuple[Number, Number] | None = Field(
        description="Always-valid confidence sequence of the effect at the test's alpha."
    )
    p_value: Number | None = Field(
        description="Always-valid p-value of 'no worse than the threshold' (1 when the "
        "estimate is on the better side of it)."
    )
    alpha: Number
    threshold: Number = Field(description="The regression tolerated, signed the worse way.")
    verdict: Literal["pass", "fail", "no_data"]
    reason: Text


class HealthResult(BaseModel):
    model_config = _PLAN

    gate: Literal["srm", "multiple_exposure", "no_data", "dead_letters"]
    ok: bool
    value: Number | None
    limit: Number
    detail: Text


class DecisionEvidence(BaseModel):
    model_config = _PLAN

    step_index: int = Field(ge=0, description="The step the check was made on.")
    percent: Number
    step_started_at: AwareDatetime
    seconds_on_step: Number
    units_control: int
    units_treatment: int
    guardrails: list[GuardrailResult] = Field(max_length=MAX_GUARDRAILS)
    health: list[HealthResult] = Field(max_length=4)
    reasons: list[Text] = Field(max_length=64)
    entry_gate: ShadowGateInput | None = Field(
        default=None, description="The shadow entry gate, on checks before the first step."
    )
    inputs: CheckInputs

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_gate(handler(self))
