"""Generate ``tests/vectors/assignment.json``: assignment cases every SDK must reproduce.

Run once (``python -m tests.vectors.generate_assignment``); the file is checked in and
the SDK's tests compare against it, so a change of the hash or of the targeting order
shows up as a failing test, and SDKs in other languages can prove agreement. Cases:
plain hashes (``bucket``), and experiments with a ramp, uneven weights, a seed, a
targeting rule, overrides, a layer slice and a tenant-wide holdout.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from liftstream.assignment import bucket
from liftstream.local_config import ConfigEvaluator
from schemas.config import ConfigSnapshot, ExperimentConfig
from schemas.experiment import Experiment

OUTPUT = Path(__file__).with_name("assignment.json")
METRICS = [{"name": "m", "event": "e", "type": "conversion"}]

EXPERIMENTS: list[dict[str, Any]] = [
    {
        "key": "checkout-button",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    },
    {
        "key": "pricing",
        "seed": "pricing-2026",
        "traffic": 35,
        "variants": [
            {"key": "a", "weight": 20},
            {"key": "b", "weight": 30},
            {"key": "c", "weight": 50},
        ],
    },
    {
        "key": "onboarding",
        "traffic": 80,
        "variants": [{"key": "control", "weight": 50}, {"key": "short", "weight": 50}],
        "targeting": {
            "all": [
                {"attribute": "country", "op": "in", "values": ["de", "fr", "nl"]},
                {"attribute": "app_version", "op": "semver_ge", "value": "2.3.0"},
                {"not": {"attribute": "email", "op": "regex", "value": "@example\\.com$"}},
            ]
        },
        "overrides": {"qa-1": "short", "qa-2": "control"},
    },
    {
        "key": "search-left",
        "layer": {"name": "search", "start": 0, "end": 40},
        "variants": [{"key": "control", "weight": 50}, {"key": "ranker", "weight": 50}],
    },
    {
        "key": "search-right",
        "layer": {"name": "search", "start": 40, "end": 100},
        "variants": [{"key": "control", "weight": 50}, {"key": "synonyms", "weight": 50}],
    },
]
HOLDOUT = {"tenant_id": "acme", "percent": 10.0}


def _attributes(rng: random.Random) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "country": rng.choice(["de", "fr", "nl", "us"]),
        "app_version": rng.choice(["2.2.9", "2.3.0", "2.10.1", "3.0.0-beta.1"]),
    }
    if rng.random() < 0.3:
        attributes["email"] = rng.choice(["a@example.com", "b@acme.io"])
    return attributes


def generate() -> dict[str, Any]:
    rng = random.Random(2026)
    buckets = []
    for index in range(20):
        case = {
            "seed": f"s{index}",
            "experiment_key": "k",
            "unit_id": f"u{index}",
            "salt": rng.choice(["traffic", "variant", "layer", "holdout"]),
        }
        buckets.append(
            {
                **case,
                "bucket": bucket(
                    case["seed"], case["experiment_key"], case["unit_id"], case["salt"]
                ),
            }
        )
    experiments = [Experiment.model_validate({**e, "metrics": METRICS}) for e in EXPERIMENTS]
    cases = []
    for holdout in (None, HOLDOUT):
        evaluator = ConfigEvaluator(
            ConfigSnapshot(
                tenant_id="acme",
                revision=0,
                holdout_percent=0 if holdout is None else holdout["percent"],
                experiments=[ExperimentConfig(experiment=e) for e in experiments],
            )
        )
        for experiment in experiments:
            units = [f"user-{rng.randrange(10**9)}" for _ in range(40)]
            units += list(experiment.overrides)
            for unit in units:
                attributes = _attributes(rng)
                cases.append(
                    {
                        "experiment_key": experiment.key,
                        "holdout": holdout,
                        "unit_id": unit,
                        "attributes": attributes,
                        "expected_variant": evaluator.variant(experiment.key, unit, attributes),
                    }
                )
    return {
        "description": "liftstream assignment test vectors; see liftstream/assignment.py and "
        "liftstream/targeting.py for the algorithm",
        "experiments": [e.model_dump(mode="json") for e in experiments],
        "buckets": buckets,
        "cases": cases,
    }


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(generate(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT}")
