"""The metric comparisons of many experiments' scorecards, built in one pass.

Every (experiment, metric, treatment) cell is gathered into columns
(``analytics.scorecard.cells``), analysed with one vectorised call per kind of metric
and corrected per family (``analytics.scorecard.figures``), and returned as the
``MetricComparisonDoc`` of a ``schemas.results.MetricComparison`` (plain str, int,
float, bool, None; never NaN). Arrays become Python lists once per column, so the
per-cell work left is building small dicts. Each experiment also gets its
``StopSignals``: what its sequential tests say about stopping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.scorecard.cells import ROLES, Cells, gather
from analytics.scorecard.documents import (
    ArmSummaryDoc,
    BayesianDoc,
    CupedDoc,
    IntervalDoc,
    MetricComparisonDoc,
    SequentialDoc,
)
from analytics.scorecard.figures import (
    AnalysisOptions,
    Column,
    Figures,
    Masked,
    adjust,
    analyse,
)
from analytics.scorecard.inputs import ScorecardInput
from analytics.scorecard.trust import StopSignals
from schemas.experiment import MetricDefinition


def metric_comparisons(
    inputs: Sequence[ScorecardInput],
    units: Sequence[Mapping[str, int]],
    planned_units: Sequence[float],
    options: AnalysisOptions,
) -> tuple[list[list[MetricComparisonDoc]], list[StopSignals]]:
    """Per experiment, its comparisons in (metric, treatment) order, and its
    ``StopSignals``. ``units`` are the inputs' units, checked; ``planned_units`` (all
    variants) tunes each experiment's sequential tests.

    A missing statistics entry means no unit did that event: Σx = Σx² = 0.
    """
    cells = gather(inputs, units, planned_units)
    figures = analyse(cells, options)
    adjust(cells, figures, inputs, options)
    comparisons = _comparisons(cells, figures, options)
    return [comparisons[start:end] for start, end in cells.ranges], _stop_signals(cells, figures)


def _stop_signals(cells: Cells, f: Figures) -> list[StopSignals]:
    """Per experiment, from per-cell arrays; names are only gathered where flagged."""
    size = len(cells)
    roles = np.array([ROLES[metric.role] for metric in cells.metric], dtype=np.int64)
    decided = np.zeros(size, dtype=bool)
    tested = ~(f["sequential_p"][1] | f["mixing_variance"][1])
    if size:
        decided = np.array(f["may_stop"], dtype=bool) & tested
    worse = f["worse_chance"] & decided
    harmful = (roles == ROLES["guardrail"]) & worse
    primary = roles == ROLES["primary"]
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


def _values(column: Masked) -> Column:
    """A (data, mask) column as Python floats, None where masked."""
    data, mask = column
    values: Column = data.tolist()
    for index in np.flatnonzero(mask).tolist():
        values[index] = None
    return values


def _intervals(*columns: Masked) -> list[IntervalDoc | None]:
    """``Interval`` dicts from (estimate, low, high) columns; None where any is masked."""
    (estimate, m1), (low, m2), (high, m3) = columns
    absent = m1 | m2 | m3
    if 4 * np.count_nonzero(absent) > absent.size:  # mostly missing (arm intervals): by index
        result: list[IntervalDoc | None] = [None] * absent.size
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


def _comparisons(cells: Cells, f: Figures, options: AnalysisOptions) -> list[MetricComparisonDoc]:
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
    sequential: list[SequentialDoc | None] = [
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
        cuped: list[CupedDoc | None] = [None] * len(cells)
    else:
        cuped = [
            None
            if theta is None or metric.cuped_lookback_days is None
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
    rows: list[MetricComparisonDoc] = [
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
    return rows


def _arms(
    keys: list[str], units: list[Any], means: Masked, f: Figures, rate: str
) -> list[ArmSummaryDoc]:
    """Each cell's ``ArmSummary`` dict for one side; conversions carry the rate's interval."""
    intervals = _intervals(f[rate], f[f"{rate}_low"], f[f"{rate}_high"])
    arms: list[ArmSummaryDoc] = [
        {"variant_key": key, "units": count, "mean": mean, "mean_ci": interval}
        for key, count, mean, interval in zip(keys, units, _values(means), intervals, strict=True)
    ]
    return arms


def _bayesian(cells: Cells, f: Figures) -> list[BayesianDoc | None]:
    """``BayesianResult`` dicts in each metric's better direction (lower wins: swapped)."""
    (chance, m1), (ship, m2), (keep, m3) = f["chance"], f["loss_treatment"], f["loss_control"]
    lower_wins = np.array([metric.direction == "decrease" for metric in cells.metric], dtype=bool)
    chance = np.where(lower_wins, 1.0 - chance, chance)
    ship, keep = np.where(lower_wins, keep, ship), np.where(lower_wins, ship, keep)
    absent = m1 | m2 | m3
    f["worse_chance"] = ~absent & (chance < 0.5)  # for the stopping advice
    missing = absent.tolist()
    documents: list[BayesianDoc | None] = [
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
    return documents


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
