"""A large reproducible event log, its ground truth, and faulty orders to send it in.

``generate_log(events, seed)`` makes about ``events`` valid events over about
``events / 10`` units of three tenants: each unit sees some of three experiments (once or
several times, 6% of them a second variant, sometimes at the very same moment), and has
outcomes of four event names starting half an hour before its exposures, some exactly at
an exposure's timestamp. The ground truth is computed here, unit by unit, in plain
Python over the generated events: it imports nothing of ``services.stream`` on purpose.
Values are multiples of 0.25 with small magnitude, so every Σx and Σx² is exact in
floating point whatever the order of additions, and can be compared with ``==``.

The log's natural order is event time. ``with_faults`` re-sends a share of the events
later (same ``event_id``, same bytes) and moves another share later in the log, so
their timestamps are earlier than their neighbours'.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

Message = tuple[str, bytes, bytes]  # (event type, key, value); the type selects the topic
UnitsTruth = dict[tuple[str, str, str], tuple[int, int]]
StatsTruth = dict[tuple[str, str, str, str, str], tuple[float, float]]

TENANTS = ("acme", "globex", "initech")
EXPERIMENTS = {
    "checkout": ("control", "treatment"),
    "banner": ("a", "b", "c"),
    "pricing": ("high", "low"),
}
EPOCH = datetime(2024, 5, 1, tzinfo=UTC)
_SECOND = 1_000_000  # timestamps are whole microseconds since EPOCH


@dataclass(frozen=True)
class _Exposure:
    event_id: str
    micros: int
    experiment: str
    variant: str


@dataclass(frozen=True)
class _Outcome:
    event_id: str
    micros: int
    event: str
    value: float


def _outcome_value(rng: random.Random, event: str) -> float:
    if event == "purchase":
        return rng.randrange(0, 200) / 4  # 0 .. 49.75
    if event == "rating":
        return rng.randrange(-8, 9) / 4  # negative values too
    return 1.0


@dataclass
class EventLog:
    """Messages in event-time order and the aggregates they must produce."""

    messages: list[Message]
    units: UnitsTruth
    stats: StatsTruth
    unit_count: int


class _Truth:
    """Sums the contributions of units; the rules are those of the platform's design."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.stats: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(
            lambda: [0.0, 0.0]
        )

    def add_unit(self, tenant: str, exposures: list[_Exposure], outcomes: list[_Outcome]) -> None:
        by_experiment: dict[str, list[_Exposure]] = defaultdict(list)
        for exposure in exposures:
            by_experiment[exposure.experiment].append(exposure)
        for experiment, seen in by_experiment.items():
            # Earliest timestamp first; on a tie, the smaller variant key.
            first_micros, first_variant = min((e.micros, e.variant) for e in seen)
            if len({e.variant for e in seen}) > 1:
                self.units[(tenant, experiment, first_variant)][1] += 1
                continue
            self.units[(tenant, experiment, first_variant)][0] += 1
            values: dict[str, list[float]] = defaultdict(list)
            for outcome in outcomes:
                if outcome.micros >= first_micros:
                    values[outcome.event].append(outcome.value)
            for event, counted in values.items():
                for aggregation, x in (
                    ("conversion", 1.0),
                    ("count", float(len(counted))),
                    ("sum", sum(counted)),
                ):
                    pair = self.stats[(tenant, experiment, first_variant, event, aggregation)]
                    pair[0] += x
                    pair[1] += x * x


def _timestamp(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()


def _exposure_message(tenant: str, unit: str, exposure: _Exposure) -> bytes:
    return orjson.dumps(
        {
            "event_id": exposure.event_id,
            "tenant_id": tenant,
            "unit_id": unit,
            "timestamp": _timestamp(exposure.micros),
            "schema_version": 1,
            "type": "exposure",
            "experiment_key": exposure.experiment,
            "variant_key": exposure.variant,
        }
    )


def _outcome_message(tenant: str, unit: str, outcome: _Outcome) -> bytes:
    return orjson.dumps(
        {
            "event_id": outcome.event_id,
            "tenant_id": tenant,
            "unit_id": unit,
            "timestamp": _timestamp(outcome.micros),
            "schema_version": 1,
            "type": "outcome",
            "event": outcome.event,
            "value": outcome.value,
        }
    )


def _unit_exposures(
    rng: random.Random, new_id: Callable[[], uuid.UUID], start: int
) -> list[_Exposure]:
    exposures: list[_Exposure] = []
    for experiment, variants in EXPERIMENTS.items():
        if rng.random() < 0.5:
            continue
        first = rng.choice(variants)
        moments = [start + rng.randrange(3_600) * _SECOND for _ in range(rng.randint(1, 3))]
        shown = [(moment, first) for moment in moments]
        if rng.random() < 0.06:
            other = rng.choice([v for v in variants if v != first])
            # A third of them at the very moment of an exposure: the tie rule decides.
            at = rng.choice(moments) if rng.random() < 0.33 else start + rng.randrange(3_600)
            shown.append((at, other))
        exposures.extend(_Exposure(str(new_id()), m, experiment, v) for m, v in shown)
    return exposures


def generate_log(events: int, seed: int) -> EventLog:
    """About ``events`` events (whole units: a few more) with their ground truth."""
    rng = random.Random(seed)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    truth = _Truth()
    timed: list[tuple[int, Message]] = []
    unit_count = 0
    while len(timed) < events:
        tenant = TENANTS[unit_count % len(TENANTS)]
        unit = f"user-{unit_count:07d}"
        key = f"{tenant}:{unit}".encode()
        unit_count += 1
        start = rng.randrange(86_400) * _SECOND + rng.choice((0, rng.randrange(_SECOND)))
        exposures = _unit_exposures(rng, new_id, start)
        outcomes: list[_Outcome] = []
        for _ in range(rng.choice((0, 2, 4, 6, 8, 10, 12))):
            event = rng.choice(("purchase", "click", "signup", "rating"))
            if exposures and rng.random() < 0.05:
                micros = rng.choice(exposures).micros  # exactly at an exposure: counts
            else:
                micros = start + rng.randrange(-1_800, 7_200) * _SECOND + rng.randrange(1000)
            outcomes.append(_Outcome(str(new_id()), micros, event, _outcome_value(rng, event)))
        truth.add_unit(tenant, exposures, outcomes)
        timed.extend(
            (e.micros, ("exposure", key, _exposure_message(tenant, unit, e))) for e in exposures
        )
        timed.extend(
            (o.micros, ("outcome", key, _outcome_message(tenant, unit, o))) for o in outcomes
        )
    timed.sort(key=lambda pair: pair[0])
    return EventLog(
        messages=[message for _, message in timed],
        units={key: (a, b) for key, (a, b) in truth.units.items()},
        stats={key: (a, b) for key, (a, b) in truth.stats.items()},
        unit_count=unit_count,
    )


def with_faults(
    messages: list[Message], *, duplicated: float, late: float, seed: int
) -> list[Message]:
    """``messages`` plus re-sends of a ``duplicated`` share, with a ``late`` share moved later.

    A re-send goes 1-50% of the log after the original; a late event 1-30% after its place.
    """
    rng = random.Random(seed)
    size = len(messages)
    placed = [(float(index), message) for index, message in enumerate(messages)]
    for index in rng.sample(range(size), k=round(size * late)):
        placed[index] = (index + rng.uniform(0.01, 0.3) * size, messages[index])
    resent = [
        (index + rng.uniform(0.01, 0.5) * size, messages[index])
        for index in rng.sample(range(size), k=round(size * duplicated))
    ]
    return [message for _, message in sorted(placed + resent, key=lambda pair: pair[0])]
