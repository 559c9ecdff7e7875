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

Every comparison states its ``scale`` (``AnalysisOptions.scale``): the p-value, its
correction and adjusted interval, the verdict, the sequential test, the Bayesian
summaries and the detectable effect are all about the relative effect or all about the
absolute one. Corrections apply per family: one experiment's comparisons of one metric
role (primary, secondary, guardrail), so guardrails never dilute the primary metrics.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

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
from analytics.stats.multiple import Correction, interval_alpha
from analytics.stats.sequential import DEFAULT_PLANNED_UNITS
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


@dataclass(slots=True)  # one per experiment: plain slots are quicker to make
class ExperimentCells:
    """One experiment's inputs: variant -> units (ints >= 0), statistics, correction,
    and the units (all variants) its sequential tests are tuned to."""

    experiment: Experiment
    units: Mapping[str, int]
    stats: StatsByCell
    correction: Correction
    metric_sums: SumsByMetric = field(default_factory=dict)
    #: Metric name -> where its ``metric_sums`` came from; "replay" when not given.
    sums_source: Mapping[str, SumsSource] = field(default_factory=dict)
    planned_units: float = DEFAULT_PLANNED_UNITS


@dataclass(frozen=True)
class AnalysisOptions:
    alpha: float
    power: float
    scale: Scale = "relative"


MISSING_SUMS_CODE = "metric_not_computed"


@dataclass(frozen=True)
class _Cells:
    """Every cell (experiment, metric, treatment) as parallel columns. Each experiment's
    cells are contiguous and in scorecard order (``ranges``); experiments sharing one
    ``Experiment`` object are gathered together, as one block."""

    experiment: npt.NDArray[np.int64]
    metric: list[MetricDefinition]
    control: list[str]
    treatment: list[str]
    control_units: list[int]
    treatment_units: list[int]
    #: How each cell is analysed: conversion, mean, ratio or cuped.
    kind: list[str]
    #: Why a cell has no figures before any test runs (its metric was never replayed).
    missing: list[str | None]
    #: Where each cell's sums came from; None when they are missing.
    source: list[SumsSource | None]
    #: Per cell the control's then the treatment's ``_SUMS`` (``_ARM`` columns each).
    arms: npt.NDArray[np.float64]
    #: Per cell the units (both arms) its sequential test is tuned to.
    planned: npt.NDArray[np.float64]
    #: Per cell its correction family: (experiment, metric role) numbered from 0.
    family: npt.NDArray[np.int64]
    #: Per experiment (input order), the (start, end) of its cells.
    ranges: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.metric)


@dataclass(slots=True)
class StopSignals:
    """What the sequential tests say about stopping one experiment."""

    #: Guardrails whose always-valid test decided, and for the worse.
    harmful: list[str]
    #: Primary metrics (sorted, once each) whose always-valid test has not decided.
    undecided: list[str]
    has_primary: bool


def metric_comparisons(
    experiments: Sequence[ExperimentCells], options: AnalysisOptions
) -> tuple[list[list[dict[str, Any]]], list[StopSignals]]:
    """Per experiment, its ``MetricComparison`` dicts in (metric, treatment) order, and
    its ``StopSignals``.

    A missing statistics entry means no unit did that event: Σx = Σx² = 0.
    """
    cells = _gather(experiments)
    figures = _analyse(cells, options)
    _adjust(cells, figures, experiments, options)
    comparisons = _comparisons(cells, figures, options)
    return [comparisons[start:end] for start, end in cells.ranges], _stop_signals(cells, figures)


def _stop_signals(cells: _Cells, f: dict[str, Any]) -> list[StopSignals]:
    """Per experiment, from per-cell arrays; names are only gathered where flagged."""
    size = len(cells)
    roles = np.array([_ROLES[metric.role] for metric in cells.metric], dtype=np.int64)
    decided = np.zeros(size, dtype=bool)
    tested = ~(f["sequential_p"][1] | f["mixing_variance"][1])
    if size:
        decided = np.array(f["may_stop"], dtype=bool) & tested
    worse = f["worse_chance"] & decided
    harmful = (roles == _ROLES["guardrail"]) & worse
    primary = roles == _ROLES["primary"]
    undecided = primary & ~decided
    flagged = (harmful | undecided).tolist()
    primary_list = primary.tolist()
    signals = []
    for start, end in cells.ranges:
        names = cells.metric
        if not any(flagged[start:end]):
            signals.append(StopSignals([], [], any(primary_list[start:end])))
            continue
        signals.append(
            StopSignals(
                [names[i].name for i in range(start, end) if harmful[i]],
                sorted({names[i].name for i in range(start, end) if undecided[i]}),
                any(primary_list[start:end]),
            )
        )
    return signals


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


