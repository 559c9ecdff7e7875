"""The metric comparisons of many experiments' scorecards, analysed in one pass.

Every (experiment, metric, treatment) cell is gathered into arrays, analysed with one
vectorised call per kind of analysis (``analytics.stats.analysis``: fixed-horizon test,
sequential test, Bayesian summaries, detectable effect, Wilson rates), its p-value
adjusted within its experiment by that experiment's correction, and returned as the
JSON-ready dict of a ``schemas.results.MetricComparison`` (plain str, int, float, bool,
None; never NaN). Arrays become Python lists once per column, so the per-cell work left
is building small dicts.

Metrics the stream keeps per event (plain conversion, count, sum) come from ``stats``;
the others (mean, ratio, capped, windowed or CUPED metrics, see
``MetricDefinition.needs_replay``) from ``metric_sums``, per-variant sums kept live by
the stream or replayed from the raw log (``analytics.replay``); ``sums_source`` says
which, and each comparison reports it as ``source``. Mean and ratio metrics are compared
with the delta method, metrics with a CUPED covariate by Welch's t test on the adjusted
values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from analytics.stats import adjust_p_values
from analytics.stats.analysis import (
    CellAnalysis,
    analyse_conversions,
    analyse_cuped,
    analyse_means,
    analyse_ratios,
)
from analytics.stats.multiple import Correction
from analytics.unit_metrics import VariantSums
from schemas.experiment import Aggregation, Experiment, MetricDefinition

#: (variant, event, aggregation) -> (Σx, Σx²) summed over the stream's partitions.
StatsByCell = Mapping[tuple[str, str, Aggregation], tuple[float, float]]
#: (variant, metric name) -> that metric's sums, for metrics beyond per-event sums.
SumsByMetric = Mapping[tuple[str, str], VariantSums]
#: Where a metric's figures came from: the stream's live aggregates or a replay.
SumsSource = Literal["stream", "replay"]
#: A column of per-cell figures; None where the figure is undefined (masked).
Column = list[Any]


@dataclass(frozen=True)
class ExperimentCells:
    """One experiment's inputs: variant -> units (ints >= 0), statistics, correction."""

    experiment: Experiment
    units: Mapping[str, int]
    stats: StatsByCell
    correction: Correction
    metric_sums: SumsByMetric = field(default_factory=dict)
    #: Metric name -> where its ``metric_sums`` came from; "replay" when not given.
    sums_source: Mapping[str, SumsSource] = field(default_factory=dict)


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
    #: How each cell is analysed: conversion, mean, ratio or cuped.
    kind: tuple[str, ...]
    #: Why a cell has no figures before any test runs (its metric was never replayed).
    missing: tuple[str | None, ...]
    #: Where each cell's sums came from; None when they are missing.
    source: tuple[SumsSource | None, ...]
    #: Per cell the control's then the treatment's ``_SUMS`` (``_ARM`` columns each).
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


_ARM = 9  # n, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc
#: Columns of one arm each analysis takes, in the order its test expects.
_INPUTS = {
    "conversion": (0, 1),
    "mean": (0, 1, 2),
    "ratio": (0, 1, 3, 2, 4, 5),
    "cuped": (0, 1, 2, 6, 7, 8),
}


def _sums(sums: VariantSums | None) -> tuple[float, ...]:
    if sums is None:
        return (0.0,) * _ARM
    return (
        float(sums.n),
        sums.sum_x,
        sums.sum_xx,
        sums.sum_y,
        sums.sum_yy,
        sums.sum_xy,
        sums.sum_c,
        sums.sum_cc,
        sums.sum_xc,
    )


def _kind(metric: MetricDefinition) -> str:
    if metric.is_ratio:
        return "ratio"
    if metric.cuped_lookback_days is not None:
        return "cuped"
    return "conversion" if metric.type is Aggregation.CONVERSION else "mean"


def _missing_reason(metric: MetricDefinition) -> str:
    replay = f"run `liftstream replay --metric {metric.name}` to compute it"
    if metric.kept_live:
        return f"metric '{metric.name}' has no stream sums for its definition yet: {replay}"
    return f"metric '{metric.name}' is not kept by the stream (percentile cap): {replay}"


