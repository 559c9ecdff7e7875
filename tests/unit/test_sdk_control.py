"""Experiment files: the example loads; every invalid example is refused field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.settings import Settings
from liftstream_cli.control import apply_experiment, load_experiment_file
from schemas import Aggregation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_demo_experiment_file_loads() -> None:
    experiment = load_experiment_file(EXAMPLES / "checkout-button.yaml")
    assert experiment.key == "checkout-button"
    assert experiment.variant_weights() == {"control": 50, "treatment": 50}
    assert experiment.control_key == "control"
    assert {(m.name, m.event, m.type) for m in experiment.metrics} == {
        ("conversion", "purchase", Aggregation.CONVERSION),
        ("revenue", "purchase", Aggregation.SUM),
        ("page_views", "page_view", Aggregation.COUNT),
    }


@pytest.mark.parametrize(
    ("name", "expected_lines"),
    [
        ("weights-not-100.yaml", ["variants: weights sum to 90, they must sum to 100"]),
        (
            "unknown-metric-type.yaml",
            [
                "metrics.0.type: Input should be 'conversion', 'count', 'sum', 'mean' or "
                "'ratio' (got 'average')"
            ],
        ),
        ("duplicate-variant.yaml", ["variants.2.key: duplicate variant 'b'"]),
        (
            "several-problems.yaml",
            [
                "key: should be lower-case letters, digits, '_', '.' or '-', starting with a "
                "letter or digit (at most 100 characters) (got 'Checkout Button')",
                "traffic: Input should be less than or equal to 100",
                "variants.1.weight: Input should be a valid number, unable to parse string as a "
                "number",
                "metrics.0.colour: unknown field",
            ],
        ),
        ("not-yaml.yaml", ["not valid YAML at line 7, column 4"]),
    ],
)
def test_each_invalid_example_is_refused_with_every_field_and_reason(
    name: str, expected_lines: list[str]
) -> None:
    path = EXAMPLES / "invalid" / name
    with pytest.raises(InvalidInputError) as raised:
        load_experiment_file(path)
    message = str(raised.value)
    assert message.startswith(f"{path} is not a valid experiment:")
    lines = message.splitlines()[1:]
    assert len(lines) == len(expected_lines)
    for line, expected in zip(lines, expected_lines, strict=True):
        assert line.strip().startswith(expected)


def test_every_invalid_example_is_covered() -> None:
    covered = {
        "weights-not-100.yaml",
        "unknown-metric-type.yaml",
        "duplicate-variant.yaml",
        "several-problems.yaml",
        "not-yaml.yaml",
    }
    assert {path.name for path in (EXAMPLES / "invalid").glob("*.yaml")} == covered


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "expected a mapping of experiment fields, found an empty file"),
        ("- key: a\n", "expected a mapping of experiment fields, found a list"),
    ],
)
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=reason):
        load_experiment_file(path)


def test_a_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"cannot read .*nope\.yaml:\n  No such file"):
        load_experiment_file(tmp_path / "nope.yaml")


def test_apply_refuses_an_invalid_tenant_before_contacting_the_control_service(
    tmp_path: Path,
) -> None:
    experiment = load_experiment_file(EXAMPLES / "checkout-button.yaml")
    nowhere = Settings(bootstrap="", namespace="x", partitions=1, home=tmp_path, results_url="")
    with pytest.raises(ValueError, match=r"tenant_id: should be lower-case"):
        apply_experiment(experiment, "Not A Tenant", nowhere)


def test_apply_without_a_control_service_says_how_to_find_one(tmp_path: Path) -> None:
    experiment = load_experiment_file(EXAMPLES / "checkout-button.yaml")
    nowhere = Settings(bootstrap="", namespace="x", partitions=1, home=tmp_path, results_url="")
    with pytest.raises(PlatformUnavailableError, match=r"liftstream up.*LIFTSTREAM_CONTROL_URL"):
        apply_experiment(experiment, "acme", nowhere)
