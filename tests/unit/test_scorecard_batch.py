"""Many scorecards in one pass: each is exactly the scorecard its experiment gets alone,
the JSON-ready documents are valid ``Scorecard`` JSON, and bad input is refused by name."""

from __future__ import annotations

import gc
import json
from typing import Any

import numpy as np
import orjson
import pytest
from statsmodels.stats.multitest import multipletests

from analytics.scorecard import (
    ScorecardInput,
    build_scorecard,
    build_scorecards,
    scorecard_documents,
)
from schemas.experiment import Aggregation, Experiment
from schemas.results import Scorecard

OPTIONS: dict[str, Any] = {"alpha": 0.05, "planned_units": 5000, "power": 0.8}


def _random_experiment(rng: np.random.Generator, index: int) -> ScorecardInput:
    """Two to four variants, one to three metrics of any type, any correction; data from
    healthy to degenerate (no units, one unit, everyone converting, sample-ratio mismatch,
    units in an undefined variant, missing statistics)."""
    keys = [f"v{j}" for j in range(rng.integers(2, 5))]
    weights = [100 / len(keys)] * (len(keys) - 1)
    weights.append(100 - sum(weights))
    metrics = [
        {
            "name": f"m{m}",
            "event": str(rng.choice(["buy", "click", "error"])),
            "type": str(rng.choice(["conversion", "count", "sum"])),
            "role": str(rng.choice(["primary", "secondary", "guardrail"])),
            "direction": str(rng.choice(["increase", "decrease"])),
        }
        for m in range(rng.integers(1, 4))
    ]
    experiment = Experiment.model_validate(
        {
            "key": f"exp-{index}",
            "variants": [{"key": k, "weight": w} for k, w in zip(keys, weights, strict=True)],
            "metrics": metrics,
            "control": str(rng.choice(keys)),
            "correction": str(rng.choice(["holm", "bonferroni", "benjamini_hochberg", "none"])),
        }
    )
    kind = rng.integers(0, 10)
    if kind < 3:  # tiny or empty arms
        top = int(rng.choice([0, 1, 2, 30]))
        units = {k: int(rng.integers(0, top + 1)) for k in keys}
    else:
        units = {k: int(rng.integers(2000, 2400)) for k in keys}
    if kind == 3:
        units[keys[0]] *= 2  # sample-ratio mismatch
    if kind == 4:
        units["ghost"] = 5  # a variant the experiment does not define
    stats: dict[tuple[str, str, Aggregation], tuple[float, float]] = {}
    for metric in experiment.metrics:
        for key in keys:
            if rng.random() < 0.1:
                continue  # no unit did the event
            n = units[key]
            if metric.type is Aggregation.CONVERSION:
                rate = float(rng.choice([0.0, 0.002, 0.1, 1.0]))
                converted = float(rng.binomial(n, rate))
                stats[(key, metric.event, metric.type)] = (converted, converted)
            else:
                values = rng.poisson(float(rng.choice([0.0, 0.3, 2.0])), n).astype(float)
                if metric.type is Aggregation.SUM:
                    values = values * rng.gamma(2.0, 5.0, n)
                stats[(key, metric.event, metric.type)] = (
                    float(values.sum()),
                    float((values * values).sum()),
                )
    return ScorecardInput(
        "acme",
        experiment,
        units,
        stats,
        excluded_units=int(rng.integers(0, 5)),
        correction=rng.choice([None, "holm", "bonferroni", "benjamini_hochberg", "none"]),
    )


@pytest.fixture(scope="module")
def inputs() -> list[ScorecardInput]:
    rng = np.random.default_rng(20261128)
    return [_random_experiment(rng, index) for index in range(150)]


def test_each_scorecard_of_a_batch_is_the_one_its_experiment_gets_alone(
    inputs: list[ScorecardInput],
) -> None:
    batch = build_scorecards(inputs, **OPTIONS)

    assert [card.experiment_key for card in batch] == [i.experiment.key for i in inputs]
    for item, card in zip(inputs, batch, strict=True):
        alone = build_scorecard(
            item.tenant_id,
            item.experiment,
            item.units,
            item.stats,
            excluded_units=item.excluded_units,
            correction=item.correction,
            **OPTIONS,
        )
        assert card.model_dump_json() == alone.model_dump_json()
        assert card == alone


