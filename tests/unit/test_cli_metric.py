"""``liftstream metric apply``: a bad file ends in a message naming the field, not a trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from liftstream_cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "metrics"


@pytest.fixture(autouse=True)
def _no_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    for name in ("LIFTSTREAM_BOOTSTRAP", "LIFTSTREAM_CONTROL_URL", "LIFTSTREAM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: m\nevent: e\ntype: median\n", "type: Input should be 'conversion'"),
        ("- name: m\n  event: e\n  type: sum\n- name: n\n  type: count\n", "event: "),
        ("name: m\nevent: e\ntype: sum\ncolour: red\n", "colour: unknown field"),
    ],
)
def test_an_invalid_metric_file_exits_non_zero_naming_the_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "metric.yaml"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["metric", "apply", "-f", str(path)])
    assert result.exit_code == 1
    assert message in result.stderr and "is not a valid metric" in result.stderr
    assert "Traceback" not in result.output


def test_the_example_is_valid_and_without_a_platform_says_how_to_start_one() -> None:
    [example] = EXAMPLES.glob("*.yaml")
    result = CliRunner().invoke(app, ["metric", "apply", "-f", str(example)])
    assert result.exit_code == 1
    assert "no control service is known" in result.stderr
    assert "not a valid metric" not in result.stderr
