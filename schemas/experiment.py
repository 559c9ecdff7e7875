"""Experiment definitions: variants with weights, traffic share, and the metrics judged.

An experiment is written as YAML by a product team (``liftstream apply -f``) and lives
on the control topic as an ``ExperimentDefined`` event. Validation errors name the
field (``variants.1.key``) and the reason, so ``apply`` can refuse bad files clearly.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.identifiers import EventName, Key, UnitId
from schemas.targeting import LayerRange, Rule

WEIGHT_TOTAL = 100.0


class Aggregation(StrEnum):
    """How a unit's outcome events become its metric value."""

    CONVERSION = "conversion"  # 1 if the unit did the event at least once, else 0
    COUNT = "count"  # how many times the unit did the event
    SUM = "sum"  # the sum of the event's values for the unit


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    weight: float = Field(gt=0, le=100, description="Share of included traffic, in percent.")
    description: str = ""


class MetricDefinition(BaseModel):
    """A unit-level metric: ``type`` applied to the unit's ``event`` outcomes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Key
    event: EventName
    type: Aggregation
    role: Literal["primary", "secondary", "guardrail"] = "primary"
    direction: Literal["increase", "decrease"] = Field(
        default="increase", description="Which way is better."
    )


class Experiment(BaseModel):
    """What a product team defines; assignment and analysis both read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: str = ""
    hypothesis: str = ""
    owner: str = ""
    unit_type: Key = "user"
    version: int = Field(default=1, ge=1)
    seed: str = Field(default="", description="Hash seed; defaults to the key.")
    traffic: float = Field(
        default=100.0, gt=0, le=100, description="Percent of eligible units included."
    )
    variants: list[Variant] = Field(min_length=2)
    control: Key | None = Field(default=None, description="Control variant; the first if unset.")
    metrics: list[MetricDefinition] = Field(min_length=1)
    status: Literal["draft", "running", "paused", "concluded"] = "running"
    correction: Literal["holm", "benjamini_hochberg", "none"] = Field(
        default="holm",
        description="Multiple-comparison correction over all of the experiment's metric x "
        "treatment comparisons: holm (family-wise error), benjamini_hochberg (false "
        "discovery rate) or none.",
    )
    targeting: Rule | None = Field(
        default=None, description="Who is eligible (see schemas.targeting); everyone if unset."
    )
    overrides: dict[UnitId, Key] = Field(
        default_factory=dict,
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
