"""Shadow-test results from the raw log, and the promotion gate a rollout can use.

``read_observations`` reads a shadow test's observations (``schemas.shadow``: outcomes
named ``liftstream.shadow``) of one tenant from the store, newest first and at most
``MAX_SHADOW_OBSERVATIONS``; properties that do not fit ``ShadowObservation`` are counted
as malformed and left out. ``shadow_results`` turns them into:

- the candidate's mismatch rate among compared runs, and the noise floor (the primary
  against a second run of itself), each with Wilson's score interval;
- the mismatch beyond the noise floor, candidate rate - noise rate, with Newcombe's hybrid
  score interval (``analytics.stats.newcombe_interval``; statsmodels'
  ``confint_proportions_2indep(method="newcomb")``);
- error rates (the primary's over every run, the candidate's over its finished runs) and
  the candidate's timeout rate, with Wilson intervals;
- latency: median and p99 of both runs and their ratio (other / primary) over pairs where
  both finished without error, with a paired bootstrap percentile interval (scipy, seeded,
  so the same observations give the same interval); the same for secondary / primary,
  which is what running off the caller's thread adds by itself.

``promotion_gate`` is the entry gate of a rollout: promotion is allowed when the one-sided
upper confidence bound of the mismatch beyond noise is below a threshold.
``shadow_gate(cursor, tenant, name, max_beyond_noise)`` reads and decides in one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import duckdb
import numpy as np
from pydantic import ValidationError
from scipy import stats as scipy_stats

from analytics.stats import newcombe_interval, wilson_interval
from schemas.shadow import (
    MAX_LATENCY_PAIRS,
    MAX_SHADOW_OBSERVATIONS,
    SHADOW_EVENT,
    ShadowDifference,
    ShadowGate,
    ShadowLatency,
    ShadowObservation,
    ShadowRate,
    ShadowResults,
)

QUANTILES: Final = (0.5, 0.99)
#: A quantile's interval needs this many pairs beyond it: p99 needs 1000 pairs.
MIN_TAIL_PAIRS: Final = 10
BOOTSTRAP_RESAMPLES: Final = 999
BOOTSTRAP_SEED: Final = 20_140_214

_READ: Final = """
    SELECT CAST(properties AS VARCHAR)
    FROM outcomes
    WHERE tenant_id = ? AND event = ? AND properties->>'shadow' = ?
      AND (CAST(? AS TIMESTAMPTZ) IS NULL OR timestamp >= CAST(? AS TIMESTAMPTZ))
    ORDER BY timestamp DESC
    LIMIT ?
"""


def read_observations(
    cursor: duckdb.DuckDBPyConnection,
    tenant_id: str,
    name: str,
    since: datetime | None = None,
    limit: int = MAX_SHADOW_OBSERVATIONS,
) -> tuple[list[ShadowObservation], int]:
    """The shadow's valid observations (newest first) and how many were malformed."""
    rows = cursor.execute(_READ, [tenant_id, SHADOW_EVENT, name, since, since, limit]).fetchall()
    observations: list[ShadowObservation] = []
    malformed = 0
    for (text,) in rows:
        try:
            observations.append(ShadowObservation.model_validate_json(text))
        except ValidationError:
            malformed += 1
    return observations, malformed