_ROLES = {"primary": 0, "secondary": 1, "guardrail": 2}
_NOTHING = (0.0, 0.0)


@dataclass
class _Block:
    """Some experiments' cells, as columns (``_Cells`` without ``ranges``)."""

    experiment: npt.NDArray[np.int64]
    metric: list[MetricDefinition]
    control: list[str]
    treatment: list[str]
    control_units: list[int]
    treatment_units: list[int]
    kind: list[str]
    missing: list[str | None]
    source: list[SumsSource | None]
    arms: npt.NDArray[np.float64]
    planned: npt.NDArray[np.float64]
    family: npt.NDArray[np.int64]


def _gather(experiments: Sequence[ExperimentCells]) -> _Cells:
    """Every cell with its arms. Experiments that share an ``Experiment`` object and need
    no replayed sums are gathered in one block with array operations; the others one by
    one."""
    groups: dict[int, list[int]] = {}
    singles: list[int] = []
    for index, item in enumerate(experiments):
        if any(metric.needs_replay for metric in item.experiment.metrics):
            singles.append(index)
        else:
            groups.setdefault(id(item.experiment), []).append(index)
    blocks = [_shared_block(experiments, members) for members in groups.values()]
    blocks.extend(_single_block(experiments[index], index) for index in singles)
    ranges: list[tuple[int, int]] = [(0, 0)] * len(experiments)
    start = 0
    for block in blocks:
        per = len(block.metric) // max(1, len(set(block.experiment.tolist())))
        for position, index in enumerate(dict.fromkeys(block.experiment.tolist())):
            ranges[index] = (start + position * per, start + (position + 1) * per)
        start += len(block.metric)
    if not blocks:
        empty = np.zeros(0)
        return _Cells(
            empty.astype(np.int64), [], [], [], [], [], [], [], [],
            np.zeros((0, 2 * _ARM)), empty, empty.astype(np.int64), ranges,
        )  # fmt: skip

    def joined(name: str) -> list[Any]:
        return [value for block in blocks for value in getattr(block, name)]

    return _Cells(
        np.concatenate([block.experiment for block in blocks]),
        joined("metric"),
        joined("control"),
        joined("treatment"),
        joined("control_units"),
        joined("treatment_units"),
        joined("kind"),
        joined("missing"),
        joined("source"),
        np.concatenate([block.arms for block in blocks]),
        np.concatenate([block.planned for block in blocks]),
        np.concatenate([block.family for block in blocks]),
        ranges,
    )


def _shares(item: ExperimentCells) -> list[float]:
    """Per treatment, the share of the planned units its comparison (with the control) has."""
    weights = item.experiment.variant_weights()
    total = sum(weights.values())
    control = weights[item.experiment.control_key]
    return [(control + weights[key]) / total for key in item.experiment.treatment_keys]


