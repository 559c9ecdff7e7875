"""Per-unit attribution: deduplication, exclusion, timing, and order independence."""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.unit_metrics import UnitMetric, unit_value
from schemas.experiment import Aggregation, MetricDefinition
from services.stream.attribution import (
    Contributions,
    LiveMetric,
    StatsKey,
    SumsKey,
    UnitsKey,
    UnitState,
    add_exposure,
    add_outcome,
    record_exposure,
    record_outcome,
    unit_contributions,
)

TENANT = "acme"
CONV, COUNT, SUM = Aggregation.CONVERSION, Aggregation.COUNT, Aggregation.SUM


def new_id() -> int:
    return uuid.uuid4().int


def fresh() -> UnitState:
    return UnitState(tenant_id=TENANT, partition=0)


def accumulate(total: Counter[object], delta: Contributions) -> None:
    for key, (first, second) in delta.items():
        total[(key, 0)] += first
        total[(key, 1)] += second


def as_pairs(total: Counter[object]) -> dict[object, tuple[float, float]]:
    keys = {key for key, _ in total}
    pairs = {key: (total[(key, 0)], total[(key, 1)]) for key in keys}
    return {key: pair for key, pair in pairs.items() if pair != (0, 0)}


def test_outcome_after_exposure_counts_for_the_variant() -> None:
    state = fresh()
    total: Counter[object] = Counter()
    accumulate(total, record_exposure(state, new_id(), "checkout", "treatment", 100))
    accumulate(total, record_outcome(state, new_id(), "purchase", 12.5, 150))
    accumulate(total, record_outcome(state, new_id(), "purchase", 7.5, 160))
    assert as_pairs(total) == {
        UnitsKey(TENANT, "checkout", "treatment"): (1, 0),
        StatsKey(TENANT, "checkout", "treatment", "purchase", CONV): (1, 1),
        StatsKey(TENANT, "checkout", "treatment", "purchase", COUNT): (2, 4),
        StatsKey(TENANT, "checkout", "treatment", "purchase", SUM): (20.0, 400.0),
    }


def test_outcome_before_first_exposure_is_not_attributed() -> None:
    state = fresh()
    record_outcome(state, new_id(), "purchase", 3.0, 50)
    delta = record_exposure(state, new_id(), "checkout", "control", 100)
    assert delta == {UnitsKey(TENANT, "checkout", "control"): (1, 0)}
    assert record_outcome(state, new_id(), "purchase", 3.0, 99) == {}


def test_outcome_arriving_before_its_exposure_counts_once_the_exposure_arrives() -> None:
    state = fresh()
    assert record_outcome(state, new_id(), "click", 1.0, 200) == {}
    delta = record_exposure(state, new_id(), "banner", "b", 100)
    assert delta[StatsKey(TENANT, "banner", "b", "click", COUNT)] == (1, 1)
    assert delta[UnitsKey(TENANT, "banner", "b")] == (1, 0)


def test_late_earlier_exposure_pulls_older_outcomes_in() -> None:
    state = fresh()
    total: Counter[object] = Counter()
    accumulate(total, record_exposure(state, new_id(), "banner", "b", 100))
    accumulate(total, record_outcome(state, new_id(), "click", 1.0, 50))
    accumulate(total, record_outcome(state, new_id(), "click", 1.0, 150))
    assert total[(StatsKey(TENANT, "banner", "b", "click", COUNT), 0)] == 1
    # The exposure at t=40 was logged earlier but arrives last.
    delta = record_exposure(state, new_id(), "banner", "b", 40)
    assert delta == {
        StatsKey(TENANT, "banner", "b", "click", COUNT): (1, 3),  # x: 1 -> 2, x²: 1 -> 4
        StatsKey(TENANT, "banner", "b", "click", SUM): (1.0, 3.0),
    }


def test_resent_event_counts_once() -> None:
    state = fresh()
    exposure_id, outcome_id = new_id(), new_id()
    record_exposure(state, exposure_id, "checkout", "control", 100)
    first = record_outcome(state, outcome_id, "purchase", 5.0, 120)
    assert first
    assert record_outcome(state, outcome_id, "purchase", 5.0, 120) == {}
    assert record_exposure(state, exposure_id, "checkout", "control", 100) == {}
    assert unit_contributions(state)[
        StatsKey(TENANT, "checkout", "control", "purchase", COUNT)
    ] == (
        1,
        1,
    )


