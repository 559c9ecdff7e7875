"""Experiment definitions: variants with weights, traffic share, and the metrics judged.

An experiment is written as YAML by a product team (``liftstream apply -f``) and lives
on the control topic as an ``ExperimentDefined`` event. Validation errors name the
field (``variants.1.key``) and the reason, so ``apply`` can refuse bad files clearly.
"""

from __future__ import annotations

import hashlib
import math
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.identifiers import EventName, Key, UnitId
from schemas.limits import (
    MAX_LOOKBACK_DAYS,
    MAX_METRICS,
    MAX_OVERRIDES,
    MAX_VARIANTS,
    MAX_VERSION,
    MAX_WINDOW_HOURS,
    Name,
    Text,
)
from schemas.targeting import LayerRange, TargetingRule

WEIGHT_TOTAL = 100.0


class Aggregation(StrEnum):
    """How a unit's outcome events become its metric value."""

    CONVERSION = "conversion"  # 1 if the unit did the event at least once, else 0
    COUNT = "count"  # how many times the unit did the event
    SUM = "sum"  # the sum of the event's values for the unit
    MEAN = "mean"  # the mean value per event: Σ values / Σ events (analysed as a ratio)
    RATIO = "ratio"  # Σ numerator / Σ denominator over units, e.g. revenue per session

    # Hash as the str it equals (Enum's own hash is its name's, in Python): keys such as
    # (variant, event, aggregation) are looked up in every scorecard, cell by cell.
    __hash__ = str.__hash__


#: Metric types analysed as a ratio of two unit-level sums (delta method).
RATIO_TYPES = frozenset({Aggregation.MEAN, Aggregation.RATIO})


#: Every definition refuses NaN and infinities: no reader could compare or sum them.
_DEFINITION = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Variant(BaseModel):
    model_config = _DEFINITION

    key: Key
    weight: float = Field(gt=0, le=100, description="Share of included traffic, in percent.")
    description: Text = ""


class MetricPart(BaseModel):
    """One side of a ratio metric: the count or the sum of values of one event per unit."""

    model_config = _DEFINITION

    event: EventName
    type: Literal["count", "sum"]


class MetricCap(BaseModel):
    """Winsorisation of the unit-level value: at a fixed ``value``, or at the ``percentile``
    of the experiment's units (computed when the metric is analysed)."""

    model_config = _DEFINITION

    value: float | None = Field(default=None, description="Cap each unit's value at this.")
    percentile: float | None = Field(
        default=None, description="Cap at this percentile (0-100, exclusive) of the units."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> MetricCap:
        if (self.value is None) == (self.percentile is None):
            raise ValueError("cap: give exactly one of 'value' or 'percentile'")
        if self.value is not None and not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"cap.value: must be a finite number > 0, got {self.value!r}")
        if self.percentile is not None and not 0 < self.percentile < 100:
            raise ValueError(
                f"cap.percentile: must be between 0 and 100 (exclusive), got {self.percentile!r}"
            )
        return self