def _shared_block(experiments: Sequence[ExperimentCells], members: list[int]) -> _Block:
    """The cells of experiments sharing one ``Experiment`` whose metrics the stream keeps
    per event: one dict lookup per (experiment, variant, metric), the rest on arrays."""
    first = experiments[members[0]]
    experiment = first.experiment
    control, treatments = experiment.control_key, experiment.treatment_keys
    variants = [control, *treatments]
    metrics = experiment.metrics
    keys = [(variant, m.event, m.type) for m in metrics for variant in variants]
    size, n_v, n_m, n_t = len(members), len(variants), len(metrics), len(treatments)
    items = [experiments[index] for index in members]
    units = np.array(
        [item.units.get(variant, 0) for item in items for variant in variants], dtype=np.float64
    ).reshape(size, n_v)
    # One flat run of floats: far quicker for numpy than nested lists of pairs.
    pairs = [item.stats.get(key, _NOTHING) for item in items for key in keys]
    sums = np.fromiter(
        itertools.chain.from_iterable(pairs), dtype=np.float64, count=2 * len(pairs)
    ).reshape(size, n_m, n_v, 2)
    arms = np.zeros((size, n_m, n_t, 2 * _ARM))
    arms[..., 0] = units[:, np.newaxis, :1]
    arms[..., 1:3] = sums[:, :, :1, :]
    arms[..., _ARM] = units[:, np.newaxis, 1:]
    arms[..., _ARM + 1 : _ARM + 3] = sums[:, :, 1:, :]
    shares = np.array(_shares(first))
    planned = np.array([item.planned_units for item in items])[:, None, None] * shares
    roles = np.array([_ROLES[m.role] for m in metrics])
    family = 3 * np.array(members)[:, None, None] + roles[None, :, None]
    per_metric = [m for m in metrics for _ in treatments]
    count = size * n_m * n_t
    unit_rows = units.astype(np.int64)
    return _Block(
        experiment=np.repeat(np.array(members, dtype=np.int64), n_m * n_t),
        metric=per_metric * size,
        control=[control] * count,
        treatment=treatments * (size * n_m),
        control_units=np.repeat(unit_rows[:, 0], n_m * n_t).tolist(),
        treatment_units=np.tile(unit_rows[:, 1:], (1, n_m)).ravel().tolist(),
        kind=[_kind(m) for m in per_metric] * size,
        missing=[None] * count,
        source=["stream"] * count,
        arms=arms.reshape(count, 2 * _ARM),
        planned=np.broadcast_to(planned, (size, n_m, n_t)).ravel().copy(),
        family=np.broadcast_to(family, (size, n_m, n_t)).ravel().astype(np.int64),
    )


def _single_block(item: ExperimentCells, index: int) -> _Block:
    """One experiment's cells, metric by metric (any metric, replayed ones included)."""
    experiment = item.experiment
    control = experiment.control_key
    treatments = experiment.treatment_keys
    planned = [item.planned_units * share for share in _shares(item)]
    rows: list[tuple[Any, ...]] = []
    for metric in experiment.metrics:
        arms, units, missing, source = _metric_arms(item, metric, [control, *treatments])
        kind = _kind(metric)
        family = 3 * index + _ROLES[metric.role]
        for position, treatment in enumerate(treatments, start=1):
            rows.append(
                (
                    metric,
                    treatment,
                    units[0],
                    units[position],
                    kind,
                    missing,
                    source,
                    (*arms[0], *arms[position]),
                    planned[position - 1],
                    family,
                )
            )
    columns = list(zip(*rows, strict=True))
    return _Block(
        experiment=np.full(len(rows), index, dtype=np.int64),
        metric=list(columns[0]),
        control=[control] * len(rows),
        treatment=list(columns[1]),
        control_units=list(columns[2]),
        treatment_units=list(columns[3]),
        kind=list(columns[4]),
        missing=list(columns[5]),
        source=list(columns[6]),
        arms=np.array(columns[7], dtype=np.float64).reshape(len(rows), 2 * _ARM),
        planned=np.array(columns[8], dtype=np.float64),
        family=np.array(columns[9], dtype=np.int64),
    )


def _analyse(cells: _Cells, options: AnalysisOptions) -> dict[str, Any]:
    """One vectorised analysis per kind of metric; per figure a numpy column (data, mask)
    or a list of labels, in cell order."""
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
        analysis = analyse(  # type: ignore[operator]
            control,
            treatment,
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


Masked = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]


def _columns(
    size: int, groups: list[tuple[npt.NDArray[np.intp], CellAnalysis]], scale: Scale
) -> dict[str, Any]:
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


def _adjust(
    cells: _Cells,
    figures: dict[str, Any],
    experiments: Sequence[ExperimentCells],
    options: AnalysisOptions,
) -> None:
    """Adjusted p-values and intervals on the scale, per family by its correction."""
    p_data, p_missing = figures["p_value"]
    size = p_data.size
    chosen = [item.correction for item in experiments]
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
    cells: _Cells, figures: dict[str, Any], alpha: npt.NDArray[np.float64], scale: Scale
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each cell's interval at its own ``alpha``, made the way its unadjusted one is."""
    se = figures["standard_error"][0]
    dof = figures["dof"][0]
    with np.errstate(all="ignore"):
        if scale == "relative":
            estimate = figures["relative"][0]
            half = special.stdtrit(dof, 1.0 - alpha / 2.0) * se
            return estimate - half, estimate + half
        estimate = figures["difference"][0]
        method = np.array(figures["interval_method"], dtype=object)
        t_based = (method == "welch_t") | (method == "cuped_welch_t")
        quantile = np.where(
            t_based, special.stdtrit(dof, 1.0 - alpha / 2.0), special.ndtri(1.0 - alpha / 2.0)
        )
        low, high = estimate - quantile * se, estimate + quantile * se
        newcombe = np.flatnonzero(method == "newcombe")
        if newcombe.size:
            arms = cells.arms[newcombe]
            low[newcombe], high[newcombe] = newcombe_bounds(
                arms[:, 0], arms[:, 1], arms[:, _ARM], arms[:, _ARM + 1], alpha[newcombe]
            )
    return low, high