def _value(value: Any) -> float | None:
    if value is None or np.ma.is_masked(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _rate(count: int, n: int, alpha: float) -> ShadowRate:
    interval = wilson_interval(n, count, alpha=alpha)
    return ShadowRate(
        count=count,
        n=n,
        rate=_value(interval.estimate[()]),
        low=_value(interval.low[()]),
        high=_value(interval.high[()]),
        reason=None if n else "no runs yet",
    )


def _difference(candidate: ShadowRate, noise: ShadowRate, alpha: float) -> ShadowDifference:
    interval = newcombe_interval(noise.n, noise.count, candidate.n, candidate.count, alpha=alpha)
    reason = None
    if not candidate.n:
        reason = "no compared candidate runs yet"
    elif not noise.n:
        reason = "no secondary runs yet: the noise floor is unknown (noise share 0?)"
    return ShadowDifference(
        estimate=_value(interval.estimate[()]),
        low=_value(interval.low[()]),
        high=_value(interval.high[()]),
        confidence=1 - alpha,
        reason=reason,
    )


def _ratio_of_quantiles(quantiles: list[float]) -> Any:
    def statistic(primary: np.ndarray, other: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.quantile(other, quantiles, axis=axis) / np.quantile(
                primary, quantiles, axis=axis
            )

    return statistic


def latency_ratios(
    primary_ms: np.ndarray, other_ms: np.ndarray, alpha: float, seed: int = BOOTSTRAP_SEED
) -> list[ShadowLatency]:
    """Per quantile of ``QUANTILES``: both runs' quantile and other / primary with a paired
    bootstrap percentile interval (one resampling for every quantile; at most
    ``MAX_LATENCY_PAIRS`` pairs, a seeded sample of them beyond that)."""
    rng = np.random.default_rng(seed)
    pairs = len(primary_ms)
    if pairs > MAX_LATENCY_PAIRS:
        keep = rng.choice(pairs, MAX_LATENCY_PAIRS, replace=False)
        primary_ms, other_ms = primary_ms[keep], other_ms[keep]
    rows: dict[float, dict[str, Any]] = {}
    for q in QUANTILES:
        row: dict[str, Any] = {"quantile": q, "pairs": pairs, "primary_ms": None}
        row |= {"other_ms": None, "ratio": None, "low": None, "high": None}
        rows[q] = row
        needed = math.ceil(MIN_TAIL_PAIRS / (1 - q))
        if len(primary_ms) < needed:
            row["reason"] = (
                f"p{round(q * 100)} needs at least {needed} pairs where both runs finished "
                f"without error; there are {len(primary_ms)}"
            )
            continue
        row["primary_ms"] = float(np.quantile(primary_ms, q))
        row["other_ms"] = float(np.quantile(other_ms, q))
        if row["primary_ms"] <= 0:
            row["reason"] = "the primary's quantile is 0 ms: no ratio"
        else:
            row["ratio"] = row["other_ms"] / row["primary_ms"]
    estimable = [q for q, row in rows.items() if row["ratio"] is not None]
    if estimable:
        result = scipy_stats.bootstrap(
            (primary_ms, other_ms),
            _ratio_of_quantiles(estimable),
            paired=True,
            vectorized=True,
            n_resamples=BOOTSTRAP_RESAMPLES,
            batch=100,
            confidence_level=1 - alpha,
            method="percentile",
            random_state=rng,
        )
        lows = np.atleast_1d(result.confidence_interval.low)
        highs = np.atleast_1d(result.confidence_interval.high)
        for q, low, high in zip(estimable, lows, highs, strict=True):
            rows[q]["low"], rows[q]["high"] = _value(low), _value(high)
    return [ShadowLatency(**row) for row in rows.values()]


def _latency_pairs(runs: Sequence[ShadowObservation]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        (o.primary_ms, o.other_ms)
        for o in runs
        if o.other_ms is not None and o.primary_error is None and o.other_error is None
    ]
    array = np.array(pairs, dtype=float).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def shadow_results(
    tenant_id: str,
    name: str,
    observations: Sequence[ShadowObservation],
    *,
    malformed: int = 0,
    since: datetime | None = None,
    confidence: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> ShadowResults:
    """Every figure of one shadow test from its observations (see the module docstring)."""
    alpha = 1 - confidence
    candidates = [o for o in observations if o.run == "candidate"]
    secondaries = [o for o in observations if o.run == "secondary"]
    compared = [o for o in candidates if o.match is not None]
    noise_compared = [o for o in secondaries if o.match is not None]
    finished = [o for o in candidates if not o.timed_out]
    mismatch = _rate(sum(o.match is False for o in compared), len(compared), alpha)
    noise = _rate(sum(o.match is False for o in noise_compared), len(noise_compared), alpha)
    return ShadowResults(
        tenant_id=tenant_id,
        shadow=name,
        since=since,
        observations=len(observations),
        malformed=malformed,
        confidence=confidence,
        mismatch=mismatch,
        noise=noise,
        beyond_noise=_difference(mismatch, noise, alpha),
        primary_errors=_rate(
            sum(o.primary_error is not None for o in observations), len(observations), alpha
        ),
        candidate_errors=_rate(
            sum(o.other_error is not None for o in finished), len(finished), alpha
        ),
        candidate_timeouts=_rate(sum(o.timed_out for o in candidates), len(candidates), alpha),
        latency=latency_ratios(*_latency_pairs(candidates), alpha, seed),
        noise_latency=latency_ratios(*_latency_pairs(secondaries), alpha, seed),
    )


def promotion_gate(
    name: str,
    candidate_mismatches: int,
    candidate_runs: int,
    noise_mismatches: int,
    noise_runs: int,
    max_beyond_noise: float,
    confidence: float = 0.95,
) -> ShadowGate:
    """Allowed when the one-sided ``confidence`` upper bound of candidate mismatch rate -
    noise rate (Newcombe's interval at two-sided level ``2 * confidence - 1``) is below
    ``max_beyond_noise``. No compared runs of either kind: not allowed, saying so."""
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be between 0.5 and 1, got {confidence}")
    if not math.isfinite(max_beyond_noise):
        raise ValueError("max_beyond_noise must be a finite number")
    interval = newcombe_interval(
        noise_runs,
        noise_mismatches,
        candidate_runs,
        candidate_mismatches,
        alpha=2 * (1 - confidence),
    )
    upper = _value(interval.high[()])
    if not candidate_runs or not noise_runs:
        missing = "candidate" if not candidate_runs else "secondary (noise-floor)"
        allowed, reason = False, f"no compared {missing} runs yet"
    elif upper is not None and upper < max_beyond_noise:
        allowed = True
        reason = (
            f"mismatch beyond noise is below {max_beyond_noise:g} with {confidence:.0%} "
            f"confidence (upper bound {upper:.5f})"
        )
    else:
        allowed = False
        reason = (
            f"mismatch beyond noise may be {upper:.5f} or more ({confidence:.0%} upper "
            f"bound), not below {max_beyond_noise:g}: more runs, or a better candidate"
        )
    return ShadowGate(
        shadow=name,
        allowed=allowed,
        max_beyond_noise=max_beyond_noise,
        confidence=confidence,
        upper=upper,
        estimate=_value(interval.estimate[()]),
        low=_value(interval.low[()]),
        candidate_runs=candidate_runs,
        candidate_mismatches=candidate_mismatches,
        secondary_runs=noise_runs,
        secondary_mismatches=noise_mismatches,
        reason=reason,
    )


def gate_from_results(
    results: ShadowResults, max_beyond_noise: float, confidence: float = 0.95
) -> ShadowGate:
    return promotion_gate(
        results.shadow,
        results.mismatch.count,
        results.mismatch.n,
        results.noise.count,
        results.noise.n,
        max_beyond_noise,
        confidence,
    )


def gate_from_observations(
    name: str,
    observations: Sequence[ShadowObservation],
    max_beyond_noise: float,
    confidence: float = 0.95,
) -> ShadowGate:
    """``promotion_gate`` of the comparisons among ``observations``."""
    compared = [o for o in observations if o.match is not None]
    candidates = [o for o in compared if o.run == "candidate"]
    noise = [o for o in compared if o.run == "secondary"]
    return promotion_gate(
        name,
        sum(o.match is False for o in candidates),
        len(candidates),
        sum(o.match is False for o in noise),
        len(noise),
        max_beyond_noise,
        confidence,
    )


def shadow_gate(
    cursor: duckdb.DuckDBPyConnection,
    tenant_id: str,
    name: str,
    max_beyond_noise: float,
    confidence: float = 0.95,
    since: datetime | None = None,
) -> ShadowGate:
    """The rollout entry gate for shadow test ``name`` of ``tenant_id``, from the store:
    for the rollout controller (``allowed``, and ``reason`` to put in its evidence)."""
    observations, _ = read_observations(cursor, tenant_id, name, since)
    return gate_from_observations(name, observations, max_beyond_noise, confidence)
