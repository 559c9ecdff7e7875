"""An experiment's metric events: the outcome event names its metrics read."""

from __future__ import annotations

from schemas.experiment import Experiment


def metric_events(experiment: Experiment) -> list[str]:
    """Every event a metric of ``experiment`` reads (its ``event``, and a ratio's
    numerator and denominator events), sorted."""
    events = {metric.event for metric in experiment.metrics}
    for metric in experiment.metrics:
        events |= {part.event for part in (metric.numerator, metric.denominator) if part}
    return sorted(events)