def test_unit_seeing_two_variants_is_excluded_once_under_its_first_variant() -> None:
    state = fresh()
    total: Counter[object] = Counter()
    accumulate(total, record_exposure(state, new_id(), "checkout", "treatment", 200))
    accumulate(total, record_outcome(state, new_id(), "purchase", 9.0, 250))
    # An exposure to the other variant, earlier in time, arrives late.
    accumulate(total, record_exposure(state, new_id(), "checkout", "control", 150))
    accumulate(total, record_exposure(state, new_id(), "checkout", "treatment", 300))
    assert as_pairs(total) == {UnitsKey(TENANT, "checkout", "control"): (0, 1)}


def test_outcome_counts_for_each_experiment_from_its_own_first_exposure() -> None:
    state = fresh()
    record_exposure(state, new_id(), "banner", "a", 100)
    record_exposure(state, new_id(), "checkout", "control", 300)
    record_outcome(state, new_id(), "purchase", 2.0, 200)
    record_outcome(state, new_id(), "purchase", 4.0, 400)
    contributions = unit_contributions(state)
    assert contributions[StatsKey(TENANT, "banner", "a", "purchase", SUM)] == (6.0, 36.0)
    assert contributions[StatsKey(TENANT, "checkout", "control", "purchase", SUM)] == (4.0, 16.0)


def test_outcomes_only_unit_contributes_nothing() -> None:
    state = fresh()
    record_outcome(state, new_id(), "purchase", 2.0, 200)
    assert unit_contributions(state) == {}


# --- order independence -------------------------------------------------------------

Event = tuple[str, int, str, str, float, int]  # kind, id, experiment|event, variant, value, ts

exposures = st.tuples(
    st.just("exposure"),
    st.integers(0, 2**128 - 1),
    st.sampled_from(["banner", "checkout"]),
    st.sampled_from(["a", "b", "c"]),
    st.just(0.0),
    st.integers(0, 20),
)
outcomes = st.tuples(
    st.just("outcome"),
    st.integers(0, 2**128 - 1),
    st.sampled_from(["click", "purchase"]),
    st.just(""),
    # Quarter steps keep every float sum exact, so results compare with ==.
    st.integers(-400, 400).map(lambda quarters: quarters / 4),
    st.integers(0, 20),
)


#: A unit's distinct events, and which of them are sent again.
event_logs = st.lists(
    st.one_of(exposures, outcomes), min_size=1, max_size=14, unique_by=lambda e: e[1]
)
resends = st.lists(st.integers(0, 13), max_size=4)


def resent_and_shuffled(
    events: list[Event], resent: list[int], data: st.DataObject
) -> tuple[list[Event], list[Event]]:
    """The log with the resent events appended, and the same in a drawn arrival order."""
    with_duplicates = events + [events[i] for i in resent if i < len(events)]
    return with_duplicates, data.draw(st.permutations(with_duplicates))


def apply_all(events: list[Event]) -> tuple[UnitState, dict[object, tuple[float, float]]]:
    state = fresh()
    total: Counter[object] = Counter()
    for kind, event_id, name, variant, value, timestamp in events:
        if kind == "exposure":
            accumulate(total, record_exposure(state, event_id, name, variant, timestamp))
        else:
            accumulate(total, record_outcome(state, event_id, name, value, timestamp))
    return state, as_pairs(total)


def independent_truth(events: list[Event]) -> dict[object, tuple[float, float]]:
    """The rules restated plainly, from the deduplicated event list."""
    unique = {event[1]: event for event in events}.values()
    seen: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for kind, _, name, variant, _, timestamp in unique:
        if kind == "exposure":
            seen[name].append((timestamp, variant))
    truth: dict[object, tuple[float, float]] = {}
    for experiment, views in seen.items():
        first_time, first_variant = min(views)
        if len({variant for _, variant in views}) > 1:
            truth[UnitsKey(TENANT, experiment, first_variant)] = (0, 1)
            continue
        truth[UnitsKey(TENANT, experiment, first_variant)] = (1, 0)
        values: dict[str, list[float]] = defaultdict(list)
        for kind, _, name, _, value, timestamp in unique:
            if kind == "outcome" and timestamp >= first_time:
                values[name].append(value)
        for name, xs in values.items():
            total = math.fsum(xs)
            truth[StatsKey(TENANT, experiment, first_variant, name, CONV)] = (1, 1)
            truth[StatsKey(TENANT, experiment, first_variant, name, COUNT)] = (
                len(xs),
                len(xs) ** 2,
            )
            if total != 0:
                truth[StatsKey(TENANT, experiment, first_variant, name, SUM)] = (total, total**2)
    return truth


