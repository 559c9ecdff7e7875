"""Feature flags: an experiment with one treatment (the ``on`` value) served to a ramp.

Units inside the ramp (and passing the targeting rule) get ``on_value``; everyone else,
and everyone while the flag's kill switch is set, gets ``off_value``. The ramp uses the
assignment hash's traffic bucket (``liftstream.assignment``), so it is monotonic: a unit
on at 5% stays on at 25%.

A flag's exposures are variants ``on`` and ``off`` of its key. A ``holdback`` (set by a
rollout plan whose target is the flag, ``schemas.rollout``) is the top of the same
bucket, ``[1 - holdback, 1)``: those units get ``off_value`` and are logged as ``off``,
the concurrent control; units neither in the ramp nor in the holdback are not logged.
With ``ramp + holdback <= 100`` the two never meet, so growing either keeps every unit
on its arm.

While a rollout drives the flag, its exposures are logged under that rollout's own key,
``rollout_exposure_key`` (served in the config snapshot beside the flag), so each rollout
(each plan version) compares only its own units: a second rollout of the same flag, after
a rollback and a fix, starts with empty arms. Outside a rollout they use the flag's key.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from schemas.identifiers import Key, UnitId
from schemas.limits import MAX_OVERRIDES, MAX_VERSION, BoundedJson, Name, Text
from schemas.targeting import TargetingRule

FlagValueType = Literal["boolean", "string", "number", "json"]
#: The variants a flag's exposures are logged as (``experiment_key`` is the flag's key).
ON_VARIANT = "on"
OFF_VARIANT = "off"
#: The largest holdback: a rollout holds back as many units as it serves on.
MAX_HOLDBACK = 50.0
#: Separates a flag's key from its rollout's in an exposure key (see ``rollout_exposure_key``).
EXPOSURE_KEY_SEPARATOR = ".."
_MAX_KEY_CHARS = 100  # schemas.identifiers.Key


def rollout_exposure_key(flag_key: str, rollout_key: str, plan_version: int) -> str:
    """The experiment key a rollout's exposures of the flag are logged under:
    ``<flag>..<rollout>.v<version>``, or, when that would exceed a key's 100 characters,
    the flag key's first 80 characters, the separator and a 16-hex digest of the three.
    Always a valid ``Key``, and different for each rollout and plan version."""
    readable = f"{flag_key}{EXPOSURE_KEY_SEPARATOR}{rollout_key}.v{plan_version}"
    if len(readable) <= _MAX_KEY_CHARS:
        return readable
    digest = hashlib.sha256(f"{flag_key}|{rollout_key}|{plan_version}".encode()).hexdigest()
    return f"{flag_key[:80]}{EXPOSURE_KEY_SEPARATOR}{digest[:16]}"


def _fits(value: Any, value_type: FlagValueType) -> bool:
    if value_type == "boolean":
        return isinstance(value, bool)
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


class Flag(BaseModel):
    """What a team defines to roll a feature out."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    key: Key
    description: Text = ""
    owner: Name = ""
    version: int = Field(default=1, ge=1, le=MAX_VERSION)
    seed: Name = Field(default="", description="Hash seed; defaults to the key.")
    value_type: FlagValueType = "boolean"
    on_value: BoundedJson = Field(
        default=True, description="Served to units in the ramp (JSON, bounded in depth and size)."
    )
    off_value: BoundedJson = Field(
        default=False, description="Served to everyone else (JSON, bounded in depth and size)."
    )
    ramp: float = Field(default=0.0, ge=0, le=100, description="Percent of eligible units on.")
    holdback: float = Field(
        default=0.0,
        ge=0,
        le=MAX_HOLDBACK,
        description="Percent of eligible units kept on the off value and logged as exposures "
        "'off' (a rollout's concurrent control; set by the rollout plan). While it is above "
        "0, only the ramp's and the holdback's units are logged.",
    )
    targeting: TargetingRule | None = None
    overrides: dict[UnitId, Literal["on", "off"]] = Field(
        default_factory=dict,
        max_length=MAX_OVERRIDES,
        description="Forced state by unit id; wins over every rule.",
    )

    @model_validator(mode="after")
    def _check_values(self) -> Flag:
        if self.ramp + self.holdback > 100:
            raise ValueError(
                f"holdback: {self.holdback:g}% and the ramp's {self.ramp:g}% add up to more "
                "than 100%"
            )
        for name in ("on_value", "off_value"):
            if not _fits(getattr(self, name), self.value_type):
                raise ValueError(
                    f"{name}: {getattr(self, name)!r} is not a {self.value_type} value"
                )
        return self

    @model_serializer(mode="wrap")
    def _without_unset_holdback(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A flag without a holdback is written as before it existed, so SDKs and services
        # from before read its snapshots and events (their Flag forbids unknown fields).
        data: dict[str, Any] = handler(self)
        if self.holdback == 0:
            data.pop("holdback", None)
        return data

    @property
    def hash_seed(self) -> str:
        return self.seed or self.key
