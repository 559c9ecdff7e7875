"""Monitoring without false alarms: seeded simulated rollouts of a 3-guardrail plan.

An A/A rollout checked 50 times per guardrail must roll back at most 5% of the time over
1,000 rollouts, and a 10% relative regression must be caught with power >= 80% at the
sample size ``planning.units_per_arm`` gives the plan. Both run in full by default (the
simulation is vectorised: about a second); ``ROLLOUT_SIM_ROLLOUTS`` sizes them, and the
``slow`` run uses 10,000 rollouts.
"""

from __future__ import annotations

import os

import pytest
from scipy import stats

from analytics.rollouts.planning import units_per_arm
from analytics.rollouts.simulation import check_through_decide, first_rollbacks, simulate_data
from schemas.rollout import RolloutPlan

ROLLOUTS = int(os.environ.get("ROLLOUT_SIM_ROLLOUTS", "1000"))
CHECKS = 50
RATES = {"errors": 0.05, "slow_requests": 0.02, "purchase": 0.10}
ALPHA = 0.05
PER_ARM = units_per_arm(RATES["errors"], 0.10, alpha=ALPHA / 3)
PLAN = RolloutPlan.model_validate(
    {
        "key": "sim",
        "target": {"experiment": "e", "variant": "candidate"},
        "steps": [{"percent": 100}],
        "guardrails": [
            {"metric": "errors", "direction": "decrease"},
            {"metric": "slow_requests", "direction": "decrease"},
            {"metric": "purchase", "direction": "increase"},
        ],
        "alpha": ALPHA,
        "planned_units": 2 * PER_ARM,
    }
)
PER_CHECK = -(-PER_ARM // CHECKS)


def upper_bound(failures: int, trials: int, confidence: float = 0.99) -> float:
    """One-sided Clopper-Pearson upper bound of a rate."""
    if failures == trials:
        return 1.0
    return float(stats.beta.ppf(confidence, failures + 1, trials - failures))


def run(rollouts: int, effects: dict[str, float], seed: int):  # type: ignore[no-untyped-def]
    data = simulate_data(
        RATES, effects, units_per_check=PER_CHECK, checks=CHECKS, rollouts=rollouts, seed=seed
    )
    return data, first_rollbacks(PLAN, data)


def check_false_rollbacks(rollouts: int) -> None:
    _, summary = run(rollouts, {}, seed=14)
    print(f"A/A: {summary.rolled_back} of {rollouts} rollouts rolled back")
    assert summary.rollback_rate <= 0.05
    # The stated bound: the 99% upper confidence bound of the rate is below 5% too.
    assert upper_bound(summary.rolled_back, rollouts) <= 0.05


def check_power(rollouts: int) -> None:
    for metric, effect in (("errors", 0.10), ("purchase", -0.10)):
        _, summary = run(rollouts, {metric: effect}, seed=15)
        print(f"{metric} {effect:+.0%}: caught in {summary.rolled_back} of {rollouts}")
        assert summary.rollback_rate >= 0.80


def test_an_a_a_rollout_rolls_back_at_most_5_percent_of_the_time() -> None:
    check_false_rollbacks(ROLLOUTS)


def test_a_10_percent_regression_is_caught_with_80_percent_power_at_the_plan_size() -> None:
    check_power(ROLLOUTS)


@pytest.mark.slow
def test_the_same_over_10_000_rollouts() -> None:
    check_false_rollbacks(10_000)
    check_power(10_000)


def test_the_vectorised_simulation_decides_as_the_controller_does() -> None:
    data, summary = run(12, {"errors": 0.25}, seed=16)
    assert summary.rolled_back > 0
    for rollout in range(12):
        assert check_through_decide(PLAN, data, rollout) == summary.first_rollback[rollout]
