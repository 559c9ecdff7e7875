"""Welch's t test for a difference in means, from per-arm n, Σx and Σx².

Used for count and sum metrics (and any unit-level mean). Agrees with statsmodels'
``CompareMeans.ttest_ind(usevar="unequal")`` and ``tconfint_diff(usevar="unequal")``
and with ``scipy.stats.ttest_ind(equal_var=False)`` on the unit-level data.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

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
from analytics.stats.quantiles import t_quantile

WELCH_T = "welch_t"


def welch_t_test(
    control_n: npt.ArrayLike,
    control_sum: npt.ArrayLike,
    control_sum_sq: npt.ArrayLike,
    treatment_n: npt.ArrayLike,
    treatment_sum: npt.ArrayLike,
    treatment_sum_sq: npt.ArrayLike,
    *,
    alpha: float = 0.05,
) -> Comparison:
    """Treatment minus control with a Welch-Satterthwaite t interval, per cell."""
    n_c, s_c, ss_c, n_t, s_t, ss_t = broadcast(
        control_n, control_sum, control_sum_sq, treatment_n, treatment_sum, treatment_sum_sq
    )
    with np.errstate(all="ignore"):
        mean_c, mean_t = s_c / n_c, s_t / n_t
        var_c, inconsistent_c = _sample_variance(n_c, s_c, ss_c)
        var_t, inconsistent_t = _sample_variance(n_t, s_t, ss_t)
        mean_var_c, mean_var_t = var_c / n_c, var_t / n_t
        standard_error = np.sqrt(mean_var_c + mean_var_t)
        df = (mean_var_c + mean_var_t) ** 2 / (
            mean_var_c**2 / (n_c - 1) + mean_var_t**2 / (n_t - 1)
        )
        difference = mean_t - mean_c
        t_statistic = difference / standard_error
        p_value = 2.0 * special.stdtr(df, -np.abs(t_statistic))
        half_width = t_quantile(df, 1.0 - alpha / 2.0) * standard_error
    reason = first_reasons(
        n_c.shape,
        [
            rule(
                ~np.isfinite(s_c) | ~np.isfinite(ss_c) | ~np.isfinite(s_t) | ~np.isfinite(ss_t),
                "sums must be finite numbers",
                "non_finite_sums",
            ),
            *unit_count_rules(n_c, n_t),
            rule(
                inconsistent_c,
                "control Σx² is below (Σx)²/n: inconsistent sufficient statistics",
                "inconsistent_sums",
            ),
            rule(
                inconsistent_t,
                "treatment Σx² is below (Σx)²/n: inconsistent sufficient statistics",
                "inconsistent_sums",
            ),
            rule(
                (ss_c == 0) & (ss_t == 0),
                "every unit's value is 0 in both arms (no events yet)",
                "no_events",
            ),
            rule(
                (var_c == 0) & (var_t == 0),
                "no variance in either arm: every unit has one value",
                "zero_variance",
            ),
        ],
    )
    raw = RawComparison(
        control_mean=mean_c,
        treatment_mean=mean_t,
        control_mean_variance=mean_var_c,
        treatment_mean_variance=mean_var_t,
        difference=difference,
        difference_half_width=half_width,
        statistic=t_statistic,
        p_value=p_value,
        interval_method=np.full(n_c.shape, WELCH_T, dtype=object),
        dof=df,
        control_n=n_c,
        treatment_n=n_t,
    )
    return assemble(WELCH_T, alpha, raw, reason, n_c > 0, n_t > 0)


def _sample_variance(
    n: FloatArray, total: FloatArray, total_sq: FloatArray
) -> tuple[FloatArray, BoolArray]:
    """(unbiased variance, inconsistent) from n, Σx, Σx²; rounding residue counts as 0."""
    with np.errstate(all="ignore"):
        centred = total_sq - total * total / n
        tolerance = ZERO_VARIANCE_TOLERANCE * np.abs(total_sq)
        inconsistent = centred < -tolerance
        variance = np.where(centred <= tolerance, 0.0, centred) / (n - 1)
    return variance, inconsistent