def _values(column: Masked) -> Column:
    """A (data, mask) column as Python floats, None where masked."""
    data, mask = column
    values: Column = data.tolist()
    for index in np.flatnonzero(mask).tolist():
        values[index] = None
    return values


def _intervals(*columns: Masked) -> list[dict[str, float] | None]:
    """``Interval`` dicts from (estimate, low, high) columns; None where any is masked."""
    (estimate, m1), (low, m2), (high, m3) = columns
    absent = m1 | m2 | m3
    if 4 * np.count_nonzero(absent) > absent.size:  # mostly missing (arm intervals): by index
        result: list[dict[str, float] | None] = [None] * absent.size
        present = np.flatnonzero(~absent)
        for index, e, lo, hi in zip(
            present.tolist(),
            estimate[present].tolist(),
            low[present].tolist(),
            high[present].tolist(),
            strict=True,
        ):
            result[index] = {"estimate": e, "ci_low": lo, "ci_high": hi}
        return result
    missing = absent.tolist()
    return [
        None if absent else {"estimate": e, "ci_low": lo, "ci_high": hi}
        for e, lo, hi, absent in zip(
            estimate.tolist(), low.tolist(), high.tolist(), missing, strict=True
        )
    ]


def _comparisons(
    cells: _Cells, f: dict[str, Any], options: AnalysisOptions
) -> list[dict[str, Any]]:
    """The ``MetricComparison`` dict of every cell, built column by column."""
    alpha, scale = options.alpha, options.scale
    controls = _arms(cells.control, cells.control_units, f["control_mean"], f, "control_rate")
    treatments = _arms(
        cells.treatment, cells.treatment_units, f["treatment_mean"], f, "treatment_rate"
    )
    absolute = _intervals(f["difference"], f["difference_low"], f["difference_high"])
    relative = _intervals(f["relative"], f["relative_low"], f["relative_high"])
    headline = f["relative"] if scale == "relative" else f["difference"]
    adjusted_effects = _intervals(headline, f["adjusted_low"], f["adjusted_high"])
    sequences = _intervals(headline, f["sequential_low"], f["sequential_high"])
    sequential_missing = (f["sequential_p"][1] | f["mixing_variance"][1]).tolist()
    sequential = [
        None
        if absent or sequence is None
        else {
            "p_value": p,
            "confidence_sequence": sequence,
            "mixing_variance": tau2,
            "planned_units": planned,
            "may_stop": may_stop,
        }
        for p, sequence, tau2, planned, may_stop, absent in zip(
            f["sequential_p"][0].tolist(),
            sequences,
            f["mixing_variance"][0].tolist(),
            f["planned_units"],
            f["may_stop"],
            sequential_missing,
            strict=True,
        )
    ]
    bayesian = _bayesian(cells, f)
    adjusted_p = _values(f["adjusted_p_value"])
    significant_array = (f["adjusted_p_value"][0] < alpha) & ~f["adjusted_p_value"][1]
    significant = significant_array.tolist()
    distinct = {id(m): m for m in cells.metric}
    described = {key: _described(m) for key, m in distinct.items()}
    metric_rows = [described[id(m)] for m in cells.metric]
    increase = np.array([row[-1] for row in metric_rows], dtype=bool)
    verdicts = _verdicts(f["p_value"][1] | headline[1], headline[0], increase, significant_array)
    theta_missing = f["cuped_theta"][1]
    if theta_missing.all():
        cuped: list[dict[str, Any] | None] = [None] * len(cells)
    else:
        cuped = [
            None
            if theta is None
            else {
                "theta": theta,
                "variance_reduction": reduction,
                "lookback_days": metric.cuped_lookback_days,
            }
            for theta, reduction, metric in zip(
                _values(f["cuped_theta"]),
                _values(f["variance_reduction"]),
                cells.metric,
                strict=True,
            )
        ]
    return [
        {
            "metric": name,
            "event": event,
            "aggregation": aggregation,
            "role": role,
            "direction": direction,
            "test": test,
            "scale": scale,
            "control": control,
            "treatment": treatment,
            "absolute_effect": absolute_effect,
            "relative_effect": relative_effect,
            "p_value": p_value,
            "significant": is_significant,
            "verdict": verdict,
            "reason": reason,
            "reason_code": reason_code,
            "interval_method": interval_method,
            "adjusted_p_value": adjusted_p_value,
            "adjusted_effect": adjusted_effect,
            "adjusted_confidence_level": adjusted_level,
            "sequential": sequential_result,
            "bayesian": bayesian_result,
            "detectable_effect": detectable,
            "cuped": cuped_summary,
            "source": source,
        }
        for (
            (name, event, aggregation, role, direction, _),
            test,
            control,
            treatment,
            absolute_effect,
            relative_effect,
            p_value,
            is_significant,
            verdict,
            reason,
            reason_code,
            interval_method,
            adjusted_p_value,
            adjusted_effect,
            adjusted_level,
            sequential_result,
            bayesian_result,
            detectable,
            cuped_summary,
            source,
        ) in zip(
            metric_rows,
            f["test"],
            controls,
            treatments,
            absolute,
            relative,
            _values(f["p_value"]),
            significant,
            verdicts,
            f["reason"],
            f["reason_code"],
            f["interval_method"],
            adjusted_p,
            adjusted_effects,
            _values(f["adjusted_level"]),
            sequential,
            bayesian,
            _values(f["detectable_effect"]),
            cuped,
            cells.source,
            strict=True,
        )
    ]


