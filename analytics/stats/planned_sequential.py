"""The scorecard's always-valid test: alpha split between the planned sample and after it.

A normal-mixture confidence sequence (``analytics.stats.sequential``) spends its alpha over
an infinite horizon. At its best tuning its boundary at the planned sample is 3.03
standard errors (alpha = 0.05) against 2.80 for a fixed-horizon test with 80% power, so an
effect the fixed-horizon test finds 80% of the time is found by the plan in about half
the runs, however the mixture is tuned (docs/benchmarks.md has the scan). This test
keeps validity at every look, forever, and is more powerful where experiments are
meant to stop, by splitting alpha (``plan_share`` s, default one half):

1. **Up to the planned units** (information fraction f = units / planned ≤ 1), with
   W(f) = Z · √f the score process (Brownian motion under the null, by the same normal
   approximation the mixture uses), reject when |W(f)| ≥ c with
   P(sup over 0 ≤ f ≤ 1 of |W(f)| ≥ c) = s·alpha: a constant boundary on W, so
   c / √f standard errors on the z scale (O'Brien and Fleming's shape, here for
   continuous monitoring: any number of looks at any times). The probability is the
   reflection-principle series 4 Σ (-1)^(k+1) Q((2k-1)c) (Q the normal upper tail),
   or for small c its eigenfunction form 1 - 4/π Σ (-1)^k/(2k+1) exp(-(2k+1)²π²/(8c²));
   six terms of either equal the full alternating sum to 1e-11 (tested). c = 2.50 at
   s·alpha = 0.025.
2. **At every look, forever**, the normal-mixture test at (1 - s)·alpha, tuned to the
   plan (mixing variance for (1 - s)·alpha).

Either crossing rejects. By the union bound the chance that a null experiment ever
crosses either boundary is at most s·alpha + (1 - s)·alpha = alpha. The always-valid p-value is
min(1, P_exit(|W|) / s, mixture p / (1 - s)) (part 1 only while f ≤ 1), so p ≤ alpha
exactly when some part rejects at its share; the confidence sequence is the
intersection of the two parts' intervals, i.e. the narrower half-width.

What this assumes: f must be fixed before the data are seen (the experiment's
``planned_units``). The fallback from ``liftstream plan`` at the current baseline moves
with the data, like the mixture's tuning does; set ``planned_units`` for the guarantee.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from analytics.stats.cells import FloatArray, broadcast, masked
from analytics.stats.sequential import SequentialResult, always_valid_test, mixing_variance_for

#: Share of alpha spent on looks up to the planned units; the rest guards looks after it.
PLAN_ALPHA_SHARE = 0.5

#: Below this level the eigenfunction series converges faster than the reflection one.
_SERIES_SWITCH = 1.2
_TERMS = np.arange(6.0)


def brownian_exit_probability(level: npt.ArrayLike) -> FloatArray:
    """P(sup over 0 ≤ f ≤ 1 of |W(f)| ≥ level), W standard Brownian motion; 1 at level ≤ 0."""
    (w,) = broadcast(level)
    probability = np.ones_like(w)
    large = w >= _SERIES_SWITCH
    with np.errstate(all="ignore"):
        odd = 2 * _TERMS + 1
        signs = (-1.0) ** _TERMS
        c = w[large][:, None]
        probability[large] = 4.0 * (signs * special.ndtr(-odd * c)).sum(axis=-1)
        small = (w > 0) & ~large
        c = np.maximum(w[small], 1e-3)[:, None]
        stay = 4.0 / np.pi * (signs / odd * np.exp(-(odd**2) * np.pi**2 / (8 * c**2))).sum(axis=-1)
        probability[small] = 1.0 - stay
    return np.clip(np.where(np.isnan(w), np.nan, probability), 0.0, 1.0)


@lru_cache(maxsize=64)
def exit_level(alpha: float) -> float:
    """The level c with P(sup over 0 ≤ f ≤ 1 of |W(f)| ≥ c) = alpha."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha: must be between 0 and 1")
    return float(
        optimize.brentq(
            lambda c: float(brownian_exit_probability(c)[0]) - alpha, 1e-3, 40.0, xtol=1e-14
        )
    )


def planned_sequential_test(
    estimate: npt.ArrayLike,
    variance: npt.ArrayLike,
    units: npt.ArrayLike,
    planned_units: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    plan_share: float = PLAN_ALPHA_SHARE,
    null_value: npt.ArrayLike = 0.0,
) -> SequentialResult:
    """Always-valid p-value and confidence sequence with ``plan_share`` of alpha spent by the
    plan (see the module docstring); ``plan_share`` 0 is the plain normal mixture.

    ``units`` and ``planned_units`` count the comparison's units (both arms); the
    estimate's variance must shrink as 1 / units. Masked as ``always_valid_test`` masks.
    """
    if not 0.0 <= plan_share < 1.0:
        raise ValueError("plan_share: must be at least 0 and below 1")
    theta, v, n, planned, null = broadcast(estimate, variance, units, planned_units, null_value)
    after = (1.0 - plan_share) * alpha
    tau2 = mixing_variance_for(v, n, planned, alpha=after)
    mixture = always_valid_test(theta, v, tau2, alpha=after, null_value=null)
    invalid = np.ma.getmaskarray(mixture.p_value)
    with np.errstate(all="ignore"):
        p_value = np.minimum(1.0, np.ma.getdata(mixture.p_value) / (1.0 - plan_share))
        half_width = np.ma.getdata(mixture.ci_high) - theta
        if plan_share > 0:
            fraction = n / planned
            within = (fraction > 0) & (fraction <= 1.0)
            sd = np.sqrt(v)
            level = np.abs(theta - null) / sd * np.sqrt(fraction)
            p_plan = brownian_exit_probability(np.where(within, level, 0.0)) / plan_share
            p_value = np.where(within, np.minimum(p_value, p_plan), p_value)
            c = exit_level(plan_share * alpha)
            half_width = np.where(
                within, np.minimum(half_width, c * sd / np.sqrt(fraction)), half_width
            )
    return SequentialResult(
        p_value=masked(np.minimum(p_value, 1.0), invalid),
        ci_low=masked(theta - half_width, invalid),
        ci_high=masked(theta + half_width, invalid),
        mixing_variance=masked(tau2, invalid),
        alpha=alpha,
    )
