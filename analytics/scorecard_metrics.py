"""The metric comparisons of many experiments' scorecards, analysed in one pass.

Every (experiment, metric, treatment) cell is gathered into arrays, analysed with one
vectorised call per metric type (``analytics.stats.analysis``: fixed-horizon test,
sequential test, Bayesian summaries, detectable effect, Wilson rates), its p-value
adjusted within its experiment by that experiment's correction, and returned as the
JSON-ready dict of a ``schemas.results.MetricComparison`` (plain str, int, float, bool,
None; never NaN). Arrays become Python lists once per column, so the per-cell work left
is building small dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.stats import adjust_p_values
from analytics.stats.analysis import CellAnalysis, analyse_conversions, analyse_means
from analytics.stats.multiple import Correction
from schemas.experiment import Aggregation, Experiment, MetricDefinition

#: (variant, event, aggregation) -> (Σx, Σx²) summed over the stream's partitions.
StatsByCell = Mapping[tuple[str, str, Aggregation], tuple[float, float]]
#: A column of per-cell figures; None where the figure is undefined (masked).
Column = list[Any]


@dataclass(frozen=True)
class ExperimentCells:
    """One experiment's inputs: variant -> units (ints >= 0), statistics, correction."""

    experiment: Experiment
    units: Mapping[str, int]
    stats: StatsByCell
    correction: Correction


@dataclass(frozen=True)
class AnalysisOptions:
    alpha: float
    power: float
    planned_units: int


@dataclass(frozen=True)
class _Cells:
    """Every cell (experiment, metric, treatment) as parallel columns, in scorecard order."""

    experiment: tuple[int, ...]
    metric: tuple[MetricDefinition, ...]
    control: tuple[str, ...]
    treatment: tuple[str, ...]
    control_units: tuple[int, ...]
    treatment_units: tuple[int, ...]
    #: Per cell (n_c, Σx_c, Σx²_c, n_t, Σx_t, Σx²_t).
    arms: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.experiment)


def metric_comparisons(
    experiments: Sequence[ExperimentCells], options: AnalysisOptions
) -> list[list[dict[str, Any]]]:
    """Per experiment, its ``MetricComparison`` dicts in (metric, treatment) order.

    A missing statistics entry means no unit did that event: Σx = Σx² = 0.
    """
    cells = _gather(experiments)
    figures = _analyse(cells, options)
    figures["adjusted_p_value"] = _adjusted(cells, figures["p_value"], experiments)
    comparisons = _comparisons(cells, figures, options.alpha)
    per_experiment: list[list[dict[str, Any]]] = []
    start = 0
    for item in experiments:
        end = start + len(item.experiment.metrics) * (len(item.experiment.variants) - 1)
        per_experiment.append(comparisons[start:end])
        start = end
    return per_experiment


def _gather(experiments: Sequence[ExperimentCells]) -> _Cells:
    """Every cell with its arms; one row per cell, transposed into columns at the end."""
    rows: list[tuple[Any, ...]] = []
    nothing = (0.0, 0.0)
    for index, item in enumerate(experiments):
        units, stats = item.units, item.stats
        control = item.experiment.control_key
        treatments = item.experiment.treatment_keys
        n_control = units.get(control, 0)
        n_treatments = [units.get(treatment, 0) for treatment in treatments]
        for metric in item.experiment.metrics:
            event, aggregation = metric.event, metric.type
            control_stats = stats.get((control, event, aggregation), nothing)
            for treatment, n in zip(treatments, n_treatments, strict=True):
                rows.append(
                    (
                        index,
                        metric,
                        control,
                        treatment,
                        n_control,
                        n,
                        *control_stats,
                        *stats.get((treatment, event, aggregation), nothing),
                    )
                )
    if not rows:
        return _Cells((), (), (), (), (), (), np.zeros((0, 6)))
    experiment, metric, control, treatment, n_c, n_t, s_c, ss_c, s_t, ss_t = zip(*rows, strict=True)
    arms = np.array([n_c, s_c, ss_c, n_t, s_t, ss_t], dtype=np.float64).T
    return _Cells(experiment, metric, control, treatment, n_c, n_t, arms)


