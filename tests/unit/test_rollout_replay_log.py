"""A plan replayed against a past experiment's daily figures: one check a day, the steps
advancing as their conditions are met, a regression rolled back."""

from __future__ import annotations

from typing import Any

from analytics.rollouts.replay_log import simulate_days
from schemas.experiment import Experiment
from schemas.rollout import RolloutPlan

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "candidate", "weight": 50}],
        "metrics": [
            {"name": "errors", "event": "request_error", "type": "count"},
            {"name": "latency", "event": "request", "type": "mean"},
        ],
    }
)
PLAN = RolloutPlan.model_validate(
    {
        "key": "r",
        "target": {"experiment": "checkout", "variant": "candidate"},
        "steps": [
            {"percent": 1, "min_units_per_arm": 100},
            {"percent": 10, "min_units_per_arm": 1000, "approval": True},
            {"percent": 50, "min_units_per_arm": 3000},
        ],
        "guardrails": [
            {"metric": "errors", "direction": "decrease"},
            {"metric": "latency", "direction": "decrease", "role": "signal"},
        ],
    }
)


def day(number: int, units: int, errors_c: int, errors_t: int) -> dict[str, Any]:
    def variant(key: str, errors: int) -> dict[str, Any]:
        return {
            "variant_key": key,
            "units": units,
            "excluded_units": 0,
            "stats": [
                {"event": "request_error", "aggregation": "count", "sum": errors, "sum_sq": errors}
            ],
        }

    return {
        "day": f"2026-05-{number:02d}",
        "variants": [variant("control", errors_c), variant("candidate", errors_t)],
    }


def test_a_candidate_without_effect_advances_day_by_day_and_completes() -> None:
    days = [
        day(1, 500, 50, 50),
        day(2, 2000, 200, 201),
        day(3, 4000, 400, 398),
        day(4, 5000, 500, 500),
    ]
    checks = simulate_days(PLAN, EXPERIMENT, days)
    assert [c.outcome.decision for c in checks] == ["advance", "advance", "complete"]
    assert [c.day.day for c in checks] == [1, 2, 3]
    # The mean metric is not in the daily figures: its signal has no data, said so.
    assert checks[0].outcome.evidence.guardrails[1].verdict == "no_data"


def test_a_regression_is_rolled_back_on_the_day_it_shows() -> None:
    days = [
        day(1, 500, 50, 55),
        day(2, 2000, 200, 240),
        day(3, 6000, 600, 800),
        day(4, 9000, 900, 1200),
    ]
    checks = simulate_days(PLAN, EXPERIMENT, days)
    assert checks[-1].outcome.decision == "rollback"
    assert checks[-1].day.day == 3
    assert checks[-1].outcome.evidence.guardrails[0].verdict == "fail"


def test_no_days_no_checks() -> None:
    assert simulate_days(PLAN, EXPERIMENT, []) == []
