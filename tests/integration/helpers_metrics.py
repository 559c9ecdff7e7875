"""Events with known metric values, and those values computed straight from the events,
for the tests of defined metrics (replay from the raw log, and live in the stream)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.control import ExperimentDefined
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment, MetricDefinition

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RATIO = {
    "name": "revenue_per_session",
    "type": "ratio",
    "numerator": {"event": "purchase", "type": "sum"},
    "denominator": {"event": "session_start", "type": "count"},
}
ORDERS_24H = {"name": "orders_24h", "event": "purchase", "type": "count", "window_hours": 24}


def experiment_defined(version: int, *metrics: dict[str, Any]) -> ExperimentDefined:
    experiment = Experiment.model_validate(
        {
            "key": "checkout",
            "version": version,
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [{"name": "buyers", "event": "purchase", "type": "conversion"}, *metrics],
        }
    )
    return ExperimentDefined(tenant_id="acme", author="ana", experiment=experiment)


Sent = tuple[list[ExposureEvent], list[OutcomeEvent]]


def metric_events(units: int = 80) -> Sent:
    rng = random.Random(5)
    exposures, outcomes = [], []
    for index in range(units):
        unit = f"user-{index}"
        first = START + timedelta(minutes=rng.randrange(0, 600))
        variant = "treatment" if index % 2 else "control"
        exposures.append(
            ExposureEvent(
                tenant_id="acme",
                unit_id=unit,
                timestamp=first,
                experiment_key="checkout",
                variant_key=variant,
            )
        )
        if index % 25 == 0:  # saw both variants: excluded from the experiment
            exposures.append(
                ExposureEvent(
                    tenant_id="acme",
                    unit_id=unit,
                    timestamp=first + timedelta(minutes=5),
                    experiment_key="checkout",
                    variant_key="control" if index % 2 else "treatment",
                )
            )
        for _ in range(rng.randrange(1, 5)):
            outcomes.append(
                OutcomeEvent(
                    # Two sessions may start in the same hour: distinct events, so distinct
                    # ids (an event without one gets an id derived from its content).
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    tenant_id="acme",
                    unit_id=unit,
                    event="session_start",
                    timestamp=first + timedelta(hours=rng.randrange(-2, 40)),
                )
            )
        for _ in range(rng.randrange(0, 4)):
            outcomes.append(
                OutcomeEvent(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    tenant_id="acme",
                    unit_id=unit,
                    event="purchase",
                    value=round(rng.uniform(5, 80), 2),
                    timestamp=first + timedelta(hours=rng.randrange(-2, 40)),
                )
            )
    return exposures, outcomes


def direct_sums(sent: Sent, metric: MetricDefinition) -> dict[str, tuple[float, ...]]:
    """Per variant (n, Σx, Σx², Σy, Σxy) computed straight from the events sent."""
    exposures, outcomes = sent
    seen: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for exposure in exposures:
        seen[exposure.unit_id].append((exposure.timestamp, exposure.variant_key))
    window = timedelta(hours=metric.window_hours) if metric.window_hours else None
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * 5)
    for unit, seen_by_unit in seen.items():
        if len({variant for _, variant in seen_by_unit}) > 1:
            continue
        first, variant = min(seen_by_unit)

        def part(event: str, kind: str, unit: str = unit, first: datetime = first) -> float:
            values = [
                o.value
                for o in outcomes
                if o.unit_id == unit
                and o.event == event
                and first <= o.timestamp
                and (window is None or o.timestamp < first + window)
            ]
            return float(sum(values)) if kind == "sum" else float(len(values))

        if metric.numerator is not None and metric.denominator is not None:
            x = part(metric.numerator.event, metric.numerator.type)
            y = part(metric.denominator.event, metric.denominator.type)
        else:
            x, y = part(metric.event, metric.type.value), 0.0
        for index, term in enumerate((1, x, x * x, y, x * y)):
            sums[variant][index] += term
    return {variant: tuple(values) for variant, values in sums.items()}