def _analyse(cells: _Cells, options: AnalysisOptions) -> dict[str, Column]:
    """One vectorised analysis per metric type; columns of plain values in cell order."""
    arms = cells.arms
    conversion = np.array(
        [metric.type is Aggregation.CONVERSION for metric in cells.metric], dtype=bool
    )
    groups: list[tuple[npt.NDArray[np.intp], CellAnalysis]] = []
    settings = {
        "alpha": options.alpha,
        "power": options.power,
        "planned_units": options.planned_units,
    }
    for indices, is_conversion in (
        (np.flatnonzero(conversion), True),
        (np.flatnonzero(~conversion), False),
    ):
        if indices.size == 0:
            continue
        n_c, s_c, ss_c, n_t, s_t, ss_t = arms[indices].T
        if is_conversion:
            analysis = analyse_conversions((n_c, s_c), (n_t, s_t), **settings)
        else:
            analysis = analyse_means((n_c, s_c, ss_c), (n_t, s_t, ss_t), **settings)
        groups.append((indices, analysis))
    return _columns(len(cells), groups)


def _columns(
    size: int, groups: list[tuple[npt.NDArray[np.intp], CellAnalysis]]
) -> dict[str, Column]:
    def figures(pick: Any) -> Column:
        data, mask = np.zeros(size), np.ones(size, dtype=bool)
        for indices, analysis in groups:
            array = pick(analysis)
            if array is not None:
                data[indices] = np.ma.getdata(array).ravel()
                mask[indices] = np.ma.getmaskarray(array).ravel()
        column = data.astype(object)  # Python floats, made in C
        column[mask] = None
        return column.tolist()

    def labels(pick: Any) -> Column:
        """Strings, flags and counts as Python objects (``tolist``), one per cell."""
        column: Column = [None] * size
        for indices, analysis in groups:
            values = pick(analysis)
            values = values.tolist() if isinstance(values, np.ndarray) else [values] * indices.size
            for index, value in zip(indices.tolist(), values, strict=True):
                column[index] = value
        return column

    return {
        "test": labels(lambda a: a.comparison.test),
        "reason": labels(lambda a: a.comparison.reason.ravel()),
        "interval_method": labels(lambda a: a.comparison.interval_method.ravel()),
        "control_mean": figures(lambda a: a.comparison.control_mean),
        "treatment_mean": figures(lambda a: a.comparison.treatment_mean),
        "difference": figures(lambda a: a.comparison.difference),
        "difference_low": figures(lambda a: a.comparison.difference_ci_low),
        "difference_high": figures(lambda a: a.comparison.difference_ci_high),
        "relative": figures(lambda a: a.comparison.relative),
        "relative_low": figures(lambda a: a.comparison.relative_ci_low),
        "relative_high": figures(lambda a: a.comparison.relative_ci_high),
        "p_value": figures(lambda a: a.comparison.p_value),
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
        "planned_units": labels(lambda a: a.planned_units.ravel().astype(np.int64)),
        "chance": figures(lambda a: a.bayesian.chance_to_win),
        "loss_treatment": figures(lambda a: a.bayesian.expected_loss_treatment),
        "loss_control": figures(lambda a: a.bayesian.expected_loss_control),
        "prior": labels(lambda a: a.bayesian.prior),
        "detectable_effect": figures(lambda a: a.detectable_effect),
    }


def _adjusted(cells: _Cells, p_values: Column, experiments: Sequence[ExperimentCells]) -> Column:
    """p-values adjusted within each experiment by that experiment's correction."""
    missing = np.array([p is None for p in p_values], dtype=bool)
    data = np.array([0.0 if p is None else p for p in p_values], dtype=np.float64)
    family = np.array(cells.experiment, dtype=np.int64)
    chosen = [item.correction for item in experiments]
    correction = np.array([chosen[index] for index in cells.experiment], dtype=object)
    adjusted, adjusted_missing = np.zeros(len(p_values)), np.ones(len(p_values), dtype=bool)
    for name in set(chosen):
        members = np.flatnonzero(correction == name)
        result = adjust_p_values(
            np.ma.MaskedArray(data[members], mask=missing[members]),
            name,
            families=family[members],
        )
        adjusted[members] = np.ma.getdata(result)
        adjusted_missing[members] = np.ma.getmaskarray(result)
    return [
        None if m else value
        for value, m in zip(adjusted.tolist(), adjusted_missing.tolist(), strict=True)
    ]