def test_the_random_experiments_reach_every_kind_of_result(
    inputs: list[ScorecardInput],
) -> None:
    """Guards the test above: it is only as good as the variety of its cases."""
    cards = build_scorecards(inputs, **OPTIONS)
    comparisons = [m for card in cards for m in card.metrics]
    assert {m.verdict for m in comparisons} == {
        "better",
        "worse",
        "inconclusive",
        "not_computable",
    }
    assert {m.test for m in comparisons} == {"two_proportion_z", "welch_t"}
    assert {m.interval_method for m in comparisons} >= {"wald", "newcombe", "welch_t"}
    assert {card.correction for card in cards} == {
        "holm",
        "bonferroni",
        "benjamini_hochberg",
        "none",
    }
    assert any(card.sample_ratio.srm_detected for card in cards)
    assert any(card.may_stop for card in cards) and not all(card.trustworthy for card in cards)
    assert sum(m.bayesian is None for m in comparisons) > 0
    assert sum(m.sequential is not None and m.sequential.may_stop for m in comparisons) > 0


def test_documents_are_valid_scorecards_and_their_json_is_the_models_json(
    inputs: list[ScorecardInput],
) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in scorecard JSON")

    documents = scorecard_documents(inputs, **OPTIONS)
    for document in documents:
        model = Scorecard.model_validate(document)
        raw = orjson.dumps(document)
        json.loads(raw, parse_constant=refuse)
        assert raw == model.model_dump_json().encode()


def test_corrections_apply_within_each_experiment_by_its_own_choice(
    inputs: list[ScorecardInput], monkeypatch: pytest.MonkeyPatch
) -> None:
    # multipletests' Holm branch runs gc.collect() on every call (seconds here in all).
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)
    methods = {"holm": "holm", "bonferroni": "bonferroni", "benjamini_hochberg": "fdr_bh"}
    for card in build_scorecards(inputs, **OPTIONS):
        for role in ("primary", "secondary", "guardrail"):  # each role is a family
            tested = [m for m in card.metrics if m.p_value is not None and m.role == role]
            if not tested:
                continue
            raw = np.array([m.p_value for m in tested])
            expected = (
                raw
                if card.correction == "none"
                else multipletests(raw, method=methods[card.correction])[1]
            )
            adjusted = [m.adjusted_p_value for m in tested]
            assert adjusted == pytest.approx(expected, rel=1e-10, abs=1e-15)
        assert all(
            m.significant == (m.adjusted_p_value is not None and m.adjusted_p_value < 0.05)
            for m in card.metrics
        )


def test_an_empty_batch_gives_no_scorecards() -> None:
    assert build_scorecards([]) == []
    assert scorecard_documents([]) == []


def _one(inputs: list[ScorecardInput], **changes: Any) -> ScorecardInput:
    item = inputs[5]
    return ScorecardInput(
        changes.get("tenant_id", item.tenant_id),
        item.experiment,
        changes.get("units", item.units),
        item.stats,
        excluded_units=changes.get("excluded_units", item.excluded_units),
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"units": {"v0": -3, "v1": 10}}, r"exp-5: units\['v0'\]: must be a whole number >= 0"),
        ({"units": {"v0": 2.5, "v1": 10}}, r"exp-5: units\['v0'\]: must be a whole number"),
        ({"units": {"v0": "many", "v1": 10}}, r"units\['v0'\]: must be a whole number"),
        ({"excluded_units": -1}, "exp-5: excluded_units: must be a whole number >= 0"),
        ({"tenant_id": "Not A Tenant"}, "tenant_id: 'Not A Tenant' is not a tenant id"),
    ],
)
def test_bad_input_is_refused_naming_the_experiment_and_field(
    inputs: list[ScorecardInput], changes: dict[str, Any], message: str
) -> None:
    good = _one(inputs)
    with pytest.raises(ValueError, match=message):
        build_scorecards([good, _one(inputs, **changes)])


def test_whole_float_units_count_as_units(inputs: list[ScorecardInput]) -> None:
    item = _one(inputs)
    as_floats = _one(inputs, units={k: float(v) for k, v in item.units.items()})
    (from_ints, from_floats) = build_scorecards([item, as_floats])
    assert from_floats.model_dump_json() == from_ints.model_dump_json()


@pytest.mark.parametrize(("alpha", "power"), [(0.0, 0.8), (1.5, 0.8), (0.05, 1.0), (0.9, 0.1)])
def test_bad_options_are_refused_by_name(
    inputs: list[ScorecardInput], alpha: float, power: float
) -> None:
    with pytest.raises(ValueError, match=r"^(alpha|power): "):
        build_scorecards(inputs[:2], alpha=alpha, power=power)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_cycle_collector_is_left_as_it_was(inputs: list[ScorecardInput], enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        build_scorecards(inputs[:3])
        assert gc.isenabled() is enabled
        item = inputs[0]
        broken = {key: ("not", "numbers") for key in item.stats}
        with pytest.raises(ValueError):  # raised while the collector is paused
            build_scorecards([ScorecardInput("acme", item.experiment, item.units, broken)])
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
