"""Every (experiment, metric, treatment) cell of many scorecards, gathered into columns.

A cell compares one treatment with the control on one metric. Its arms' sums are kept
as ``ArmSums`` columns, named as ``analytics.unit_metrics.VariantSums`` names them, and
``named_arms`` turns them into the arms each test takes (``analytics.stats.arms``), by
name: nothing downstream indexes a sum by its position.

Metrics the stream keeps per event (plain conversion, count, sum) come from ``stats``;
the others (mean, ratio, capped, windowed or CUPED metrics, see
``MetricDefinition.needs_replay``) from ``metric_sums``, per-variant sums kept live by
the stream or replayed from the raw log (``analytics.replay``); ``sums_source`` says
which. Experiments sharing one ``Experiment`` object whose metrics the stream keeps are
gathered in one block with array operations (the common, large case); the others one by
one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from analytics.scorecard.inputs import ScorecardInput, SumsSource
from analytics.stats.arms import CupedArms, MeanArms, ProportionArms, RatioArms
from analytics.unit_metrics import VariantSums
from schemas.experiment import Aggregation, MetricDefinition

FloatArray = npt.NDArray[np.float64]
#: How a cell is analysed.
Kind = Literal["conversion", "mean", "ratio", "cuped"]
Arms = ProportionArms | MeanArms | RatioArms | CupedArms
ROLES = {"primary": 0, "secondary": 1, "guardrail": 2}


class ArmSums(NamedTuple):
    """One arm's sums, a column (one entry per cell) each: units, the metric x, the
    ratio's denominator y, and the CUPED covariate c (0 where a metric has none)."""

    n: FloatArray
    sum_x: FloatArray
    sum_xx: FloatArray
    sum_y: FloatArray
    sum_yy: FloatArray
    sum_xy: FloatArray
    sum_c: FloatArray
    sum_cc: FloatArray
    sum_xc: FloatArray


_WIDTH = len(ArmSums._fields)
_COLUMN = {name: index for index, name in enumerate(ArmSums._fields)}
_CONTROL, _TREATMENT = 0, 1


def named_arms(kind: Kind, sums: ArmSums) -> Arms:
    """The arms the ``kind`` of test takes, from one side's sums."""
    if kind == "conversion":
        return ProportionArms(n=sums.n, sum=sums.sum_x)
    metric = MeanArms(n=sums.n, sum=sums.sum_x, sum_squares=sums.sum_xx)
    if kind == "mean":
        return metric
    if kind == "ratio":
        denominator = MeanArms(n=sums.n, sum=sums.sum_y, sum_squares=sums.sum_yy)
        return RatioArms(numerator=metric, denominator=denominator, cross=sums.sum_xy)
    covariate = MeanArms(n=sums.n, sum=sums.sum_c, sum_squares=sums.sum_cc)
    return CupedArms(post=metric, pre=covariate, cross=sums.sum_xc)


@dataclass(frozen=True)
class _Block:
    """Some experiments' cells, as parallel columns (``Cells`` without ``ranges``)."""

    experiment: npt.NDArray[np.int64]
    metric: list[MetricDefinition]
    control: list[str]
    treatment: list[str]
    control_units: list[int]
    treatment_units: list[int]
    kind: list[Kind]
    #: Why a cell has no figures before any test runs (its metric was never replayed).
    missing: list[str | None]
    #: Where each cell's sums came from; None when they are missing.
    source: list[SumsSource | None]
    #: Per cell, the control's and the treatment's sums: shape (cells, 2, ArmSums).
    sums: FloatArray
    #: Per cell the units (both arms) its sequential test is tuned to.
    planned: FloatArray
    #: Per cell its correction family: (experiment, metric role) numbered from 0.
    family: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Cells(_Block):
    """Every cell as parallel columns. Each experiment's cells are contiguous and in
    scorecard order (``ranges``); experiments sharing one ``Experiment`` object are
    gathered together, as one block."""

    #: Per experiment (input order), the (start, end) of its cells.
    ranges: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.metric)

    @cached_property
    def _by_field(self) -> FloatArray:
        """``sums`` as (side, field, cell), each field's column contiguous."""
        return np.ascontiguousarray(self.sums.transpose(1, 2, 0))

    def arm_sums(self, indices: npt.NDArray[np.intp], side: int) -> ArmSums:
        """The sums of the control (side 0) or the treatment (1) of the cells at
        ``indices``."""
        return ArmSums(*self._by_field[side][:, indices])