def _comparisons(cells: _Cells, f: dict[str, Column], alpha: float) -> list[dict[str, Any]]:
    """The ``MetricComparison`` dict of every cell, built column by column."""
    controls = _arms(cells.control, cells.control_units, f["control_mean"], f, "control_rate")
    treatments = _arms(
        cells.treatment, cells.treatment_units, f["treatment_mean"], f, "treatment_rate"
    )
    absolute = _intervals(f["difference"], f["difference_low"], f["difference_high"])
    relative = _intervals(f["relative"], f["relative_low"], f["relative_high"])
    sequences = _intervals(f["difference"], f["sequential_low"], f["sequential_high"])
    sequential = [
        None
        if p is None or tau2 is None or sequence is None
        else {
            "p_value": p,
            "confidence_sequence": sequence,
            "mixing_variance": tau2,
            "planned_units": planned,
            "may_stop": may_stop,
        }
        for p, sequence, tau2, planned, may_stop in zip(
            f["sequential_p"],
            sequences,
            f["mixing_variance"],
            f["planned_units"],
            f["may_stop"],
            strict=True,
        )
    ]
    bayesian = [
        _bayesian(prior, chance, ship, keep, metric.direction == "decrease")
        for prior, chance, ship, keep, metric in zip(
            f["prior"],
            f["chance"],
            f["loss_treatment"],
            f["loss_control"],
            cells.metric,
            strict=True,
        )
    ]
    significant = [p is not None and p < alpha for p in f["adjusted_p_value"]]
    return [
        {
            "metric": metric.name,
            "event": metric.event,
            "aggregation": metric.type.value,
            "role": metric.role,
            "direction": metric.direction,
            "test": test,
            "control": control,
            "treatment": treatment,
            "absolute_effect": absolute_effect,
            "relative_effect": relative_effect,
            "p_value": p_value,
            "significant": is_significant,
            "verdict": _verdict(p_value, difference, metric, is_significant),
            "reason": reason,
            "interval_method": interval_method,
            "adjusted_p_value": adjusted_p_value,
            "sequential": sequential_result,
            "bayesian": bayesian_result,
            "detectable_effect": detectable,
        }
        for (
            metric,
            test,
            control,
            treatment,
            absolute_effect,
            relative_effect,
            p_value,
            is_significant,
            difference,
            reason,
            interval_method,
            adjusted_p_value,
            sequential_result,
            bayesian_result,
            detectable,
        ) in zip(
            cells.metric,
            f["test"],
            controls,
            treatments,
            absolute,
            relative,
            f["p_value"],
            significant,
            f["difference"],
            f["reason"],
            f["interval_method"],
            f["adjusted_p_value"],
            sequential,
            bayesian,
            f["detectable_effect"],
            strict=True,
        )
    ]


def _arms(
    keys: list[str], units: list[Any], means: Column, f: dict[str, Column], rate: str
) -> list[dict[str, Any]]:
    """Each cell's ``ArmSummary`` dict for one side; conversions carry the rate's interval."""
    intervals = _intervals(f[rate], f[f"{rate}_low"], f[f"{rate}_high"])
    return [
        {"variant_key": key, "units": count, "mean": mean, "mean_ci": interval}
        for key, count, mean, interval in zip(keys, units, means, intervals, strict=True)
    ]


def _intervals(estimates: Column, lows: Column, highs: Column) -> list[dict[str, float] | None]:
    return [
        None
        if estimate is None or low is None or high is None
        else {"estimate": estimate, "ci_low": low, "ci_high": high}
        for estimate, low, high in zip(estimates, lows, highs, strict=True)
    ]


def _bayesian(
    prior: str, chance: float | None, ship: float | None, keep: float | None, lower_wins: bool
) -> dict[str, Any] | None:
    if chance is None or ship is None or keep is None:
        return None
    if lower_wins:  # winning means going down: swap the sides
        chance, ship, keep = 1.0 - chance, keep, ship
    return {
        "prior": prior,
        "chance_to_beat_control": chance,
        "expected_loss_ship": ship,
        "expected_loss_keep": keep,
    }


def _verdict(
    p_value: float | None, difference: float | None, metric: MetricDefinition, significant: bool
) -> str:
    if p_value is None or difference is None:
        return "not_computable"
    if not significant or difference == 0:
        return "inconclusive"
    went_up = difference > 0
    return "better" if went_up == (metric.direction == "increase") else "worse"
