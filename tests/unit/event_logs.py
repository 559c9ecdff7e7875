"""A tricky event log for attribution tests (shared by the parity and compiled-stream
tests): events arriving late (an earlier exposure after a later one, outcomes before the
exposure they count for), re-delivered duplicates, an exposure tie between two variants,
units that saw several variants (on another day), outcomes exactly at and one microsecond
around the first exposure and a metric window's end, and other tenants' and experiments'
events. Values are exact in binary, so every sum is exact in any order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment

T0 = datetime(2026, 5, 4, tzinfo=UTC)
HOUR = timedelta(hours=1)
MICRO = timedelta(microseconds=1)
Event = ExposureEvent | OutcomeEvent

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "name": "Checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "control": "control",
        "metrics": [
            {"name": "converted", "event": "purchase", "type": "conversion", "role": "primary"},
            {"name": "revenue", "event": "purchase", "type": "sum"},
            {"name": "visits", "event": "visit", "type": "count"},
            {"name": "revenue_24h", "event": "purchase", "type": "sum", "window_hours": 24},
            {
                "name": "revenue_per_visit",
                "type": "ratio",
                "numerator": {"event": "purchase", "type": "sum"},
                "denominator": {"event": "visit", "type": "count"},
            },
        ],
    }
)
REPLAYED = [metric for metric in EXPERIMENT.metrics if metric.needs_replay]


def _exposure(unit: str, variant: str, at: datetime, **other: str) -> ExposureEvent:
    fields = {"tenant_id": "acme", "experiment_key": "checkout", **other}
    return ExposureEvent(unit_id=unit, timestamp=at, variant_key=variant, **fields)


def _outcome(unit: str, event: str, at: datetime, value: float = 1.0, **other: str) -> OutcomeEvent:
    return OutcomeEvent(
        tenant_id=other.get("tenant_id", "acme"),
        unit_id=unit,
        timestamp=at,
        event=event,
        value=value,
    )


def tricky_log(seed: int = 5) -> list[Event]:
    """The log in arrival order (duplicates included)."""
    rng = random.Random(seed)
    arrivals: list[Event] = []
    for index in range(60):
        unit = f"u{index:02d}"
        variant = rng.choice(["control", "treatment"])
        first = T0 + timedelta(seconds=rng.randrange(3 * 86_400))
        events: list[Event] = [
            _exposure(unit, variant, first + HOUR * rng.randrange(40)) for _ in range(3)
        ]
        events += [
            _outcome(
                unit,
                rng.choice(["purchase", "visit"]),
                first + timedelta(minutes=rng.randrange(-600, 3 * 24 * 60)),
                rng.choice([0.5, 1.0, 2.25, 3.0]),
            )
            for _ in range(rng.randrange(7))
        ]
        rng.shuffle(events)  # late events: an earlier exposure may arrive last
        arrivals += events
    window = timedelta(hours=24)
    edge = T0 + 3 * HOUR
    arrivals += [
        # Outcomes before the exposure they count for arrive first.
        _outcome("late", "purchase", T0 + 5 * HOUR, 2.25),
        _exposure("late", "treatment", T0 + 10 * HOUR),
        _exposure("late", "treatment", T0 + 2 * HOUR),  # earlier, arriving later
        # A tie: the same moment in two variants; excluded under the smaller key.
        _exposure("tie", "treatment", T0 + 7 * HOUR),
        _exposure("tie", "control", T0 + 7 * HOUR),
        _outcome("tie", "purchase", T0 + 8 * HOUR, 3.0),
        # Two variants on different days: excluded from the second day on.
        _exposure("multi", "treatment", T0 + HOUR),
        _outcome("multi", "visit", T0 + 2 * HOUR),
        _exposure("multi", "control", T0 + 30 * HOUR),
        # Window edges: at the first exposure (counts), a microsecond before (not); a
        # microsecond before the window's end (counts in it), at its end (only unwindowed).
        _exposure("edge", "control", edge),
        _outcome("edge", "purchase", edge, 0.5),
        _outcome("edge", "purchase", edge - MICRO, 1.0),
        _outcome("edge", "purchase", edge + window - MICRO, 2.25),
        _outcome("edge", "purchase", edge + window, 3.0),
        _outcome("edge", "visit", edge + window),
        # Others' events: another experiment, another tenant.
        _exposure("u01", "a", T0, experiment_key="other"),
        _exposure("u02", "control", T0, tenant_id="globex"),
        _outcome("u02", "purchase", T0 + HOUR, 3.0, tenant_id="globex"),
    ]
    duplicates = rng.sample(arrivals, 40)  # re-deliveries, later: counted once
    return arrivals + duplicates
