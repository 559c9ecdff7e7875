"""Assignment: reproducible from its written definition, fair to the weights, stable on ramps."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from liftstream.assignment import assign, bucket
from schemas import Experiment

UNITS = 100_000
# Allowed deviation of a count from its expectation: 5 binomial standard deviations
# (a correct implementation fails such a check with probability below 1e-6).
SIGMAS = 5.0


def _experiment(weights: list[float], traffic: float = 100.0, **fields: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "key": "button-colour",
            "traffic": traffic,
            "variants": [
                {"key": f"v{index}", "weight": weight} for index, weight in enumerate(weights)
            ],
            "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
            **fields,
        }
    )


def _reference_bucket(seed: str, key: str, unit: str, salt: str) -> Fraction:
    """The module docstring's definition, in exact arithmetic."""
    digest = hashlib.sha256(f"{seed}|{key}|{salt}|{unit}".encode()).digest()
    return Fraction(int.from_bytes(digest[:8], "big"), 2**64)


def _reference_assign(experiment: Experiment, unit: str) -> str | None:
    """The documented algorithm, written naively from the spec (no caching, exact fractions)."""
    seed = experiment.seed or experiment.key
    if (
        _reference_bucket(seed, experiment.key, unit, "traffic")
        >= Fraction(experiment.traffic) / 100
    ):
        return None
    position = _reference_bucket(seed, experiment.key, unit, "variant")
    cumulative = Fraction(0)
    for variant in experiment.variants:
        cumulative += Fraction(variant.weight)
        if position < cumulative / 100:
            return variant.key
    return experiment.variants[-1].key


def _within_binomial_tolerance(count: int, trials: int, share: float) -> bool:
    expected = trials * share
    return abs(count - expected) <= SIGMAS * math.sqrt(trials * share * (1 - share))


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=40), st.text(max_size=10))
def test_bucket_is_the_documented_hash_rounded_down_into_0_1(
    seed: str, key: str, unit: str, salt: str
) -> None:
    exact = _reference_bucket(seed, key, unit, salt)
    value = bucket(seed, key, unit, salt)
    assert 0.0 <= value < 1.0
    assert value <= exact < Fraction(value) + Fraction(1, 2**53)
    assert bucket(seed, key, unit, salt) == value


def test_bucket_depends_on_every_input() -> None:
    base = bucket("s", "exp", "user-1", "variant")
    assert bucket("t", "exp", "user-1", "variant") != base
    assert bucket("s", "exq", "user-1", "variant") != base
    assert bucket("s", "exp", "user-2", "variant") != base
    assert bucket("s", "exp", "user-1", "traffic") != base


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=5),
    traffic=st.floats(min_value=0.5, max_value=100),
    seed=st.text(max_size=8),
    units=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=30),
)
def test_assign_agrees_with_the_written_algorithm(
    weights: list[int], traffic: float, seed: str, units: list[str]
) -> None:
    scaled = [weight * 100 / sum(weights) for weight in weights]
    scaled[-1] = 100 - sum(scaled[:-1])
    experiment = _experiment(scaled, traffic=traffic, seed=seed)
    for unit in units:
        assert assign(experiment, unit) == _reference_assign(experiment, unit)


def test_weights_are_honoured_within_binomial_tolerance() -> None:
    weights = [20.0, 30.0, 50.0]
    experiment = _experiment(weights)
    counts: dict[str | None, int] = {}
    for index in range(UNITS):
        variant = assign(experiment, f"user-{index}")
        counts[variant] = counts.get(variant, 0) + 1
    assert None not in counts, "at 100% traffic every unit is included"
    for index, weight in enumerate(weights):
        count = counts.get(f"v{index}", 0)
        assert _within_binomial_tolerance(count, UNITS, weight / 100), (f"v{index}", count)


def test_traffic_share_is_honoured_and_included_units_still_split_by_weight() -> None:
    experiment = _experiment([50.0, 50.0], traffic=10.0)
    variants = [assign(experiment, f"user-{index}") for index in range(UNITS)]
    included = [variant for variant in variants if variant is not None]
    assert _within_binomial_tolerance(len(included), UNITS, 0.10), len(included)
    assert _within_binomial_tolerance(included.count("v0"), len(included), 0.5)


def test_two_experiments_assign_independently() -> None:
    first = _experiment([50.0, 50.0])
    second = _experiment([50.0, 50.0], key="pricing-page")
    units = [f"user-{index}" for index in range(20_000)]
    same = sum(assign(first, unit) == assign(second, unit) for unit in units)
    assert _within_binomial_tolerance(same, len(units), 0.5), same


@settings(max_examples=80, deadline=None)
@given(
    low=st.floats(min_value=0.1, max_value=100),
    high=st.floats(min_value=0.1, max_value=100),
    seed=st.text(max_size=8),
    units=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=50, unique=True),
)
def test_ramping_traffic_up_keeps_included_units_on_their_variant(
    low: float, high: float, seed: str, units: list[str]
) -> None:
    low, high = min(low, high), max(low, high)
    before = _experiment([30.0, 70.0], traffic=low, seed=seed)
    after = _experiment([30.0, 70.0], traffic=high, seed=seed)
    for unit in units:
        variant_before = assign(before, unit)
        if variant_before is not None:
            assert assign(after, unit) == variant_before


def test_ramp_from_5_to_25_percent_keeps_everyone_and_adds_about_20_percent() -> None:
    at_5 = _experiment([50.0, 50.0], traffic=5.0)
    at_25 = _experiment([50.0, 50.0], traffic=25.0)
    units = [f"user-{index}" for index in range(UNITS)]
    before = {unit: assign(at_5, unit) for unit in units}
    after = {unit: assign(at_25, unit) for unit in units}
    kept = [unit for unit, variant in before.items() if variant is not None]
    assert all(after[unit] == before[unit] for unit in kept)
    included_after = sum(variant is not None for variant in after.values())
    assert _within_binomial_tolerance(included_after, UNITS, 0.25), included_after


def test_assignment_follows_each_experiment_object_even_when_memory_is_reused() -> None:
    # Experiments are created and dropped in a loop, so Python reuses their memory (and
    # ids); a cache keyed carelessly would hand one experiment another one's traffic.
    units = [f"user-{index}" for index in range(200)]
    for traffic in (1.0, 100.0, 3.0, 90.0, 50.0, 2.0) * 3:
        experiment = _experiment([50.0, 50.0], traffic=traffic)
        assert [assign(experiment, unit) for unit in units] == [
            _reference_assign(experiment, unit) for unit in units
        ]
        del experiment