def _arms(
    keys: list[str], units: list[Any], means: Masked, f: dict[str, Any], rate: str
) -> list[dict[str, Any]]:
    """Each cell's ``ArmSummary`` dict for one side; conversions carry the rate's interval."""
    intervals = _intervals(f[rate], f[f"{rate}_low"], f[f"{rate}_high"])
    return [
        {"variant_key": key, "units": count, "mean": mean, "mean_ci": interval}
        for key, count, mean, interval in zip(keys, units, _values(means), intervals, strict=True)
    ]


def _bayesian(cells: _Cells, f: dict[str, Any]) -> list[dict[str, Any] | None]:
    """``BayesianResult`` dicts in each metric's better direction (lower wins: swapped)."""
    (chance, m1), (ship, m2), (keep, m3) = f["chance"], f["loss_treatment"], f["loss_control"]
    lower_wins = np.array([metric.direction == "decrease" for metric in cells.metric], dtype=bool)
    chance = np.where(lower_wins, 1.0 - chance, chance)
    ship, keep = np.where(lower_wins, keep, ship), np.where(lower_wins, ship, keep)
    absent = m1 | m2 | m3
    f["worse_chance"] = ~absent & (chance < 0.5)  # for the stopping advice
    missing = absent.tolist()
    return [
        None
        if absent
        else {
            "prior": prior,
            "chance_to_beat_control": c,
            "expected_loss_ship": s,
            "expected_loss_keep": k,
        }
        for prior, c, s, k, absent in zip(
            f["prior"], chance.tolist(), ship.tolist(), keep.tolist(), missing, strict=True
        )
    ]


def _described(metric: MetricDefinition) -> tuple[str, str, str, str, str, bool]:
    """A metric's fields as the comparison shows them, and whether higher is better."""
    direction = metric.direction
    return (
        metric.name,
        metric.event,
        metric.type.value,
        metric.role,
        direction,
        direction == "increase",
    )


def _verdicts(
    untestable: npt.NDArray[np.bool_],
    estimate: npt.NDArray[np.float64],
    increase_wins: npt.NDArray[np.bool_],
    significant: npt.NDArray[np.bool_],
) -> Column:
    """Per cell: better or worse (significant, in or against the metric's direction),
    inconclusive, or not_computable (no p-value or estimate)."""
    better = (estimate > 0) == increase_wins
    verdict = np.where(better, "better", "worse").astype(object)
    verdict[~significant | (estimate == 0)] = "inconclusive"
    verdict[untestable] = "not_computable"
    return verdict.tolist()
