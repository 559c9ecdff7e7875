"""Daily cumulative snapshots from the raw log in the analytics store (a real DuckDB file):
a late event moves its own day, every later day and the totals; a unit exposed to a second
variant is excluded from that day on, not before; on generated data every day equals the
stream's attribution applied to the events before that day's end, and the last day
equals the totals the scorecard reads."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from analytics import queries
from analytics.daily import DayFigures, daily_figures
from analytics.load_batch import LoadBatch
from analytics.scorecard import StatsByCell
from analytics.store import AnalyticsStore
from schemas.aggregates import MetricStats, VariantUnits
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Aggregation
from services.stream.attribution import (
    Contributions,
    UnitState,
    record_exposure,
    record_outcome,
    to_micros,
)

DAY1 = datetime(2026, 5, 4, tzinfo=UTC)
CONVERSION, COUNT, SUM = Aggregation.CONVERSION, Aggregation.COUNT, Aggregation.SUM
Event = ExposureEvent | OutcomeEvent


def _at(day: int, hour: int) -> datetime:
    return DAY1 + timedelta(days=day - 1, hours=hour)


def _exposure(
    unit: str, variant: str, moment: datetime, experiment: str = "checkout", tenant: str = "acme"
) -> ExposureEvent:
    return ExposureEvent(
        tenant_id=tenant,
        unit_id=unit,
        timestamp=moment,
        experiment_key=experiment,
        variant_key=variant,
    )


def _purchase(
    unit: str, moment: datetime, value: float, event: str = "purchase", tenant: str = "acme"
) -> OutcomeEvent:
    return OutcomeEvent(tenant_id=tenant, unit_id=unit, timestamp=moment, event=event, value=value)


class _Log:
    """Loads events into the store as the loader would, at increasing offsets."""

    def __init__(self, path: Path) -> None:
        self.store = AnalyticsStore(path)
        self.offset = 0

    def load(self, events: Iterable[Event]) -> None:
        batch = LoadBatch()
        for event in events:
            if isinstance(event, ExposureEvent):
                batch.add_exposure("ns.exposures", 0, self.offset, event)
            else:
                batch.add_outcome("ns.outcomes", 0, self.offset, event)
            self.offset += 1
        self.store.load(batch)

    def snapshots(self, **options: object) -> list[DayFigures]:
        with self.store.cursor() as cursor:
            return daily_figures(cursor, "acme", "checkout", **options)  # type: ignore[arg-type]


def _purchase_stats(snapshot: DayFigures, variant: str) -> dict[Aggregation, tuple[float, ...]]:
    return {
        aggregation: snapshot.stats.get((variant, "purchase", aggregation), (0.0, 0.0))
        for aggregation in (CONVERSION, COUNT, SUM)
    }


def test_a_late_event_moves_its_day_the_later_days_and_the_totals(tmp_path: Path) -> None:
    log = _Log(tmp_path / "late.duckdb")
    log.load(
        [
            _exposure("u1", "control", _at(1, 10)),
            _exposure("u2", "treatment", _at(1, 9)),
            _purchase("u2", _at(1, 8), 3.0),  # before u2's exposure: never counts
            _purchase("u1", _at(2, 9), 5.0),
            _purchase("u2", _at(2, 9), 4.0),
            _purchase("u1", _at(3, 9), 2.0),
        ]
    )
    before = log.snapshots()
    assert [s.day for s in before] == [date(2026, 5, 4), date(2026, 5, 5), date(2026, 5, 6)]
    assert [s.units for s in before] == [{"control": 1, "treatment": 1}] * 3
    assert [_purchase_stats(s, "control") for s in before] == [
        {CONVERSION: (0, 0), COUNT: (0, 0), SUM: (0, 0)},
        {CONVERSION: (1, 1), COUNT: (1, 1), SUM: (5, 25)},
        {CONVERSION: (1, 1), COUNT: (2, 4), SUM: (7, 49)},
    ]

    # Arrives after the day-3 events, but happened on day 1 (u1 bought for 10).
    log.load([_purchase("u1", _at(1, 12), 10.0)])
    after = log.snapshots()
    assert [_purchase_stats(s, "control") for s in after] == [
        {CONVERSION: (1, 1), COUNT: (1, 1), SUM: (10, 100)},
        {CONVERSION: (1, 1), COUNT: (2, 4), SUM: (15, 225)},
        {CONVERSION: (1, 1), COUNT: (3, 9), SUM: (17, 289)},
    ]
    assert [_purchase_stats(s, "treatment") for s in after] == [
        _purchase_stats(s, "treatment") for s in before
    ]
    assert _purchase_stats(after[-1], "treatment") == {
        CONVERSION: (1, 1),
        COUNT: (1, 1),
        SUM: (4, 16),
    }


def test_a_second_variant_excludes_the_unit_from_that_day_on(tmp_path: Path) -> None:
    log = _Log(tmp_path / "excluded.duckdb")
    log.load(
        [
            _exposure("u1", "control", _at(1, 10)),
            _exposure("u3", "control", _at(1, 11)),
            _purchase("u3", _at(1, 13), 7.0),
            _exposure("u3", "treatment", _at(2, 10)),  # u3's second variant
            _purchase("u1", _at(2, 12), 1.5),
            _exposure("u4", "treatment", _at(3, 8)),
            _purchase("u4", _at(3, 9), 1.0),
            # Same instant, both variants: excluded under the smaller key, from day 3.
            _exposure("u5", "treatment", _at(3, 8)),
            _exposure("u5", "control", _at(3, 8)),
        ]
    )
    days = log.snapshots()
    assert [(s.units, s.excluded) for s in days] == [
        ({"control": 2, "treatment": 0}, {"control": 0, "treatment": 0}),
        ({"control": 1, "treatment": 0}, {"control": 1, "treatment": 0}),
        ({"control": 1, "treatment": 1}, {"control": 2, "treatment": 0}),
    ]
    assert [_purchase_stats(s, "control") for s in days] == [
        {CONVERSION: (1, 1), COUNT: (1, 1), SUM: (7, 49)},  # u3 still counts on day 1
        {CONVERSION: (1, 1), COUNT: (1, 1), SUM: (1.5, 2.25)},  # only u1 from day 2
        {CONVERSION: (1, 1), COUNT: (1, 1), SUM: (1.5, 2.25)},
    ]
    assert _purchase_stats(days[2], "treatment")[SUM] == (1, 1)

    # days after the last event add nothing: a later ``through`` ends at the data's end
    longer = log.snapshots(through=date(9999, 12, 31))
    assert [(s.day, s.units, s.stats) for s in longer] == [(s.day, s.units, s.stats) for s in days]
    first_day_only = log.snapshots(through=date(2026, 5, 4))
    assert [(s.day, s.units, s.stats) for s in first_day_only] == [
        (days[0].day, days[0].units, days[0].stats)
    ]
    assert log.snapshots(events=["signup"])[0].stats == {}
    with log.store.cursor() as cursor:
        assert daily_figures(cursor, "acme", "never-exposed") == []


def _generated_log(seed: int) -> list[Event]:
    """Exposures and outcomes over five days, some units seeing both variants, values
    exact in binary (so every sum is exact), plus events of another experiment and tenant."""
    rng = random.Random(seed)
    events: list[Event] = []

    def moment() -> datetime:
        return DAY1 + timedelta(seconds=rng.randrange(5 * 86_400))

    for index in range(80):
        unit = f"u{index}"
        variant = rng.choice(["control", "treatment"])
        events += [_exposure(unit, variant, moment()) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            events.append(_exposure(unit, rng.choice(["control", "treatment"]), moment()))
        for _ in range(rng.randint(0, 6)):
            event = rng.choice(["purchase", "visit"])
            events.append(_purchase(unit, moment(), rng.choice([0.5, 1.0, 2.25, 3.0]), event))
        events.append(_exposure(unit, "a", moment(), experiment="other"))
        events.append(_purchase(unit, moment(), 9.0, tenant="globex"))
        events.append(_exposure(unit, "control", moment(), tenant="globex"))
    return events


def _attributed(events: Iterable[Event]) -> tuple[dict[str, int], dict[str, int], StatsByCell]:
    """Units, excluded units and stats of acme's checkout by the stream's own rules."""
    states: dict[str, UnitState] = {}
    totals: Contributions = {}
    for event in events:
        if event.tenant_id != "acme":
            continue
        state = states.setdefault(event.unit_id, UnitState("acme", 0))
        moment = to_micros(event.timestamp)
        if isinstance(event, ExposureEvent):
            delta = record_exposure(
                state, event.event_id.int, event.experiment_key, event.variant_key, moment
            )
        else:
            delta = record_outcome(state, event.event_id.int, event.event, event.value, moment)
        for key, values in delta.items():
            old = totals.get(key, (0.0, 0.0))
            totals[key] = tuple(a + b for a, b in zip(old, values, strict=True))
    units: dict[str, int] = {}
    excluded: dict[str, int] = {}
    stats: StatsByCell = {}
    for key, (first, second) in totals.items():
        _, experiment, variant, *rest = key
        if experiment != "checkout":
            continue
        if len(rest) == 0:
            units[variant], excluded[variant] = int(first), int(second)
        elif (first, second) != (0, 0):
            stats[(variant, rest[0], Aggregation(rest[1]))] = (float(first), float(second))
    return units, excluded, stats


def _nonzero(stats: StatsByCell) -> StatsByCell:
    return {cell: values for cell, values in stats.items() if values != (0.0, 0.0)}


def _dropzero(counts: dict[str, int]) -> dict[str, int]:
    return {variant: n for variant, n in counts.items() if n}


def test_every_day_matches_the_stream_rules_and_the_last_day_the_totals(tmp_path: Path) -> None:
    events = _generated_log(seed=7)
    rng = random.Random(11)
    arrival = events + rng.sample(events, 30)  # re-deliveries: stored once
    rng.shuffle(arrival)
    log = _Log(tmp_path / "generated.duckdb")
    for start in range(0, len(arrival), 97):
        log.load(arrival[start : start + 97])

    days = log.snapshots()
    assert days[0].day == date(2026, 5, 4) and len(days) == 5
    for snapshot in days:
        end = datetime.combine(snapshot.day, datetime.min.time(), UTC) + timedelta(days=1)
        units, excluded, stats = _attributed(e for e in arrival if e.timestamp < end)
        assert _dropzero(snapshot.units) == _dropzero(units), snapshot.day
        assert _dropzero(snapshot.excluded) == _dropzero(excluded), snapshot.day
        assert _nonzero(snapshot.stats) == stats, snapshot.day

    # The stream's totals for the whole log, loaded as its aggregates, read as the
    # scorecard reads them.
    units, excluded, stats = _attributed(arrival)
    batch = LoadBatch()
    records: list[VariantUnits | MetricStats] = [
        VariantUnits(
            source_partition=0,
            updated_at=DAY1,
            tenant_id="acme",
            experiment_key="checkout",
            variant_key=variant,
            units=units[variant],
            excluded_units=excluded[variant],
        )
        for variant in units
    ]
    records += [
        MetricStats(
            source_partition=0,
            updated_at=DAY1,
            tenant_id="acme",
            experiment_key="checkout",
            variant_key=variant,
            event=event,
            aggregation=aggregation,
            sum=total,
            sum_sq=total_sq,
        )
        for (variant, event, aggregation), (total, total_sq) in stats.items()
    ]
    for offset, record in enumerate(records):
        batch.add_aggregate("ns.aggregates", 0, offset, record)
    log.store.load(batch)
    with log.store.cursor() as cursor:
        assert days[-1].units == queries.variant_units(cursor, "acme", "checkout")
        assert days[-1].excluded_units == queries.excluded_units(cursor, "acme", "checkout")
        assert _nonzero(days[-1].stats) == queries.metric_stats(cursor, "acme", "checkout")
    assert sum(days[-1].excluded.values()) > 0  # the log does exclude some units


def test_days_are_cut_to_since_and_the_maximum_and_stay_cumulative(tmp_path: Path) -> None:
    log = _Log(tmp_path / "a.duckdb")
    log.load(
        event
        for day in range(1, 11)  # one new unit a day, each converting that day
        for event in (
            _exposure(f"u{day}", "control", _at(day, 12)),
            _purchase(f"u{day}", _at(day, 13), 1.0),
        )
    )
    every = log.snapshots()
    assert len(every) == 10

    last_three = log.snapshots(max_days=3)
    assert [s.day for s in last_three] == [s.day for s in every[-3:]]
    assert [(s.units, s.stats) for s in last_three] == [(s.units, s.stats) for s in every[-3:]]

    from_since = log.snapshots(since=every[3].day, max_days=2)
    assert [s.day for s in from_since] == [every[3].day, every[4].day]
    assert from_since[0].units == {"control": 4}  # the units of the days before count too
    assert from_since[0].stats == every[3].stats

    assert log.snapshots(since=every[-1].day + timedelta(days=1)) == []
    assert log.snapshots(through=every[0].day - timedelta(days=1)) == []