def _metric_arms(
    item: ExperimentCells, metric: MetricDefinition, variants: list[str]
) -> tuple[list[tuple[float, ...]], list[int], str | None, SumsSource | None]:
    """Each variant's arm sums and units for ``metric``, why they are missing if so, and
    where they came from."""
    units = [item.units.get(variant, 0) for variant in variants]
    if not metric.needs_replay:
        nothing = (0.0, 0.0)
        arms = []
        for variant, n in zip(variants, units, strict=True):
            total, total_sq = item.stats.get((variant, metric.event, metric.type), nothing)
            arms.append((float(n), total, total_sq, *(0.0,) * 6))
        return arms, units, None, "stream"
    found = [item.metric_sums.get((variant, metric.name)) for variant in variants]
    if any(sums is None for sums in found):
        return [_sums(None) for _ in variants], units, _missing_reason(metric), None
    arms = [_sums(sums) for sums in found]
    source = item.sums_source.get(metric.name, "replay")
    return arms, [sums.n for sums in found if sums is not None], None, source


def _gather(experiments: Sequence[ExperimentCells]) -> _Cells:
    """Every cell with its arms; one row per cell, transposed into columns at the end."""
    rows: list[tuple[Any, ...]] = []
    for index, item in enumerate(experiments):
        control = item.experiment.control_key
        treatments = item.experiment.treatment_keys
        for metric in item.experiment.metrics:
            arms, units, missing, source = _metric_arms(item, metric, [control, *treatments])
            kind = _kind(metric)
            for position, treatment in enumerate(treatments, start=1):
                rows.append(
                    (
                        index,
                        metric,
                        control,
                        treatment,
                        units[0],
                        units[position],
                        kind,
                        missing,
                        source,
                        (*arms[0], *arms[position]),
                    )
                )
    if not rows:
        return _Cells((), (), (), (), (), (), (), (), (), np.zeros((0, 2 * _ARM)))
    experiment, metric, control, treatment, n_c, n_t, kind, missing, source, arms = zip(
        *rows, strict=True
    )
    return _Cells(
        experiment,
        metric,
        control,
        treatment,
        n_c,
        n_t,
        kind,
        missing,
        source,
        np.array(arms, dtype=np.float64).reshape(len(rows), 2 * _ARM),
    )


def _analyse(cells: _Cells, options: AnalysisOptions) -> dict[str, Column]:
    """One vectorised analysis per kind of metric; columns of plain values in cell order."""
    settings = {
        "alpha": options.alpha,
        "power": options.power,
        "planned_units": options.planned_units,
    }
    analyses = {
        "conversion": analyse_conversions,
        "mean": analyse_means,
        "ratio": analyse_ratios,
        "cuped": analyse_cuped,
    }
    kinds = np.array(cells.kind, dtype=object)
    groups: list[tuple[npt.NDArray[np.intp], CellAnalysis]] = []
    for kind, analyse in analyses.items():
        indices = np.flatnonzero(kinds == kind)
        if indices.size == 0:
            continue
        columns = cells.arms[indices].T
        control = tuple(columns[i] for i in _INPUTS[kind])
        treatment = tuple(columns[_ARM + i] for i in _INPUTS[kind])
        groups.append((indices, analyse(control, treatment, **settings)))  # type: ignore[operator]
    figures = _columns(len(cells), groups)
    figures["reason"] = [
        missing or reason for missing, reason in zip(cells.missing, figures["reason"], strict=True)
    ]
    return figures


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
        "cuped_theta": figures(lambda a: a.cuped_theta),
        "variance_reduction": figures(lambda a: a.variance_reduction),
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
    cuped = [
        None
        if theta is None
        else {
            "theta": theta,
            "variance_reduction": reduction,
            "lookback_days": metric.cuped_lookback_days,
        }
        for theta, reduction, metric in zip(
            f["cuped_theta"], f["variance_reduction"], cells.metric, strict=True
        )
    ]
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
            "cuped": cuped_summary,
            "source": source,
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
            cuped_summary,
            source,
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
            cuped,
            cells.source,
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
