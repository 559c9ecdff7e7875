"""What a scorecard is built from: one ``ScorecardInput`` per experiment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from analytics.stats.multiple import Correction
from analytics.unit_metrics import VariantSums
from schemas.experiment import Aggregation, Experiment

#: (variant, event, aggregation) -> (Σx, Σx²) summed over the stream's partitions.
StatsByCell = Mapping[tuple[str, str, Aggregation], tuple[float, float]]
#: (variant, metric name) -> that metric's sums, for metrics beyond per-event sums.
SumsByMetric = Mapping[tuple[str, str], VariantSums]
#: Where a metric's figures came from: the stream's live aggregates or a replay.
SumsSource = Literal["stream", "replay"]


@dataclass(frozen=True, slots=True)
class ScorecardInput:
    """One experiment to score.

    ``units`` maps variant -> units exposed (n); ``stats`` maps (variant, event,
    aggregation) -> (Σx, Σx²); a missing entry means no unit did that event.
    ``correction`` overrides the experiment's own. ``metric_sums`` maps (variant, metric
    name) -> sums, used for metrics beyond per-event sums (``needs_replay``);
    ``sums_source`` says per metric name whether they are the stream's or a replay's
    ("replay" when not given).
    """

    tenant_id: str
    experiment: Experiment
    units: Mapping[str, int]
    stats: StatsByCell
    excluded_units: int = 0
    correction: Correction | None = None
    metric_sums: SumsByMetric = field(default_factory=dict)
    sums_source: Mapping[str, SumsSource] = field(default_factory=dict)

    @property
    def chosen_correction(self) -> Correction:
        """The correction its comparisons get: the override, else the experiment's."""
        return self.correction or self.experiment.correction
