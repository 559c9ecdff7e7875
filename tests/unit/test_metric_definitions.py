"""Metric definitions: mean, ratio, caps, windows and CUPED are accepted when complete and
refused with the field and the reason otherwise; older definitions still load."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.experiment import Aggregation, Experiment, MetricDefinition


def _metric(**fields: Any) -> dict[str, Any]:
    return {"name": "m", "event": "purchase", "type": "sum", **fields}


def test_existing_definitions_still_load_unchanged() -> None:
    metric = MetricDefinition.model_validate(
        {"name": "purchase_rate", "event": "purchase", "type": "conversion"}
    )
    assert metric.cap is None and metric.window_hours is None and not metric.needs_replay
    assert metric.model_dump(exclude_defaults=True) == {
        "name": "purchase_rate",
        "event": "purchase",
        "type": Aggregation.CONVERSION,
    }


def test_ratio_takes_its_event_from_the_numerator() -> None:
    metric = MetricDefinition.model_validate(
        {
            "name": "revenue_per_session",
            "type": "ratio",
            "numerator": {"event": "purchase", "type": "sum"},
            "denominator": {"event": "session_start", "type": "count"},
            "cap": {"percentile": 99},
            "window_hours": 168,
        }
    )
    assert metric.event == "purchase" and metric.is_ratio and metric.needs_replay


def test_full_definition_round_trips_through_an_experiment() -> None:
    experiment = Experiment.model_validate(
        {
            "key": "e",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
            "metrics": [
                _metric(cap={"value": 500}, cuped_lookback_days=14, direction="decrease"),
                {"name": "aov", "event": "purchase", "type": "mean"},
            ],
        }
    )
    again = Experiment.model_validate_json(experiment.model_dump_json())
    assert again == experiment
    assert again.metrics[0].cap is not None and again.metrics[0].cap.value == 500


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"type": "ratio", "numerator": {"event": "purchase", "type": "sum"}},
            "denominator: a ratio metric needs a numerator and a denominator",
        ),
        (
            {"type": "count", "numerator": {"event": "purchase", "type": "sum"}},
            "numerator: only ratio metrics have a numerator and denominator",
        ),
        ({"cap": {"percentile": 100}}, "cap.percentile: must be between 0 and 100"),
        ({"cap": {"percentile": 0}}, "cap.percentile: must be between 0 and 100"),
        ({"cap": {"value": 0}}, "cap.value: must be a finite number > 0"),
        ({"cap": {"value": 5, "percentile": 99}}, "cap: give exactly one of"),
        ({"cap": {}}, "cap: give exactly one of"),
        ({"type": "conversion", "cap": {"value": 1}}, "cap: a conversion is 0 or 1"),
        ({"window_hours": 0}, "window_hours\n  Input should be greater than 0"),
        ({"cuped_lookback_days": -1}, "cuped_lookback_days\n  Input should be greater than 0"),
        # Once accepted, these crashed the stream worker (OverflowError) on every restart.
        ({"window_hours": 1e300}, "window_hours\n  Input should be less than or equal to 8784"),
        (
            {"cuped_lookback_days": 1e300},
            "cuped_lookback_days\n  Input should be less than or equal to 366",
        ),
        ({"window_hours": float("nan")}, "window_hours\n  Input should be a finite number"),
        ({"cap": {"value": float("inf")}}, "cap.value\n  Input should be a finite number"),
        ({"type": "mean", "cuped_lookback_days": 7}, "cuped_lookback_days: CUPED applies"),
        (
            {"type": "ratio", "numerator": {"event": "p", "type": "avg"}, "denominator": {}},
            "numerator.type",
        ),
    ],
)
def test_bad_metric_fields_are_refused_with_field_and_reason(
    fields: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as error:
        MetricDefinition.model_validate(_metric(**fields))
    assert expected in str(error.value)
