"""The configuration snapshot the control service serves to SDKs (``GET /v1/config``).

Everything a service needs to assign units locally: the tenant's experiments and flags
(with their kill switches) and the tenant-wide holdout. ``revision`` is the control-topic
offset of the last change applied; the HTTP ETag is derived from the content.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.experiment import Experiment
from schemas.flags import Flag
from schemas.identifiers import TenantId


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: Experiment
    killed: bool = False


class FlagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flag: Flag
    killed: bool = False


class ConfigSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId
    revision: int = Field(ge=-1, description="Offset of the last control event applied.")
    holdout_percent: float = Field(default=0.0, ge=0, le=100)
    experiments: list[ExperimentConfig] = Field(default_factory=list)
    flags: list[FlagConfig] = Field(default_factory=list)
