"""Sequential testing: always-valid p-values and confidence sequences (normal mixture).

Peeking at a fixed-horizon p-value every day and stopping at the first p < 0.05 makes
false positives far more likely than 5%. The mixture sequential probability ratio test
(mSPRT, Johari, Pekelis and Walsh 2017, "Always valid inference") and the normal-mixture
confidence sequence of Howard, Ramdas, McAuliffe and Sekhon (2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), eq. (14)) are
valid at every look at once: P(some look has p <= alpha) <= alpha under the null.

For an estimate θ̂ of the difference with variance V (normal approximation, arms
independent) and a N(0, τ²) mixture over the true difference, the likelihood ratio of
"difference θ" against "difference 0" integrated over the mixture is

    Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))

The always-valid p-value is min(1, 1/Λ) (take the running minimum over looks); the
confidence sequence is every θ0 the test would not reject:

    θ̂ ± sqrt(V (V + τ²) / τ² · (log((V + τ²) / V) - 2 log alpha))

**Tuning parameter τ²** (the mixing variance). Any τ² > 0 gives valid inference; it only
decides *when* the test is most powerful. It is set from ``planned_units``, the number of
units in the comparison (both arms) at which the confidence sequence should be tightest,
exactly as GrowthBook's gbstats sets it from its ``sequential_tuning_parameter``
(``SequentialTwoSidedTTest``; Waudby-Smith et al. 2023, "Time-uniform central limit
theory and asymptotic confidence sequences", eq. 161): with σ² = V · units the variance
per unit, ρ² = (-2 log alpha + log(1 - 2 log alpha)) / planned_units and τ² = σ² ρ², so
τ² = V* · (-2 log alpha + log(1 - 2 log alpha)) with V* the variance the estimate will
have at ``planned_units`` (7.94 V* at alpha = 0.05). This is an approximation of Howard
et al.'s optimum (2021, Sec. 3.5: -W₋₁(-alpha²/e) - 1 = 8.21 at alpha = 0.05); the
half-width at ``planned_units`` is within 0.01% of the smallest possible. With these
definitions the p-value and the sequence equal gbstats' for the same tuning parameter.
A smaller ``planned_units`` favours stopping early on large effects; a larger one
detects smaller effects later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.cells import BoolArray, FloatArray, broadcast, masked

#: Default units (both arms) at which the confidence sequence is tightest.
DEFAULT_PLANNED_UNITS = 10_000


@dataclass(frozen=True)
class SequentialResult:
    """Per cell; masked where the estimate or its variance is not usable."""

    p_value: np.ma.MaskedArray
    ci_low: np.ma.MaskedArray
    ci_high: np.ma.MaskedArray
    mixing_variance: np.ma.MaskedArray
    alpha: float

    @property
    def may_stop(self) -> BoolArray:
        """True where the always-valid p-value is below alpha: stopping now is valid."""
        return np.asarray(np.ma.filled(self.p_value <= self.alpha, False), dtype=bool)


def mixing_factor(alpha: float) -> float:
    """τ² / V*, V* the estimate's variance at the planned units (gbstats' ρ² · n*)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha: must be between 0 and 1")
    log_alpha = float(np.log(alpha))
    return -2.0 * log_alpha + float(np.log(1.0 - 2.0 * log_alpha))


def mixing_variance_for(
    variance: npt.ArrayLike,
    units: npt.ArrayLike,
    planned_units: npt.ArrayLike = DEFAULT_PLANNED_UNITS,
    *,
    alpha: float = 0.05,
) -> FloatArray:
    """τ² tuned to ``planned_units``: the variance now, scaled to then, times the factor."""
    variance_, units_, planned_ = broadcast(variance, units, planned_units)
    if np.any(~(planned_ > 0)):
        raise ValueError("planned_units: must be a positive number of units")
    with np.errstate(all="ignore"):
        return variance_ * units_ / planned_ * mixing_factor(alpha)


def always_valid_test(
    estimate: npt.ArrayLike,
    variance: npt.ArrayLike,
    mixing_variance: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    null_value: npt.ArrayLike = 0.0,
) -> SequentialResult:
    """Always-valid p-value (against ``null_value``) and confidence sequence, per cell.

    Cells with a non-finite estimate, or a variance or mixing variance that is not
    positive, are masked; the caller explains them (usually: no test was possible).
    """
    theta, v, tau2, null = broadcast(estimate, variance, mixing_variance, null_value)
    invalid = ~np.isfinite(theta) | ~(v > 0) | ~(tau2 > 0) | ~np.isfinite(v + tau2)
    with np.errstate(all="ignore"):
        centred = theta - null
        log_ratio = 0.5 * np.log(v / (v + tau2)) + tau2 * centred**2 / (2.0 * v * (v + tau2))
        p_value = np.exp(-np.maximum(log_ratio, 0.0))
        half_width = np.sqrt(v * (v + tau2) / tau2 * (np.log((v + tau2) / v) - 2 * np.log(alpha)))
    return SequentialResult(
        p_value=masked(p_value, invalid),
        ci_low=masked(theta - half_width, invalid),
        ci_high=masked(theta + half_width, invalid),
        mixing_variance=masked(tau2, invalid),
        alpha=alpha,
    )


def running_minimum(p_values: npt.ArrayLike, axis: int = -1) -> FloatArray:
    """The always-valid p-value after each look: the smallest seen so far along ``axis``."""
    return np.minimum.accumulate(np.asarray(p_values, dtype=np.float64), axis=axis)