def kind_of(metric: MetricDefinition) -> Kind:
    if metric.is_ratio:
        return "ratio"
    if metric.cuped_lookback_days is not None:
        return "cuped"
    return "conversion" if metric.type is Aggregation.CONVERSION else "mean"


def _sums(sums: VariantSums | None) -> list[float]:
    """A variant's sums in ``ArmSums`` order, read by name (all 0 when absent)."""
    if sums is None:
        return [0.0] * _WIDTH
    return [float(getattr(sums, name)) for name in ArmSums._fields]


def _missing_reason(metric: MetricDefinition) -> str:
    replay = f"run `liftstream replay --metric {metric.name}` to compute it"
    if metric.kept_live:
        return f"metric '{metric.name}' has no stream sums for its definition yet: {replay}"
    return f"metric '{metric.name}' is not kept by the stream (percentile cap): {replay}"


def _stream_sums(n: int, total: float, total_sq: float) -> list[float]:
    sums = [0.0] * _WIDTH
    sums[_COLUMN["n"]], sums[_COLUMN["sum_x"]], sums[_COLUMN["sum_xx"]] = n, total, total_sq
    return sums


def _metric_arms(
    item: ScorecardInput, units: Mapping[str, int], metric: MetricDefinition, variants: list[str]
) -> tuple[list[list[float]], list[int], str | None, SumsSource | None]:
    """Each variant's sums and units for ``metric``, why they are missing if so, and
    where they came from."""
    counts = [units.get(variant, 0) for variant in variants]
    if not metric.needs_replay:
        nothing = (0.0, 0.0)
        arms = []
        for variant, n in zip(variants, counts, strict=True):
            total, total_sq = item.stats.get((variant, metric.event, metric.type), nothing)
            arms.append(_stream_sums(n, total, total_sq))
        return arms, counts, None, "stream"
    found = [item.metric_sums.get((variant, metric.name)) for variant in variants]
    if any(sums is None for sums in found):
        return [_sums(None) for _ in variants], counts, _missing_reason(metric), None
    arms = [_sums(sums) for sums in found]
    source = item.sums_source.get(metric.name, "replay")
    return arms, [sums.n for sums in found if sums is not None], None, source


_NOTHING = (0.0, 0.0)


def gather(
    inputs: Sequence[ScorecardInput],
    units: Sequence[Mapping[str, int]],
    planned_units: Sequence[float],
) -> Cells:
    """Every cell with its sums; ``units`` are the inputs' units checked, and
    ``planned_units`` (all variants) what each experiment's sequential tests are tuned to."""
    groups: dict[int, list[int]] = {}
    singles: list[int] = []
    replayed: dict[int, bool] = {}  # per Experiment object: does a metric need replay?
    for index, item in enumerate(inputs):
        key = id(item.experiment)
        needs_replay = replayed.get(key)
        if needs_replay is None:
            metrics = item.experiment.metrics
            needs_replay = replayed[key] = any(metric.needs_replay for metric in metrics)
        if needs_replay:
            singles.append(index)
        else:
            groups.setdefault(key, []).append(index)
    blocks = [_shared_block(inputs, units, planned_units, members) for members in groups.values()]
    blocks.extend(
        _single_block(inputs[index], units[index], planned_units[index], index) for index in singles
    )
    ranges: list[tuple[int, int]] = [(0, 0)] * len(inputs)
    start = 0
    for block in blocks:
        per = len(block.metric) // max(1, len(set(block.experiment.tolist())))
        for position, index in enumerate(dict.fromkeys(block.experiment.tolist())):
            ranges[index] = (start + position * per, start + (position + 1) * per)
        start += len(block.metric)
    if not blocks:
        empty = np.zeros(0)
        return Cells(
            empty.astype(np.int64), [], [], [], [], [], [], [], [],
            np.zeros((0, 2, _WIDTH)), empty, empty.astype(np.int64), ranges,
        )  # fmt: skip

    def joined(name: str) -> list[Any]:
        return [value for block in blocks for value in getattr(block, name)]

    return Cells(
        np.concatenate([block.experiment for block in blocks]),
        joined("metric"),
        joined("control"),
        joined("treatment"),
        joined("control_units"),
        joined("treatment_units"),
        joined("kind"),
        joined("missing"),
        joined("source"),
        np.concatenate([block.sums for block in blocks]),
        np.concatenate([block.planned for block in blocks]),
        np.concatenate([block.family for block in blocks]),
        ranges,
    )


