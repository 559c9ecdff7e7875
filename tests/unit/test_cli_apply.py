"""``liftstream apply``: invalid files and an absent platform end in a message, not a trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from liftstream_cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _no_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    for name in (
        "LIFTSTREAM_BOOTSTRAP",
        "LIFTSTREAM_RESULTS_URL",
        "LIFTSTREAM_CONTROL_URL",
        "LIFTSTREAM_API_KEY",
        "LIFTSTREAM_TENANT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("weights-not-100.yaml", "variants: weights sum to 90, they must sum to 100"),
        ("unknown-metric-type.yaml", "metrics.0.type: Input should be 'conversion', 'count'"),
        ("duplicate-variant.yaml", "variants.2.key: duplicate variant 'b'"),
        ("several-problems.yaml", "metrics.0.colour: unknown field"),
        ("not-yaml.yaml", "not valid YAML at line 7"),
    ],
)
def test_an_invalid_file_exits_non_zero_naming_the_field(name: str, message: str) -> None:
    result = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLES / "invalid" / name)])
    assert result.exit_code == 1
    assert message in result.stderr
    assert "is not a valid experiment" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_a_missing_file_exits_non_zero_with_its_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["apply", "-f", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "missing.yaml" in result.stderr and "No such file" in result.stderr


def test_a_valid_file_without_a_platform_says_how_to_start_one() -> None:
    result = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLES / "checkout-button.yaml")])
    assert result.exit_code == 1
    assert "no control service is known" in result.stderr
    assert "liftstream up" in result.stderr
    assert "Traceback" not in result.output


def test_an_invalid_tenant_is_refused_with_the_field() -> None:
    result = CliRunner().invoke(
        app, ["apply", "-f", str(EXAMPLES / "checkout-button.yaml"), "--tenant", "Big Corp"]
    )
    assert result.exit_code == 1
    assert "tenant_id: should be lower-case" in result.stderr
