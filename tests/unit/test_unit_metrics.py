"""Unit-level metric values: windows, caps, CUPED covariates, ratio parts, order
independence, and per-variant sums that can take a unit back out."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.unit_metrics import (
    UnitMetric,
    UnitValue,
    VariantSums,
    percentile,
    unit_value,
)
from schemas.experiment import MetricDefinition

HOUR = 3_600_000_000
DAY = 24 * HOUR
EXPOSED = 1_000 * DAY


def _compiled(**fields: Any) -> UnitMetric:
    body = {"name": "m", "event": "purchase", "type": "sum", **fields}
    return UnitMetric.of(MetricDefinition.model_validate(body))


def test_outcomes_count_from_first_exposure_up_to_the_window_end() -> None:
    history = {
        "purchase": [
            (EXPOSED - 1, 100.0),  # before exposure: never counts
            (EXPOSED, 1.0),  # at exposure: counts
            (EXPOSED + 2 * HOUR - 1, 2.0),  # last microsecond inside the window
            (EXPOSED + 2 * HOUR, 4.0),  # the window's end is excluded
        ]
    }
    assert unit_value(history, EXPOSED, _compiled(window_hours=2)).x == 3.0
    assert unit_value(history, EXPOSED, _compiled()).x == 7.0
    assert unit_value(history, EXPOSED, _compiled(type="count", window_hours=2)).x == 2.0
    assert unit_value(history, EXPOSED, _compiled(type="conversion", window_hours=2)).x == 1.0
    late = {"purchase": [(EXPOSED + 3 * HOUR, 5.0)]}
    assert unit_value(late, EXPOSED, _compiled(type="conversion", window_hours=2)).x == 0.0


def test_fixed_cap_winsorises_the_unit_value_and_the_covariate() -> None:
    history = {"purchase": [(EXPOSED - DAY, 300.0), (EXPOSED + 1, 80.0), (EXPOSED + 2, 70.0)]}
    metric = _compiled(cap={"value": 100}, cuped_lookback_days=7)
    assert unit_value(history, EXPOSED, metric) == UnitValue(100.0, None, 100.0)
    assert unit_value(history, EXPOSED, metric, cap=None) == UnitValue(150.0, None, 300.0)


def test_percentile_cap_must_be_resolved_by_the_caller() -> None:
    metric = _compiled(cap={"percentile": 99})
    history = {"purchase": [(EXPOSED, 50.0)]}
    with pytest.raises(ValueError, match="cap: metric 'm' is capped at the 99th percentile"):
        unit_value(history, EXPOSED, metric)
    assert unit_value(history, EXPOSED, metric, cap=20.0).x == 20.0


def test_cuped_covariate_is_the_metric_over_the_lookback_before_exposure() -> None:
    history = {
        "purchase": [
            (EXPOSED - 7 * DAY - 1, 1000.0),  # older than the lookback
            (EXPOSED - 7 * DAY, 3.0),  # the lookback's first microsecond
            (EXPOSED - 1, 4.0),
            (EXPOSED, 10.0),  # after exposure: x, not c
        ]
    }
    value = unit_value(history, EXPOSED, _compiled(cuped_lookback_days=7))
    assert value == UnitValue(10.0, None, 7.0)
    counted = unit_value(history, EXPOSED, _compiled(type="count", cuped_lookback_days=7))
    assert counted == UnitValue(1.0, None, 2.0)


def test_ratio_and_mean_give_numerator_and_denominator() -> None:
    history = {
        "purchase": [(EXPOSED + 1, 20.0), (EXPOSED + 2, 30.0)],
        "session_start": [(EXPOSED, 1.0), (EXPOSED + HOUR, 1.0), (EXPOSED + 5 * HOUR, 1.0)],
    }
    ratio = _compiled(
        type="ratio",
        numerator={"event": "purchase", "type": "sum"},
        denominator={"event": "session_start", "type": "count"},
        window_hours=4,
        cap={"value": 40},
    )
    assert unit_value(history, EXPOSED, ratio) == UnitValue(40.0, 2.0, None)
    assert ratio.events == {"purchase", "session_start"}
    mean = _compiled(type="mean")
    assert unit_value(history, EXPOSED, mean) == UnitValue(50.0, 2.0, None)
    assert unit_value({}, EXPOSED, mean) == UnitValue(0.0, 0.0, None)


_outcomes = st.lists(
    st.tuples(
        st.integers(EXPOSED - 10 * DAY, EXPOSED + 10 * DAY),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(purchases=_outcomes, sessions=_outcomes, seed=st.integers(0, 2**32))
def test_unit_value_does_not_depend_on_event_order(
    purchases: list[tuple[int, float]], sessions: list[tuple[int, float]], seed: int
) -> None:
    metrics = [
        _compiled(window_hours=30, cuped_lookback_days=3),
        _compiled(type="count", cap={"value": 5}),
        _compiled(
            type="ratio",
            numerator={"event": "purchase", "type": "sum"},
            denominator={"event": "session", "type": "sum"},
        ),
    ]
    shuffled = {"purchase": purchases[:], "session": sessions[:]}
    rng = random.Random(seed)
    for events in shuffled.values():
        rng.shuffle(events)
    history = {"purchase": purchases, "session": sessions}
    for metric in metrics:
        assert unit_value(history, EXPOSED, metric) == unit_value(shuffled, EXPOSED, metric)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.tuples(
            st.integers(0, 1000), st.integers(0, 1000), st.one_of(st.none(), st.integers(0, 50))
        ),
        min_size=1,
        max_size=30,
    ),
    removed=st.integers(0, 29),
)
def test_variant_sums_add_and_subtract_units(
    values: list[tuple[int, int, int | None]], removed: int
) -> None:
    units = [UnitValue(float(x), float(y), None if c is None else float(c)) for x, y, c in values]
    sums = VariantSums()
    for unit in units:
        sums.add(unit)
    gone = units.pop(removed % len(units))
    sums.subtract(gone)
    assert sums.n == len(units)
    assert sums.sum_x == sum(u.x for u in units)
    assert sums.sum_xx == sum(u.x**2 for u in units)
    assert sums.sum_xy == sum(u.x * (u.y or 0) for u in units)
    assert sums.sum_c == sum(u.c or 0 for u in units)
    assert sums.sum_xc == sum(u.x * (u.c or 0) for u in units)
    other = VariantSums()
    other.add(UnitValue(2.0, 1.0, 3.0))
    sums.merge(other)
    assert sums.n == len(units) + 1 and sums.sum_cc == sum((u.c or 0) ** 2 for u in units) + 9


def test_percentile_matches_linear_interpolation() -> None:
    numpy = pytest.importorskip("numpy")
    data = [random.Random(3).expovariate(0.1) for _ in range(101)]
    for q in (50, 90, 99, 99.9):
        assert math.isclose(percentile(data, q), float(numpy.percentile(data, q)), rel_tol=1e-12)
    with pytest.raises(ValueError, match="values: a percentile needs at least one value"):
        percentile([], 99)
