"""Properties of assignment with targeting, checked by hypothesis (derandomized).

Deterministic; weights honoured within binomial tolerance over 100,000 units (scipy's
exact binomial test); a ramp only ever adds units, on their old variant; experiments on
disjoint slices of one layer never share a unit; overrides win over every rule.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from liftstream.local_config import ConfigEvaluator
from liftstream.targeting import ExperimentTargeting, evaluate_experiment
from schemas.config import ConfigSnapshot, ExperimentConfig
from schemas.experiment import Experiment

PROPERTIES = settings(derandomize=True, deadline=None, max_examples=25)
SLOW_PROPERTIES = settings(derandomize=True, deadline=None, max_examples=6)
UNITS = [f"unit-{index}" for index in range(100_000)]

keys = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
unit_ids = st.text(min_size=1, max_size=40)


def _experiment(key: str = "exp", **fields: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "key": key,
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [{"name": "m", "event": "e", "type": "conversion"}],
            **fields,
        }
    )


@st.composite
def weights(draw: st.DrawFn) -> list[int]:
    """2 to 4 integer weights, each at least 5, summing to 100."""
    count = draw(st.integers(2, 4))
    cuts = sorted(
        draw(st.lists(st.integers(1, 19), min_size=count - 1, max_size=count - 1, unique=True))
    )
    bounds = [0, *(cut * 5 for cut in cuts), 100]
    return [high - low for low, high in itertools.pairwise(bounds)]


@PROPERTIES
@given(key=keys, unit=unit_ids, seed=st.text(max_size=10))
def test_assignment_is_deterministic(key: str, unit: str, seed: str) -> None:
    first = _experiment(key, seed=seed, traffic=60)
    again = Experiment.model_validate_json(first.model_dump_json())  # a fresh object
    assert evaluate_experiment(first, unit) == evaluate_experiment(again, unit)
    assert ExperimentTargeting(first).variant(unit) == evaluate_experiment(first, unit)


@SLOW_PROPERTIES
@given(shares=weights(), key=keys)
def test_weights_are_honoured_within_binomial_tolerance(shares: list[int], key: str) -> None:
    variants = [{"key": f"v{index}", "weight": share} for index, share in enumerate(shares)]
    targeting = ExperimentTargeting(_experiment(key, variants=variants))
    counts = dict.fromkeys((v["key"] for v in variants), 0)
    for unit in UNITS:
        counts[targeting.variant(unit)] += 1  # type: ignore[index]
    for variant in variants:
        test = binomtest(counts[variant["key"]], len(UNITS), variant["weight"] / 100)
        assert test.pvalue > 1e-6, (variant, counts)


@PROPERTIES
@given(
    low=st.floats(0.5, 100),
    high=st.floats(0.5, 100),
    key=keys,
    units=st.lists(unit_ids, min_size=1, max_size=200),
)
def test_a_ramp_keeps_every_included_unit_on_its_variant(
    low: float, high: float, key: str, units: list[str]
) -> None:
    low, high = sorted((low, high))
    before, after = _experiment(key, traffic=low), _experiment(key, traffic=high)
    for unit in units:
        variant = evaluate_experiment(before, unit)
        if variant is not None:
            assert evaluate_experiment(after, unit) == variant


@PROPERTIES
@given(split=st.floats(1, 99), units=st.lists(unit_ids, min_size=1, max_size=300))
def test_two_experiments_in_one_layer_never_share_a_unit(split: float, units: list[str]) -> None:
    left = _experiment("left", layer={"name": "checkout", "start": 0, "end": split})
    right = _experiment("right", layer={"name": "checkout", "start": split, "end": 100})
    for unit in units:
        in_left = evaluate_experiment(left, unit) is not None
        in_right = evaluate_experiment(right, unit) is not None
        assert in_left != in_right  # disjoint slices covering the layer: exactly one


@PROPERTIES
@given(
    unit=unit_ids,
    forced=st.sampled_from(["control", "treatment"]),
    traffic=st.floats(0.1, 100),
    attributes=st.dictionaries(st.sampled_from(["country", "plan"]), st.text(max_size=5)),
)
def test_overrides_win_over_rules_ramp_layer_and_holdout(
    unit: str, forced: str, traffic: float, attributes: dict[str, str]
) -> None:
    experiment = _experiment(
        traffic=traffic,
        overrides={unit: forced},
        targeting={"attribute": "country", "op": "eq", "value": "nowhere-at-all"},
        layer={"name": "l", "start": 99.99, "end": 100},
    )
    assert evaluate_experiment(experiment, unit, attributes) == forced
    snapshot = ConfigSnapshot(
        tenant_id="acme",
        revision=1,
        holdout_percent=100,
        experiments=[ExperimentConfig(experiment=experiment)],
    )
    evaluator = ConfigEvaluator(snapshot)
    assert evaluator.variant("exp", unit, attributes) == forced
    assert evaluator.variant("exp", unit + "-not-forced", attributes) is None
