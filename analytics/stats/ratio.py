"""Ratio metrics (Σx / Σy per variant, e.g. revenue per session) by the delta method.

The unit of randomisation is the unit (user), but a ratio metric divides two unit-level
sums whose units are correlated, so the variance of R = Σx / Σy needs the delta method
(Deng, Lu and Litz 2018, "Applying the Delta Method in Metric Analytics", KDD):

    Var(R) ≈ (s_x² - 2 R s_xy + R² s_y²) / (n ȳ²)

with s the unbiased per-unit (co)variances. Treatment minus control is then tested with
a z test; the relative effect and its interval come from the shared delta method.
Per arm the inputs are ``RatioArms``: numerator and denominator sums and Σxy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.arms import RatioArms
from analytics.stats.cells import (
    ZERO_VARIANCE_TOLERANCE,
    BoolArray,
    FloatArray,
    broadcast,
    first_reasons,
    rule,
    unit_count_rules,
)
from analytics.stats.comparison import Comparison, RawComparison, assemble

RATIO_DELTA = "ratio_delta"


def _arm(
    n: FloatArray,
    sum_x: FloatArray,
    sum_y: FloatArray,
    sum_xx: FloatArray,
    sum_yy: FloatArray,
    sum_xy: FloatArray,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """(ratio, variance of the ratio, inconsistent sums) for one arm."""
    with np.errstate(all="ignore"):
        ratio = sum_x / sum_y
        centred_xx = sum_xx - sum_x * sum_x / n
        centred_yy = sum_yy - sum_y * sum_y / n
        centred_xy = sum_xy - sum_x * sum_y / n
        inconsistent = (centred_xx < -ZERO_VARIANCE_TOLERANCE * np.abs(sum_xx)) | (
            centred_yy < -ZERO_VARIANCE_TOLERANCE * np.abs(sum_yy)
        )
        # Var(x - R y) summed over units: the linearised ratio's spread, never below 0.
        spread = np.maximum(centred_xx - 2 * ratio * centred_xy + ratio**2 * centred_yy, 0.0)
        mean_y = sum_y / n
        variance = spread / (n - 1) / (n * mean_y**2)
    return ratio, variance, inconsistent


def _columns(arm: RatioArms) -> tuple[npt.ArrayLike, ...]:
    """(n, Σx, Σy, Σx², Σy², Σxy) of ``arm``, the order ``_arm`` takes."""
    if not isinstance(arm, RatioArms):
        raise TypeError(f"a ratio arm must be RatioArms, not {type(arm).__name__}")
    x, y = arm.numerator, arm.denominator
    return x.n, x.sum, y.sum, x.sum_squares, y.sum_squares, arm.cross


def ratio_test(control: RatioArms, treatment: RatioArms, *, alpha: float = 0.05) -> Comparison:
    """Treatment ratio minus control ratio (numerator units are the arm's units)."""
    arrays = broadcast(*_columns(control), *_columns(treatment))
    c, t = arrays[:6], arrays[6:]
    n_c, n_t = c[0], t[0]
    ratio_c, var_c, inconsistent_c = _arm(*c)
    ratio_t, var_t, inconsistent_t = _arm(*t)
    z = special.ndtri(1.0 - alpha / 2.0)
    with np.errstate(all="ignore"):
        difference = ratio_t - ratio_c
        standard_error = np.sqrt(var_c + var_t)
        statistic = difference / standard_error
        p_value = 2.0 * special.ndtr(-np.abs(statistic))
    reason = first_reasons(
        n_c.shape,
        [
            rule(
                ~np.isfinite(np.sum(arrays[1:6], axis=0) + np.sum(arrays[7:], axis=0)),
                "sums must be finite numbers",
                "non_finite_sums",
            ),
            *unit_count_rules(n_c, n_t),
            rule(
                inconsistent_c,
                "control Σx² or Σy² is below its (Σ)²/n: inconsistent sums",
                "inconsistent_sums",
            ),
            rule(
                inconsistent_t,
                "treatment Σx² or Σy² is below its (Σ)²/n: inconsistent sums",
                "inconsistent_sums",
            ),
            rule(
                c[2] == 0,
                "control denominator Σy is 0: the ratio is undefined",
                "zero_denominator",
            ),
            rule(
                t[2] == 0,
                "treatment denominator Σy is 0: the ratio is undefined",
                "zero_denominator",
            ),
            rule((var_c == 0) & (var_t == 0), "no variance in either arm's ratio", "zero_variance"),
        ],
    )
    raw = RawComparison(
        control_mean=ratio_c,
        treatment_mean=ratio_t,
        control_mean_variance=var_c,
        treatment_mean_variance=var_t,
        difference=difference,
        difference_half_width=z * standard_error,
        statistic=statistic,
        p_value=p_value,
        interval_method=np.full(n_c.shape, "delta", dtype=object),
        control_n=n_c,
        treatment_n=n_t,
    )
    return assemble(RATIO_DELTA, alpha, raw, reason, n_c > 0, n_t > 0)
