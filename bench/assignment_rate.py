"""SDK assignments per second with three targeting rules, beside GrowthBook's Python SDK.

One experiment (50/50) served to units passing three rules: country in a list, app
version >= 2.3.0 (semantic version) and plan not free. liftstream evaluates it with
``ConfigEvaluator.variant`` (what ``ConfigPoller`` serves); GrowthBook (``growthbook`` on
PyPI) evaluates an equivalent feature, with the same conditions and a 50/50 experiment
rule hashed on the unit id, in the same process on the same units. Both run on one core.

    python -m bench.assignment_rate [--units 100000]
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from growthbook import GrowthBook

from liftstream.local_config import ConfigEvaluator
from schemas.config import ConfigSnapshot, ExperimentConfig
from schemas.experiment import Experiment

COUNTRIES = ["de", "fr", "nl", "es", "us", "br"]
TARGET_COUNTRIES = ["de", "fr", "nl"]
VERSIONS = ["2.2.9", "2.3.0", "2.10.1", "3.0.0-beta.1", "1.9.0"]
PLANS = ["free", "pro", "team"]

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
        "targeting": {
            "all": [
                {"attribute": "country", "op": "in", "values": TARGET_COUNTRIES},
                {"attribute": "app_version", "op": "semver_ge", "value": "2.3.0"},
                {"attribute": "plan", "op": "not_in", "values": ["free"]},
            ]
        },
    }
)
GROWTHBOOK_FEATURES = {
    "checkout": {
        "defaultValue": None,
        "rules": [
            {
                "key": "checkout",
                "condition": {
                    "country": {"$in": TARGET_COUNTRIES},
                    "app_version": {"$vgte": "2.3.0"},
                    "plan": {"$nin": ["free"]},
                },
                "variations": ["control", "treatment"],
                "weights": [0.5, 0.5],
                "hashAttribute": "id",
            }
        ],
    }
}


def units_with_attributes(count: int, all_eligible: bool) -> list[tuple[str, dict[str, Any]]]:
    """Units with random attributes (about one in five eligible), or all eligible."""
    rng = random.Random(2026)
    countries = TARGET_COUNTRIES if all_eligible else COUNTRIES
    versions = ["2.3.0", "2.10.1"] if all_eligible else VERSIONS
    plans = ["pro", "team"] if all_eligible else PLANS
    return [
        (
            f"user-{index}",
            {
                "country": rng.choice(countries),
                "app_version": rng.choice(versions),
                "plan": rng.choice(plans),
            },
        )
        for index in range(count)
    ]


def liftstream_assigner() -> Callable[[str, dict[str, Any]], str | None]:
    evaluator = ConfigEvaluator(
        ConfigSnapshot(
            tenant_id="bench", revision=0, experiments=[ExperimentConfig(experiment=EXPERIMENT)]
        )
    )
    return lambda unit, attributes: evaluator.variant("checkout", unit, attributes)


def growthbook_assigner() -> Callable[[str, dict[str, Any]], str | None]:
    growthbook = GrowthBook(features=GROWTHBOOK_FEATURES)

    def assign(unit: str, attributes: dict[str, Any]) -> str | None:
        growthbook.set_attributes({"id": unit, **attributes})
        value: str | None = growthbook.eval_feature("checkout").value
        return value

    return assign


def rate(
    assign: Callable[[str, dict[str, Any]], str | None], units: list[tuple[str, dict[str, Any]]]
) -> tuple[float, int]:
    """(assignments per second, units assigned a variant) over ``units``."""
    started = time.perf_counter()
    included = 0
    for unit, attributes in units:
        if assign(unit, attributes) is not None:
            included += 1
    return len(units) / (time.perf_counter() - started), included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=100_000)
    args = parser.parse_args()
    logging.getLogger("growthbook").setLevel(logging.ERROR)
    ours, theirs = liftstream_assigner(), growthbook_assigner()
    for label, all_eligible in (("mixed attributes", False), ("every unit eligible", True)):
        units = units_with_attributes(args.units, all_eligible)
        # Warm up both (compilation, caches) on a slice, then measure.
        rate(ours, units[:2000])
        rate(theirs, units[:2000])
        ours_rate, ours_included = rate(ours, units)
        theirs_rate, theirs_included = rate(theirs, units)
        print(f"{label}: {len(units):,} units")
        print(f"  assigned (liftstream / GrowthBook)  {ours_included:>10,} / {theirs_included:,}")
        print(f"  liftstream SDK                      {ours_rate:>10,.0f} assignments/s")
        print(f"  baseline: GrowthBook Python SDK     {theirs_rate:>10,.0f} assignments/s")
        print(f"  liftstream / GrowthBook             {ours_rate / theirs_rate:>10.1f}x")


if __name__ == "__main__":
    main()