def _shares(item: ScorecardInput) -> list[float]:
    """Per treatment, the share of the planned units its comparison (with the control) has."""
    weights = item.experiment.variant_weights()
    total = sum(weights.values())
    control = weights[item.experiment.control_key]
    return [(control + weights[key]) / total for key in item.experiment.treatment_keys]


def _shared_block(
    inputs: Sequence[ScorecardInput],
    units_of: Sequence[Mapping[str, int]],
    planned_units: Sequence[float],
    members: list[int],
) -> _Block:
    """The cells of experiments sharing one ``Experiment`` whose metrics the stream keeps
    per event: one dict lookup per (experiment, variant, metric), the rest on arrays."""
    first = inputs[members[0]]
    experiment = first.experiment
    control, treatments = experiment.control_key, experiment.treatment_keys
    variants = [control, *treatments]
    metrics = experiment.metrics
    keys = [(variant, m.event, m.type) for m in metrics for variant in variants]
    size, n_v, n_m, n_t = len(members), len(variants), len(metrics), len(treatments)
    units = np.array(
        [units_of[index].get(variant, 0) for index in members for variant in variants],
        dtype=np.float64,
    ).reshape(size, n_v)
    # One flat run of floats: far quicker for numpy than nested lists of pairs.
    stats = [inputs[index].stats for index in members]
    pairs = [cell_stats.get(key, _NOTHING) for cell_stats in stats for key in keys]
    totals = np.fromiter(
        itertools.chain.from_iterable(pairs), dtype=np.float64, count=2 * len(pairs)
    ).reshape(size, n_m, n_v, 2)
    sums = np.zeros((size, n_m, n_t, 2, _WIDTH))
    n, x, xx = _COLUMN["n"], _COLUMN["sum_x"], _COLUMN["sum_xx"]
    sums[..., _CONTROL, n] = units[:, np.newaxis, :1]
    sums[..., _TREATMENT, n] = units[:, np.newaxis, 1:]
    sums[..., _CONTROL, x] = totals[:, :, :1, 0]
    sums[..., _CONTROL, xx] = totals[:, :, :1, 1]
    sums[..., _TREATMENT, x] = totals[:, :, 1:, 0]
    sums[..., _TREATMENT, xx] = totals[:, :, 1:, 1]
    shares = np.array(_shares(first))
    planned = np.array([planned_units[index] for index in members])[:, None, None] * shares
    roles = np.array([ROLES[m.role] for m in metrics])
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
        kind=[kind_of(m) for m in per_metric] * size,
        missing=[None] * count,
        source=["stream"] * count,
        sums=sums.reshape(count, 2, _WIDTH),
        planned=np.broadcast_to(planned, (size, n_m, n_t)).ravel().copy(),
        family=np.broadcast_to(family, (size, n_m, n_t)).ravel().astype(np.int64),
    )


def _single_block(
    item: ScorecardInput, units: Mapping[str, int], planned_units: float, index: int
) -> _Block:
    """One experiment's cells, metric by metric (any metric, replayed ones included)."""
    experiment = item.experiment
    control = experiment.control_key
    treatments = experiment.treatment_keys
    planned = [planned_units * share for share in _shares(item)]
    metrics: list[MetricDefinition] = []
    treatment_column: list[str] = []
    control_units: list[int] = []
    treatment_units: list[int] = []
    kinds: list[Kind] = []
    missing_column: list[str | None] = []
    sources: list[SumsSource | None] = []
    sums: list[list[list[float]]] = []
    planned_cells: list[float] = []
    families: list[int] = []
    for metric in experiment.metrics:
        arms, counts, missing, source = _metric_arms(item, units, metric, [control, *treatments])
        kind = kind_of(metric)
        for position, treatment in enumerate(treatments, start=1):
            metrics.append(metric)
            treatment_column.append(treatment)
            control_units.append(counts[0])
            treatment_units.append(counts[position])
            kinds.append(kind)
            missing_column.append(missing)
            sources.append(source)
            sums.append([arms[0], arms[position]])
            planned_cells.append(planned[position - 1])
            families.append(3 * index + ROLES[metric.role])
    count = len(metrics)
    return _Block(
        experiment=np.full(count, index, dtype=np.int64),
        metric=metrics,
        control=[control] * count,
        treatment=treatment_column,
        control_units=control_units,
        treatment_units=treatment_units,
        kind=kinds,
        missing=missing_column,
        source=sources,
        sums=np.array(sums, dtype=np.float64).reshape(count, 2, _WIDTH),
        planned=np.array(planned_cells, dtype=np.float64),
        family=np.array(families, dtype=np.int64),
    )
