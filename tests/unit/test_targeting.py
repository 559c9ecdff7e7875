"""Targeting rules, layers, holdout and overrides decide who is in, as documented."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from liftstream.targeting import compile_rule, evaluate_experiment, semver_key
from schemas.errors import field_errors
from schemas.experiment import Experiment
from schemas.targeting import Rule

RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


def _holds(rule: dict[str, Any], attributes: dict[str, Any]) -> bool:
    return compile_rule(RULE.validate_python(rule))(attributes)


@pytest.mark.parametrize(
    ("rule", "attributes", "expected"),
    [
        ({"attribute": "country", "op": "eq", "value": "de"}, {"country": "de"}, True),
        ({"attribute": "country", "op": "eq", "value": "de"}, {"country": "fr"}, False),
        ({"attribute": "country", "op": "eq", "value": "de"}, {}, False),
        ({"attribute": "beta", "op": "eq", "value": True}, {"beta": 1}, False),
        ({"attribute": "seats", "op": "eq", "value": 3}, {"seats": 3.0}, True),
        ({"attribute": "country", "op": "ne", "value": "de"}, {"country": "fr"}, True),
        ({"attribute": "country", "op": "ne", "value": "de"}, {}, False),
        ({"attribute": "plan", "op": "in", "values": ["pro", "team"]}, {"plan": "team"}, True),
        ({"attribute": "plan", "op": "in", "values": ["pro", "team"]}, {"plan": "free"}, False),
        ({"attribute": "tier", "op": "in", "values": [1, 2]}, {"tier": 2}, True),
        ({"attribute": "tier", "op": "in", "values": [1, 2]}, {"tier": True}, False),
        ({"attribute": "plan", "op": "not_in", "values": ["free"]}, {"plan": "pro"}, True),
        ({"attribute": "plan", "op": "not_in", "values": ["free"]}, {}, False),
        ({"attribute": "seats", "op": "gt", "value": 10}, {"seats": 11}, True),
        ({"attribute": "seats", "op": "gt", "value": 10}, {"seats": 10}, False),
        ({"attribute": "seats", "op": "ge", "value": 10}, {"seats": 10}, True),
        ({"attribute": "seats", "op": "lt", "value": 10}, {"seats": "9"}, False),
        ({"attribute": "seats", "op": "le", "value": 2.5}, {"seats": 2.5}, True),
        ({"attribute": "app", "op": "semver_ge", "value": "1.9.0"}, {"app": "1.10.0"}, True),
        ({"attribute": "app", "op": "semver_lt", "value": "2.0.0"}, {"app": "2.0.0-rc.1"}, True),
        ({"attribute": "app", "op": "semver_eq", "value": "1.2"}, {"app": "v1.2.0"}, True),
        ({"attribute": "app", "op": "semver_gt", "value": "1.0.0"}, {"app": "banana"}, False),
        (
            {"attribute": "email", "op": "regex", "value": r"@acme\.com$"},
            {"email": "a@acme.com"},
            True,
        ),
        (
            {"attribute": "email", "op": "regex", "value": r"@acme\.com$"},
            {"email": "a@acme.co"},
            False,
        ),
        ({"attribute": "email", "op": "exists"}, {"email": "x"}, True),
        ({"attribute": "email", "op": "exists"}, {"email": None}, False),
        ({"attribute": "email", "op": "exists", "value": False}, {}, True),
        (
            {
                "all": [
                    {"attribute": "country", "op": "eq", "value": "de"},
                    {"attribute": "seats", "op": "ge", "value": 5},
                ]
            },
            {"country": "de", "seats": 4},
            False,
        ),
        (
            {
                "any": [
                    {"attribute": "country", "op": "eq", "value": "de"},
                    {"attribute": "seats", "op": "ge", "value": 5},
                ]
            },
            {"country": "fr", "seats": 5},
            True,
        ),
        ({"not": {"attribute": "country", "op": "eq", "value": "de"}}, {}, True),
    ],
)
def test_rules_hold_for_the_units_they_describe(
    rule: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    assert _holds(rule, attributes) is expected


def test_semantic_versions_order_as_the_specification_lists_them() -> None:
    # The precedence example of semver.org, section 11.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    keys = [semver_key(version) for version in ordered]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(keys))
    assert semver_key("1.0.0+build.7") == semver_key("1.0.0")


@pytest.mark.parametrize(
    ("rule", "field", "reason"),
    [
        ({"attribute": "x", "op": "lt", "value": "ten"}, "targeting.value", "compares numbers"),
        ({"attribute": "x", "op": "in", "value": "a"}, "targeting.values", "needs a list"),
        ({"attribute": "x", "op": "regex", "value": "("}, "targeting.value", "not a valid regular"),
        ({"attribute": "x", "op": "semver_gt", "value": "one"}, "targeting.value", "semantic"),
        ({"all": [{"attribute": "x", "op": "near", "value": 1}]}, "targeting.all.0.op", "'eq'"),
        ({"all": []}, "targeting.all", "at least 1"),
    ],
)
def test_an_invalid_rule_is_refused_naming_its_field(
    rule: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Experiment.model_validate({**_EXPERIMENT, "targeting": rule})
    [problem] = field_errors(raised.value)
    assert problem.field == field and reason in problem.reason


_EXPERIMENT: dict[str, Any] = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
}


def test_an_override_naming_an_unknown_variant_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        Experiment.model_validate({**_EXPERIMENT, "overrides": {"qa-1": "purple"}})
    [problem] = field_errors(raised.value)
    assert problem.field == "overrides.qa-1" and "'purple' is not one of the variants" in (
        problem.reason
    )


def test_targeting_keeps_out_only_the_units_failing_the_rule() -> None:
    experiment = Experiment.model_validate(
        {**_EXPERIMENT, "targeting": {"attribute": "country", "op": "in", "values": ["de"]}}
    )
    plain = Experiment.model_validate(_EXPERIMENT)
    for index in range(200):
        unit = f"user-{index}"
        assert evaluate_experiment(experiment, unit, {"country": "fr"}) is None
        # Eligible units get exactly the variant the plain hash gives them.
        assert evaluate_experiment(experiment, unit, {"country": "de"}) == evaluate_experiment(
            plain, unit
        )
