"""Two-proportion z test for conversion metrics (unit-level x in {0, 1}).

The p-value uses the pooled variance, as statsmodels' ``proportions_ztest`` does by
default. The interval of the difference is the unpooled Wald interval
(``confint_proportions_2indep(method="wald")``) while every arm has at least
``small_count`` conversions and non-conversions; below that the Wald interval is too
narrow (it collapses at 0 conversions), so the cell gets Newcombe's hybrid score interval
(``method="newcomb"``) instead. Σx is the number of converted units.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.cells import broadcast, first_reasons, rule, unit_count_rules
from analytics.stats.comparison import Comparison, RawComparison, assemble
from analytics.stats.intervals import newcombe_bounds

TWO_PROPORTION_Z = "two_proportion_z"
#: Below this many conversions (or non-conversions) in an arm, use Newcombe's interval.
SMALL_COUNT = 10


def two_proportion_z_test(
    control_n: npt.ArrayLike,
    control_conversions: npt.ArrayLike,
    treatment_n: npt.ArrayLike,
    treatment_conversions: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    small_count: float = SMALL_COUNT,
) -> Comparison:
    """Treatment minus control conversion rate, per cell."""
    n_c, x_c, n_t, x_t = broadcast(
        control_n, control_conversions, treatment_n, treatment_conversions
    )
    with np.errstate(all="ignore"):
        rate_c, rate_t = x_c / n_c, x_t / n_t
        pooled = (x_c + x_t) / (n_c + n_t)
        pooled_se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
        difference = rate_t - rate_c
        z_statistic = difference / pooled_se
        p_value = 2.0 * special.ndtr(-np.abs(z_statistic))
        mean_var_c = rate_c * (1.0 - rate_c) / n_c
        mean_var_t = rate_t * (1.0 - rate_t) / n_t
        half_width = special.ndtri(1.0 - alpha / 2.0) * np.sqrt(mean_var_c + mean_var_t)
        small = np.minimum(np.minimum(x_c, n_c - x_c), np.minimum(x_t, n_t - x_t)) < small_count
        newcombe_low, newcombe_high = newcombe_bounds(n_c, x_c, n_t, x_t, alpha)
        ci_low = np.where(small, newcombe_low, difference - half_width)
        ci_high = np.where(small, newcombe_high, difference + half_width)
    reason = first_reasons(
        n_c.shape,
        [
            rule(
                ~np.isfinite(x_c) | ~np.isfinite(x_t),
                "conversions must be finite numbers",
                "non_finite_sums",
            ),
            *unit_count_rules(n_c, n_t),
            rule(
                (x_c < 0) | (x_c > n_c),
                "control conversions must be between 0 and its units",
                "inconsistent_sums",
            ),
            rule(
                (x_t < 0) | (x_t > n_t),
                "treatment conversions must be between 0 and its units",
                "inconsistent_sums",
            ),
            rule(pooled == 0, "no conversions in either arm yet", "no_events"),
            rule(pooled == 1, "every unit converted in both arms: no variance", "zero_variance"),
        ],
    )
    raw = RawComparison(
        control_mean=rate_c,
        treatment_mean=rate_t,
        control_mean_variance=mean_var_c,
        treatment_mean_variance=mean_var_t,
        difference=difference,
        difference_half_width=half_width,
        statistic=z_statistic,
        p_value=p_value,
        interval_method=np.where(small, "newcombe", "wald").astype(object),
        difference_ci=(ci_low, ci_high),
        control_n=n_c,
        treatment_n=n_t,
    )
    return assemble(TWO_PROPORTION_Z, alpha, raw, reason, n_c > 0, n_t > 0)
