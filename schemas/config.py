"""The configuration snapshot the control service serves to SDKs (``GET /v1/config``).

Everything a service needs to assign units locally: the tenant's experiments and flags
(with their kill switches) and the tenant-wide holdout. ``revision`` is the control-topic
offset of the last change applied; the HTTP ETag is derived from the content.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from schemas.experiment import Experiment
from schemas.flags import Flag
from schemas.identifiers import Key, TenantId


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: Experiment
    killed: bool = False


class FlagConfig(BaseModel):
    # Unknown fields are ignored: an SDK reads snapshots from newer servers (this model is
    # only ever built by the control service, never from a request).
    model_config = ConfigDict(extra="ignore", frozen=True)

    flag: Flag
    killed: bool = False
    exposure_key: Key | None = Field(
        default=None,
        description="While a rollout drives the flag: the experiment key its exposures are "
        "logged under (schemas.flags.rollout_exposure_key), so each rollout's arms hold "
        "only its own units. Absent otherwise: the flag's key.",
    )

    @model_serializer(mode="wrap")
    def _without_unset_exposure_key(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Written as before it existed when no rollout is active.
        data: dict[str, Any] = handler(self)
        if self.exposure_key is None:
            data.pop("exposure_key", None)
        return data

    @property
    def logged_key(self) -> str:
        """The experiment key this flag's exposures are logged under now."""
        return self.exposure_key or self.flag.key


class ConfigSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId
    revision: int = Field(ge=-1, description="Offset of the last control event applied.")
    holdout_percent: float = Field(default=0.0, ge=0, le=100)
    experiments: list[ExperimentConfig] = Field(default_factory=list)
    flags: list[FlagConfig] = Field(default_factory=list)
