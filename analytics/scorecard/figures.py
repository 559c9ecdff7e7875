"""Per-cell figure columns of many scorecards: one vectorised analysis per kind of metric.

Every cell (``analytics.scorecard.cells``) is analysed with one call per kind
(``analytics.stats.analysis``: fixed-horizon test, sequential test, Bayesian summaries,
detectable effect, Wilson rates), its p-value adjusted within its experiment by that
experiment's correction, per family (one experiment's comparisons of one metric role,
so guardrails never dilute the primary metrics), with adjusted intervals. The result is
one column per figure: a numpy (data, mask) pair, or a list of labels, in cell order.

Every figure that has a scale (p-value, correction, adjusted interval, sequential test,
Bayesian summaries, detectable effect) is on ``AnalysisOptions.scale``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.scorecard.cells import Cells, Kind, named_arms
from analytics.scorecard.inputs import ScorecardInput
from analytics.stats import adjust_p_values
from analytics.stats.analysis import (
    CellAnalysis,
    Scale,
    analyse_conversions,
    analyse_cuped,
    analyse_means,
    analyse_ratios,
)
from analytics.stats.cells import REASON_CODES
from analytics.stats.intervals import newcombe_bounds
from analytics.stats.multiple import interval_alpha
from analytics.stats.quantiles import t_quantile

#: A column of per-cell figures; None where the figure is undefined (masked).
Column = list[Any]
Masked = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]
#: Figure name -> its column (Masked for numbers, Column for labels).
Figures = dict[str, Any]
MISSING_SUMS_CODE = "metric_not_computed"


@dataclass(frozen=True)
class AnalysisOptions:
    alpha: float
    power: float
    scale: Scale = "relative"


_ANALYSES: dict[Kind, Callable[..., CellAnalysis]] = {
    "conversion": analyse_conversions,
    "mean": analyse_means,
    "ratio": analyse_ratios,
    "cuped": analyse_cuped,
}


def analyse(cells: Cells, options: AnalysisOptions) -> Figures:
    """One vectorised analysis per kind of metric; per figure a numpy column (data, mask)
    or a list of labels, in cell order."""
    kinds = np.array(cells.kind, dtype=object)
    groups: list[tuple[npt.NDArray[np.intp], CellAnalysis]] = []
    for kind, analyse_kind in _ANALYSES.items():
        indices = np.flatnonzero(kinds == kind)
        if indices.size == 0:
            continue
        analysis = analyse_kind(
            named_arms(kind, cells.arm_sums(indices, 0)),
            named_arms(kind, cells.arm_sums(indices, 1)),
            alpha=options.alpha,
            power=options.power,
            planned_units=cells.planned[indices],
            scale=options.scale,
        )
        groups.append((indices, analysis))
    figures = _columns(len(cells), groups, options.scale)
    reasons, codes = figures["reason"], figures["reason_code"]
    for index, missing in enumerate(cells.missing):
        if missing is not None:
            reasons[index], codes[index] = missing, MISSING_SUMS_CODE
    return figures


def _columns(
    size: int, groups: list[tuple[npt.NDArray[np.intp], CellAnalysis]], scale: Scale
) -> Figures:
    def figures(pick: Any) -> Masked:
        data, mask = np.zeros(size), np.ones(size, dtype=bool)
        for indices, analysis in groups:
            array = pick(analysis)
            if array is not None:
                data[indices] = np.ma.getdata(array).ravel()
                mask[indices] = np.ma.getmaskarray(array).ravel()
        return data, mask

    def labels(pick: Any) -> Column:
        """Strings, flags and counts as Python objects (``tolist``), one per cell."""
        if len(groups) == 1 and groups[0][0].size == size:  # one kind: already in order
            values = pick(groups[0][1])
            return values.tolist() if isinstance(values, np.ndarray) else [values] * size
        column = np.full(size, None, dtype=object)
        for indices, analysis in groups:
            values = pick(analysis)
            if isinstance(values, np.ndarray):
                column[indices] = values.astype(object)
            else:
                column[indices] = [values] * indices.size
        return column.tolist()

    relative = scale == "relative"
    reason = labels(
        (lambda a: a.comparison.relative_reason.ravel())
        if relative
        else (lambda a: a.comparison.reason.ravel())
    )
    return {
        "test": labels(lambda a: a.comparison.test),
        "reason": reason,
        "reason_code": _codes(reason),
        "interval_method": labels(lambda a: a.comparison.interval_method.ravel()),
        "control_mean": figures(lambda a: a.comparison.control_mean),
        "treatment_mean": figures(lambda a: a.comparison.treatment_mean),
        "difference": figures(lambda a: a.comparison.difference),
        "difference_low": figures(lambda a: a.comparison.difference_ci_low),
        "difference_high": figures(lambda a: a.comparison.difference_ci_high),
        "relative": figures(lambda a: a.comparison.relative),
        "relative_low": figures(lambda a: a.comparison.relative_ci_low),
        "relative_high": figures(lambda a: a.comparison.relative_ci_high),
        "p_value": figures(
            (lambda a: a.comparison.relative_p_value)
            if relative
            else (lambda a: a.comparison.p_value)
        ),
        "standard_error": figures(
            (lambda a: a.comparison.relative_standard_error)
            if relative
            else (lambda a: a.comparison.standard_error)
        ),
        "dof": figures(lambda a: a.comparison.dof),
        "control_rate": figures(lambda a: a.control_rate and a.control_rate.estimate),
        "control_rate_low": figures(lambda a: a.control_rate and a.control_rate.low),
        "control_rate_high": figures(lambda a: a.control_rate and a.control_rate.high),
        "treatment_rate": figures(lambda a: a.treatment_rate and a.treatment_rate.estimate),
        "treatment_rate_low": figures(lambda a: a.treatment_rate and a.treatment_rate.low),
        "treatment_rate_high": figures(lambda a: a.treatment_rate and a.treatment_rate.high),
        "sequential_p": figures(lambda a: a.sequential.p_value),
        "sequential_low": figures(lambda a: a.sequential.ci_low),
        "sequential_high": figures(lambda a: a.sequential.ci_high),
        "mixing_variance": figures(lambda a: a.sequential.mixing_variance),
        "may_stop": labels(lambda a: a.sequential.may_stop.ravel()),
        "planned_units": labels(lambda a: np.round(a.planned_units.ravel()).astype(np.int64)),
        "chance": figures(lambda a: a.bayesian.chance_to_win),
        "loss_treatment": figures(lambda a: a.bayesian.expected_loss_treatment),
        "loss_control": figures(lambda a: a.bayesian.expected_loss_control),
        "prior": labels(lambda a: a.bayesian.prior),
        "detectable_effect": figures(lambda a: a.detectable_effect),
        "cuped_theta": figures(lambda a: a.cuped_theta),
        "variance_reduction": figures(lambda a: a.variance_reduction),
    }


def _codes(reasons: Column) -> Column:
    """The code of each reason message (None where there is none)."""
    codes: Column = [None] * len(reasons)
    for index in [i for i, reason in enumerate(reasons) if reason is not None]:
        codes[index] = REASON_CODES.get(reasons[index], "not_computable")
    return codes


def adjust(
    cells: Cells, figures: Figures, inputs: Sequence[ScorecardInput], options: AnalysisOptions
) -> None:
    """Adjusted p-values and intervals on the scale, per family by its correction."""
    p_data, p_missing = figures["p_value"]
    size = p_data.size
    chosen = [item.chosen_correction for item in inputs]
    correction = np.array([chosen[index] for index in cells.experiment], dtype=object)
    adjusted, adjusted_missing = np.zeros(size), np.ones(size, dtype=bool)
    level_alpha = np.full(size, options.alpha)
    for name in set(chosen):
        members = np.flatnonzero(correction == name)
        result = adjust_p_values(
            np.ma.MaskedArray(p_data[members], mask=p_missing[members]),
            name,
            families=cells.family[members],
        )
        adjusted[members] = np.ma.getdata(result)
        adjusted_missing[members] = np.ma.getmaskarray(result)
        level_alpha[members] = np.ma.getdata(
            interval_alpha(result, name, options.alpha, families=cells.family[members])
        )
    figures["adjusted_p_value"] = (adjusted, adjusted_missing)
    figures["adjusted_level"] = (1.0 - level_alpha, p_missing)
    low, high = _adjusted_bounds(cells, figures, level_alpha, options.scale)
    # No adjusted interval where the standard error is not a finite number (hostile sums).
    missing = p_missing | figures["standard_error"][1] | ~np.isfinite(low) | ~np.isfinite(high)
    figures["adjusted_low"], figures["adjusted_high"] = (low, missing), (high, missing)


def _adjusted_bounds(
    cells: Cells, figures: Figures, alpha: npt.NDArray[np.float64], scale: Scale
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each cell's interval at its own ``alpha``, made the way its unadjusted one is."""
    se = figures["standard_error"][0]
    dof = figures["dof"][0]
    with np.errstate(all="ignore"):
        if scale == "relative":
            estimate = figures["relative"][0]
            half = t_quantile(dof, 1.0 - alpha / 2.0) * se
            return estimate - half, estimate + half
        estimate = figures["difference"][0]
        method = np.array(figures["interval_method"], dtype=object)
        t_based = (method == "welch_t") | (method == "cuped_welch_t")
        quantile = np.where(
            t_based, t_quantile(dof, 1.0 - alpha / 2.0), special.ndtri(1.0 - alpha / 2.0)
        )
        low, high = estimate - quantile * se, estimate + quantile * se
        newcombe = np.flatnonzero(method == "newcombe")
        if newcombe.size:
            control, treatment = cells.arm_sums(newcombe, 0), cells.arm_sums(newcombe, 1)
            low[newcombe], high[newcombe] = newcombe_bounds(
                control.n, control.sum_x, treatment.n, treatment.sum_x, alpha[newcombe]
            )
    return low, high
