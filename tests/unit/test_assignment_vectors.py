"""The SDK reproduces every checked-in assignment vector (tests/vectors/assignment.json)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from liftstream.assignment import bucket
from liftstream.local_config import ConfigEvaluator
from schemas.config import ConfigSnapshot, ExperimentConfig
from schemas.experiment import Experiment

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "assignment.json").read_text()
)


@pytest.mark.parametrize("case", VECTORS["buckets"], ids=lambda c: f"{c['seed']}-{c['salt']}")
def test_buckets_match_bit_for_bit(case: dict[str, Any]) -> None:
    assert (
        bucket(case["seed"], case["experiment_key"], case["unit_id"], case["salt"])
        == (case["bucket"])
    )


def test_every_assignment_case_matches() -> None:
    experiments = [Experiment.model_validate(e) for e in VECTORS["experiments"]]
    evaluators: dict[float, ConfigEvaluator] = {}
    mismatches = []
    for case in VECTORS["cases"]:
        percent = 0.0 if case["holdout"] is None else case["holdout"]["percent"]
        if percent not in evaluators:
            evaluators[percent] = ConfigEvaluator(
                ConfigSnapshot(
                    tenant_id="acme",
                    revision=0,
                    holdout_percent=percent,
                    experiments=[ExperimentConfig(experiment=e) for e in experiments],
                )
            )
        got = evaluators[percent].variant(
            case["experiment_key"], case["unit_id"], case["attributes"]
        )
        if got != case["expected_variant"]:
            mismatches.append((case, got))
    assert mismatches == []


def test_the_vectors_cover_in_and_out_of_every_experiment() -> None:
    outcomes = Counter(
        (case["experiment_key"], case["expected_variant"] is None) for case in VECTORS["cases"]
    )
    for experiment in VECTORS["experiments"]:
        assert outcomes[(experiment["key"], False)] > 0
        if experiment["key"] != "checkout-button":
            assert outcomes[(experiment["key"], True)] > 0
