"""Everything a scorecard shows for many cells at once, one vectorised pass per metric type.

Per cell (one metric, one treatment against the control): the fixed-horizon comparison,
the always-valid sequential test, the Bayesian summaries, the effect detectable with the
units so far, and for conversions the Wilson interval of each arm's rate. Means use
Welch's t test, ratio metrics the delta method, CUPED metrics Welch's t test on the
covariate-adjusted values (with θ and the variance removed kept on the analysis).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from analytics.stats.bayes import BayesianResult, beta_chance_to_win, normal_chance_to_win
from analytics.stats.cells import FloatArray, broadcast
from analytics.stats.comparison import Comparison
from analytics.stats.cuped import cuped_test
from analytics.stats.intervals import ProportionInterval, wilson_interval
from analytics.stats.power import detectable_effect
from analytics.stats.proportions import two_proportion_z_test
from analytics.stats.ratio import ratio_test
from analytics.stats.sequential import (
    DEFAULT_PLANNED_UNITS,
    SequentialResult,
    always_valid_test,
    mixing_variance_for,
)
from analytics.stats.welch import welch_t_test

DEFAULT_POWER = 0.8
CUPED_WELCH_T = "cuped_welch_t"


@dataclass(frozen=True)
class CellAnalysis:
    comparison: Comparison
    sequential: SequentialResult
    planned_units: FloatArray
    bayesian: BayesianResult
    detectable_effect: np.ma.MaskedArray
    control_rate: ProportionInterval | None = None
    treatment_rate: ProportionInterval | None = None
    cuped_theta: FloatArray | None = None
    variance_reduction: np.ma.MaskedArray | None = None


def _extras(
    comparison: Comparison,
    units: FloatArray,
    planned_units: npt.ArrayLike,
    alpha: float,
    power: float,
) -> tuple[SequentialResult, FloatArray, np.ma.MaskedArray]:
    untestable = np.ma.getmaskarray(comparison.p_value)
    estimate = np.where(untestable, np.nan, np.ma.getdata(comparison.difference))
    variance = np.ma.getdata(comparison.standard_error) ** 2
    (planned,) = broadcast(planned_units)
    planned = np.broadcast_to(planned, units.shape).copy()
    tau2 = mixing_variance_for(variance, units, planned, alpha=alpha)
    sequential = always_valid_test(estimate, variance, tau2, alpha=alpha)
    mde = detectable_effect(np.ma.getdata(comparison.standard_error), alpha=alpha, power=power)
    return sequential, planned, np.ma.MaskedArray(mde, mask=untestable | ~np.isfinite(mde))


def analyse_means(
    control: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
    treatment: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    planned_units: npt.ArrayLike = DEFAULT_PLANNED_UNITS,
) -> CellAnalysis:
    """Mean metrics; each arm is (n, Σx, Σx²). Bayesian summaries use a flat prior."""
    comparison = welch_t_test(*control, *treatment, alpha=alpha)
    n_c, n_t = broadcast(control[0], treatment[0])
    return _normal_analysis(comparison, n_c + n_t, planned_units, alpha, power)


def _normal_analysis(
    comparison: Comparison,
    units: FloatArray,
    planned_units: npt.ArrayLike,
    alpha: float,
    power: float,
) -> CellAnalysis:
    sequential, planned, mde = _extras(comparison, units, planned_units, alpha, power)
    untestable = np.ma.getmaskarray(comparison.p_value)
    bayesian = normal_chance_to_win(
        np.where(untestable, np.nan, np.ma.getdata(comparison.difference)),
        np.ma.getdata(comparison.standard_error) ** 2,
    )
    return CellAnalysis(comparison, sequential, planned, bayesian, mde)


def analyse_ratios(
    control: tuple[npt.ArrayLike, ...],
    treatment: tuple[npt.ArrayLike, ...],
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    planned_units: npt.ArrayLike = DEFAULT_PLANNED_UNITS,
) -> CellAnalysis:
    """Ratio (and mean-per-event) metrics; each arm is (n, Σx, Σy, Σx², Σy², Σxy)."""
    comparison = ratio_test(control, treatment, alpha=alpha)
    n_c, n_t = broadcast(control[0], treatment[0])
    return _normal_analysis(comparison, n_c + n_t, planned_units, alpha, power)


def analyse_cuped(
    control: tuple[npt.ArrayLike, ...],
    treatment: tuple[npt.ArrayLike, ...],
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    planned_units: npt.ArrayLike = DEFAULT_PLANNED_UNITS,
) -> CellAnalysis:
    """CUPED-adjusted means; each arm is (n, Σx, Σx², Σc, Σc², Σxc), c the covariate."""
    result = cuped_test(control, treatment, alpha=alpha)
    n_c, n_t = broadcast(control[0], treatment[0])
    comparison = replace(result.comparison, test=CUPED_WELCH_T)
    analysis = _normal_analysis(comparison, n_c + n_t, planned_units, alpha, power)
    return CellAnalysis(
        analysis.comparison,
        analysis.sequential,
        analysis.planned_units,
        analysis.bayesian,
        analysis.detectable_effect,
        cuped_theta=result.theta,
        variance_reduction=result.variance_reduction,
    )


def analyse_conversions(
    control: tuple[npt.ArrayLike, npt.ArrayLike],
    treatment: tuple[npt.ArrayLike, npt.ArrayLike],
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    planned_units: npt.ArrayLike = DEFAULT_PLANNED_UNITS,
) -> CellAnalysis:
    """Conversion metrics; each arm is (n, conversions). Beta(1, 1) priors per arm."""
    comparison = two_proportion_z_test(*control, *treatment, alpha=alpha)
    n_c, x_c, n_t, x_t = broadcast(*control, *treatment)
    sequential, planned, mde = _extras(comparison, n_c + n_t, planned_units, alpha, power)
    untestable = np.ma.getmaskarray(comparison.p_value)
    bayesian = beta_chance_to_win(np.where(untestable, np.nan, n_c), x_c, n_t, x_t)
    return CellAnalysis(
        comparison,
        sequential,
        planned,
        bayesian,
        mde,
        control_rate=wilson_interval(n_c, x_c, alpha=alpha),
        treatment_rate=wilson_interval(n_t, x_t, alpha=alpha),
    )