@settings(max_examples=300, deadline=None)
@given(events=event_logs, resent=resends, data=st.data())
def test_any_arrival_order_gives_the_same_contributions(
    events: list[Event], resent: list[int], data: st.DataObject
) -> None:
    with_duplicates, arrival = resent_and_shuffled(events, resent, data)

    state, summed_deltas = apply_all(arrival)
    _, summed_in_log_order = apply_all(with_duplicates)
    from_scratch = {key: pair for key, pair in unit_contributions(state).items() if pair != (0, 0)}

    assert summed_deltas == from_scratch
    assert summed_deltas == summed_in_log_order
    assert summed_deltas == independent_truth(with_duplicates)
    assert added_in_place(arrival) == summed_deltas


def added_in_place(events: list[Event]) -> dict[object, tuple[float, float]]:
    """The worker's path (``add_exposure``/``add_outcome`` into running sums)."""
    state = fresh()
    sums: dict[object, list[float]] = {}
    for kind, event_id, name, variant, value, timestamp in events:
        if kind == "exposure":
            add_exposure(sums, set(), state, event_id, name, variant, timestamp, {})  # type: ignore[arg-type]
        else:
            add_outcome(sums, set(), state, event_id, name, value, timestamp, {})  # type: ignore[arg-type]
    return {
        key: (first, second) for key, (first, second) in sums.items() if (first, second) != (0, 0)
    }


LIVE = {
    (TENANT, "checkout"): tuple(
        LiveMetric(UnitMetric.of(definition), definition.definition_hash)
        for definition in (
            MetricDefinition.model_validate(body)
            for body in (
                {
                    "name": "value_per_click",
                    "type": "ratio",
                    "numerator": {"event": "purchase", "type": "sum"},
                    "denominator": {"event": "click", "type": "count"},
                    # 10 µs: timestamps here are 0..20 µs, so the window bites.
                    "window_hours": 10 / 3_600_000_000,
                },
                {
                    "name": "capped_spend",
                    "event": "purchase",
                    "type": "sum",
                    "cap": {"value": 50},
                    "cuped_lookback_days": 1,
                },
            )
        )
    )
}


def summed(events: list[Event]) -> tuple[UnitState, dict[object, tuple[float, ...]]]:
    """The worker's path: each event's change added straight into running sums."""
    state = fresh()
    total: dict[object, list[float]] = {}
    dirty: set[object] = set()
    for kind, event_id, name, variant, value, timestamp in events:
        if kind == "exposure":
            add_exposure(total, dirty, state, event_id, name, variant, timestamp, LIVE)  # type: ignore[arg-type]
        else:
            add_outcome(total, dirty, state, event_id, name, value, timestamp, LIVE)  # type: ignore[arg-type]
    assert dirty == set(total)
    return state, {k: tuple(v) for k, v in total.items() if isinstance(k, SumsKey) and any(v)}


@settings(max_examples=300, deadline=None)
@given(events=event_logs, resent=resends, data=st.data())
def test_live_metric_sums_do_not_depend_on_arrival_order(
    events: list[Event], resent: list[int], data: st.DataObject
) -> None:
    """A defined metric's nine sums, kept by differences, equal the unit's values
    computed once from its final state, whatever order the events came in."""
    with_duplicates, arrival = resent_and_shuffled(events, resent, data)

    state, live_in_arrival_order = summed(arrival)
    _, live_in_log_order = summed(with_duplicates)
    expected: dict[object, tuple[float, ...]] = {}
    for experiment, summary in state.exposures.items():
        if summary.excluded or experiment != "checkout":
            continue
        for live_metric in LIVE[(TENANT, experiment)]:
            x, y, c = unit_value(state.outcomes, summary.first_timestamp, live_metric.metric)
            y, c = y or 0.0, c or 0.0
            key = SumsKey(
                TENANT,
                experiment,
                summary.first_variant,
                live_metric.metric.name,
                live_metric.definition_hash,
            )
            expected[key] = (1, x, x * x, y, y * y, x * y, c, c * c, x * c)

    assert live_in_arrival_order == expected
    assert live_in_log_order == expected
    assert {
        k: v for k, v in unit_contributions(state, LIVE).items() if isinstance(k, SumsKey)
    } == expected
