"""Shadow tests: the observation a shadow run logs, and the results computed from them.

A shadow test runs a candidate beside the code it may replace (``LiftstreamClient.shadow``):
the caller always gets the primary's result; on a sample of calls the candidate runs off
the caller's path and the two are compared; on another small sample the primary runs a
second time ("secondary"), which measures how often the primary disagrees with itself:
the noise floor a candidate's mismatch rate is judged against.

Each comparison is an ordinary outcome event (so the raw log holds it, with its id,
tenant and time, and every figure can be recomputed from it): event ``SHADOW_EVENT``,
value 1 for a mismatch and 0 otherwise, and ``ShadowObservation`` as its properties.
Anyone with an ingest key can send such an event, so the results treat properties that do
not fit ``ShadowObservation`` as malformed: counted, never used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.identifiers import Key, TenantId

#: The outcome event name of a shadow observation.
SHADOW_EVENT: Final = "liftstream.shadow"
#: The longest time a run can be recorded with (one hour, in ms): a longer run is cut here.
MAX_SHADOW_MS: Final = 3_600_000.0
#: The longest exception class name recorded (the name only: messages may hold user data).
MAX_ERROR_NAME_CHARS: Final = 128
#: Observations a results request reads at most (the newest); latency intervals resample
#: at most ``MAX_LATENCY_PAIRS`` of them.
MAX_SHADOW_OBSERVATIONS: Final = 200_000
MAX_LATENCY_PAIRS: Final = 5_000

ErrorName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ERROR_NAME_CHARS)]
Milliseconds = Annotated[float, Field(ge=0, le=MAX_SHADOW_MS)]
#: ``candidate``: the candidate against the primary; ``secondary``: the primary against a
#: second run of itself (the noise floor).
ShadowRun = Literal["candidate", "secondary"]


class ShadowObservation(BaseModel):
    """One comparison: the properties of a ``SHADOW_EVENT`` outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    shadow: Key = Field(description="The shadow test's name.")
    run: ShadowRun
    match: bool | None = Field(
        description="Whether the two runs agreed (values by `compare`, exceptions by class "
        "and arguments); null when no comparison was made (timeout, `compare` raised)."
    )
    primary_ms: Milliseconds
    other_ms: Milliseconds | None = Field(
        default=None, description="The candidate's (or secondary's) time; null on timeout."
    )
    primary_error: ErrorName | None = None
    other_error: ErrorName | None = None
    timed_out: bool = False
    compare_error: ErrorName | None = None


class ShadowRate(BaseModel):
    """``count`` of ``n`` with its Wilson score interval; null figures say why in
    ``reason``."""

    count: int = Field(ge=0)
    n: int = Field(ge=0)
    rate: float | None
    low: float | None
    high: float | None
    reason: str | None = None


class ShadowDifference(BaseModel):
    """The candidate's mismatch rate less the noise floor, with Newcombe's hybrid score
    interval for a difference of two independent proportions."""

    estimate: float | None
    low: float | None
    high: float | None
    confidence: float
    reason: str | None = None


class ShadowLatency(BaseModel):
    """A quantile of the two runs' times and their ratio (other / primary), with a seeded
    paired-bootstrap percentile interval."""

    quantile: float = Field(gt=0, lt=1)
    pairs: int = Field(
        ge=0, description="Pairs with both times (a seeded sample of 5000 is resampled)."
    )
    primary_ms: float | None
    other_ms: float | None
    ratio: float | None
    low: float | None
    high: float | None
    reason: str | None = None


class ShadowResults(BaseModel):
    """What ``GET /v1/shadows/{name}`` answers (``liftstream shadow results NAME``)."""

    tenant_id: TenantId
    shadow: Key
    since: datetime | None
    observations: int = Field(ge=0, description="Valid observations read.")
    malformed: int = Field(ge=0, description="Shadow events whose properties did not fit.")
    confidence: float
    mismatch: ShadowRate = Field(description="Candidate vs primary, among compared runs.")
    noise: ShadowRate = Field(description="Secondary vs primary: the noise floor.")
    beyond_noise: ShadowDifference
    primary_errors: ShadowRate
    candidate_errors: ShadowRate
    candidate_timeouts: ShadowRate
    latency: list[ShadowLatency] = Field(description="Candidate / primary: median and p99.")
    noise_latency: list[ShadowLatency] = Field(
        description="Secondary / primary: what the measurement itself adds (same quantiles)."
    )


class ShadowGate(BaseModel):
    """Whether a candidate may be promoted: the one-sided upper bound of the mismatch
    beyond the noise floor, at ``confidence``, is below ``max_beyond_noise``."""

    shadow: Key
    allowed: bool
    max_beyond_noise: float
    confidence: float
    upper: float | None = Field(description="The one-sided upper confidence bound.")
    estimate: float | None = Field(
        default=None, description="Candidate mismatch rate less the noise floor."
    )
    low: float | None = Field(
        default=None,
        description="The one-sided lower confidence bound: [low, upper] is the two-sided "
        "interval at level 2 * confidence - 1.",
    )
    candidate_runs: int
    candidate_mismatches: int = 0
    secondary_runs: int
    secondary_mismatches: int = 0
    reason: str