class MetricDefinition(BaseModel):
    """A unit-level metric: ``type`` applied to the unit's ``event`` outcomes.

    ``mean`` is the mean value per ``event`` (Σ values / Σ events over units); ``ratio``
    divides ``numerator`` by ``denominator`` summed over units (``event`` defaults to the
    numerator's). Both are analysed with the delta method. Outcomes count from the unit's
    first exposure, for ``window_hours`` if set; ``cap`` winsorises each unit's value (a
    ratio's numerator); ``cuped_lookback_days`` adds the same metric over that many days
    before the first exposure as the CUPED covariate.
    """

    model_config = _DEFINITION

    name: Key
    event: EventName
    type: Aggregation
    role: Literal["primary", "secondary", "guardrail"] = "primary"
    direction: Literal["increase", "decrease"] = Field(
        default="increase", description="Which way is better."
    )
    numerator: MetricPart | None = Field(default=None, description="Ratio metrics only.")
    denominator: MetricPart | None = Field(default=None, description="Ratio metrics only.")
    cap: MetricCap | None = None
    window_hours: float | None = Field(
        default=None,
        gt=0,
        le=MAX_WINDOW_HOURS,
        description="Count outcomes within this many hours of first exposure (at most a year).",
    )
    cuped_lookback_days: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LOOKBACK_DAYS,
        description="CUPED covariate: the metric over this many days before (at most a year).",
    )

    @model_validator(mode="before")
    @classmethod
    def _ratio_event(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and data.get("type") == Aggregation.RATIO
            and "event" not in data
            and isinstance(data.get("numerator"), dict | MetricPart)
        ):
            numerator = data["numerator"]
            event = numerator.get("event") if isinstance(numerator, dict) else numerator.event
            if event is not None:
                return {**data, "event": event}
        return data

    @model_validator(mode="after")
    def _check_parts(self) -> MetricDefinition:
        has_parts = self.numerator is not None, self.denominator is not None
        if self.type is Aggregation.RATIO:
            for name, present in zip(("numerator", "denominator"), has_parts, strict=True):
                if not present:
                    raise ValueError(f"{name}: a ratio metric needs a numerator and a denominator")
        elif any(has_parts):
            field = "numerator" if has_parts[0] else "denominator"
            raise ValueError(
                f"{field}: only ratio metrics have a numerator and denominator "
                f"(a {self.type.value} metric uses 'event')"
            )
        if self.cap is not None and self.type is Aggregation.CONVERSION:
            raise ValueError("cap: a conversion is 0 or 1 per unit; a cap does not apply")
        if self.cuped_lookback_days is not None and self.is_ratio:
            raise ValueError(
                "cuped_lookback_days: CUPED applies to conversion, count and sum metrics, "
                f"not to {self.type.value} metrics"
            )
        return self

    @property
    def is_ratio(self) -> bool:
        """Analysed as Σx / Σy with the delta method (mean and ratio metrics)."""
        return self.type in RATIO_TYPES

    @property
    def needs_replay(self) -> bool:
        """True when the stream's per-event conversion/count/sum cannot give this metric."""
        return (
            self.is_ratio
            or self.cap is not None
            or self.window_hours is not None
            or self.cuped_lookback_days is not None
        )

    @property
    def kept_live(self) -> bool:
        """The stream keeps this metric's sums live (a percentile cap needs every unit)."""
        return self.needs_replay and not (self.cap is not None and self.cap.percentile is not None)

    @property
    def definition_hash(self) -> str:
        """Identifies what is computed (event, type, parts, cap, window, CUPED), so sums
        of an older definition of the same name are recognised and ignored."""
        computed = self.model_dump(
            mode="json",
            include={
                "event",
                "type",
                "numerator",
                "denominator",
                "cap",
                "window_hours",
                "cuped_lookback_days",
            },
        )
        return hashlib.sha256(orjson.dumps(computed, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


#: At most this many planned units (a trillion: more than any experiment's audience).
MAX_PLANNED_UNITS = 10**12
#: The relative effect an experiment is planned for when it does not say.
DEFAULT_RELATIVE_MDE = 0.05


class Experiment(BaseModel):
    """What a product team defines; assignment and analysis both read it."""

    model_config = _DEFINITION

    key: Key
    name: Name = ""
    hypothesis: Text = ""
    owner: Name = ""
    unit_type: Key = "user"
    version: int = Field(default=1, ge=1, le=MAX_VERSION)
    seed: Name = Field(default="", description="Hash seed; defaults to the key.")
    traffic: float = Field(
        default=100.0, gt=0, le=100, description="Percent of eligible units included."
    )
    variants: list[Variant] = Field(min_length=2, max_length=MAX_VARIANTS)
    control: Key | None = Field(default=None, description="Control variant; the first if unset.")
    metrics: list[MetricDefinition] = Field(min_length=1, max_length=MAX_METRICS)
    status: Literal["draft", "running", "paused", "concluded"] = "running"
    correction: Literal["holm", "bonferroni", "benjamini_hochberg", "none"] = Field(
        default="holm",
        description="Multiple-comparison correction over the experiment's metric x treatment "
        "comparisons, each metric role (primary, secondary, guardrail) a family of its own: "
        "holm or bonferroni (family-wise error), benjamini_hochberg (false discovery rate) "
        "or none.",
    )
    planned_units: int | None = Field(
        default=None,
        gt=0,
        le=MAX_PLANNED_UNITS,
        description="Units (all variants) the experiment plans to reach, e.g. from `liftstream "
        "plan`; the sequential tests are tuned to it. Unset: liftstream plan's sample size "
        "for the primary metric at minimum_detectable_effect.",
    )
    minimum_detectable_effect: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Relative effect on the primary metric the experiment is planned to "
        "detect (0.05 = 5%; 5% when unset), at 80% power; used when planned_units is unset.",
    )
    targeting: TargetingRule | None = Field(
        default=None, description="Who is eligible (see schemas.targeting); everyone if unset."
    )
    overrides: dict[UnitId, Key] = Field(
        default_factory=dict,
        max_length=MAX_OVERRIDES,
        description="Forced variants by unit id (a QA allowlist); they win over every rule.",
    )
    layer: LayerRange | None = Field(
        default=None, description="Slice of a layer, for mutually exclusive experiments."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Experiment:
        keys = [variant.key for variant in self.variants]
        for index, key in enumerate(keys):
            if key in keys[:index]:
                raise ValueError(f"variants.{index}.key: duplicate variant '{key}'")
        total = math.fsum(variant.weight for variant in self.variants)
        if abs(total - WEIGHT_TOTAL) > 1e-9:
            raise ValueError(f"variants: weights sum to {total:g}, they must sum to 100")
        if self.control is not None and self.control not in keys:
            raise ValueError(f"control: '{self.control}' is not one of the variants {keys}")
        for unit_id, variant_key in self.overrides.items():
            if variant_key not in keys:
                raise ValueError(
                    f"overrides.{unit_id}: '{variant_key}' is not one of the variants {keys}"
                )
        names = [metric.name for metric in self.metrics]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"metrics.{index}.name: duplicate metric '{name}'")
        return self

    @property
    def hash_seed(self) -> str:
        return self.seed or self.key

    @property
    def control_key(self) -> str:
        return self.control or self.variants[0].key

    @property
    def treatment_keys(self) -> list[str]:
        return [v.key for v in self.variants if v.key != self.control_key]

    def variant_weights(self) -> dict[str, float]:
        return {variant.key: variant.weight for variant in self.variants}
