"""``liftstream results``: the scorecard as JSON or a table; clear errors otherwise.

The results service is replaced by a small HTTP server answering canned responses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liftstream_cli.main import app
from schemas.results import (
    DailyResults,
    Scorecard,
)
from tests.unit.canned_results import ABSOLUTE, DAILY, SCORECARD


def test_json_prints_the_scorecard_the_service_sent(results_url: str) -> None:
    result = CliRunner().invoke(app, ["results", "checkout-button", "--json"])
    assert result.exit_code == 0, result.output
    assert Scorecard.model_validate(json.loads(result.stdout)) == SCORECARD


def test_daily_shows_a_row_per_day_with_units_and_both_p_values(results_url: str) -> None:
    result = CliRunner().invoke(
        app, ["results", "checkout-button", "--daily"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if "2026-11-" in line}
    assert list(rows) == ["2026-11-26", "2026-11-27", "2026-11-28"]
    assert "40" in rows["2026-11-26"] and "-" in rows["2026-11-26"]  # no test possible yet
    assert "1,200" in rows["2026-11-27"] and "0.200 / 0.800" in rows["2026-11-27"]
    assert "10,030" in rows["2026-11-28"] and "2.0e-05 / 8.0e-05" in rows["2026-11-28"]
    as_json = CliRunner().invoke(app, ["results", "checkout-button", "--daily", "--json"])
    assert DailyResults.model_validate(json.loads(as_json.stdout)) == DAILY


def test_the_table_shows_each_metric_its_effect_and_verdict(results_url: str) -> None:
    result = CliRunner().invoke(app, ["results", "checkout-button"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "checkout-button" in text and "20,000 units" in text
    assert "sample ratio ok" in text
    conversion_row = next(line for line in text.splitlines() if "conversion" in line)
    assert "12.97%" in conversion_row
    assert "+2.95 pp" in conversion_row
    assert "+29.4%" in conversion_row
    assert "<0.0001" in conversion_row
    assert "better" in conversion_row
    assert "no variance [zero_variance]" in text
    assert "only 2 days of data" in text
    # Every headline figure names its scale.
    assert "relative scale (treatment / control - 1): p (fixed-horizon), adj" in text
    assert "p rel" in text and "relative*" in text
    assert "adj [+17.3%, +41.5%]" in text
    assert "tuned to 18,000 planned units (plan: liftstream plan for 'conversion')" in text


def test_scale_absolute_asks_the_service_for_absolute_figures_and_says_so(
    results_url: str,
) -> None:
    as_json = CliRunner().invoke(
        app, ["results", "checkout-button", "--json", "--scale", "absolute"]
    )
    assert as_json.exit_code == 0, as_json.output
    assert Scorecard.model_validate(json.loads(as_json.stdout)) == ABSOLUTE
    table = CliRunner().invoke(
        app, ["results", "checkout-button", "--scale", "absolute"], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "absolute scale (treatment - control): p (fixed-horizon)" in table.stdout
    assert "p abs" in table.stdout and "absolute*" in table.stdout
    assert "adj [+1.81, +4.09]" in table.stdout
    bad = CliRunner().invoke(app, ["results", "checkout-button", "--scale", "log"])
    assert bad.exit_code != 0 and "--scale" in bad.output


def test_a_100_column_table_shows_adjusted_p_chance_to_win_and_the_sequential_call(
    results_url: str,
) -> None:
    result = CliRunner().invoke(app, ["results", "checkout-button"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    conversion = next(i for i, line in enumerate(lines) if line.lstrip().startswith("conversion"))
    treatment_line, control_line = lines[conversion], lines[conversion + 1]
    # The row's second line: the interval in one piece, the adjusted p, win chance and call.
    assert "[+2.07, +3.83]" in control_line and "[+19.6%, +39.2%]" in control_line
    assert "0.0312" in control_line and "win 97% stop" in control_line
    assert "<0.0001" in treatment_line and "better" in treatment_line
    page_views = next(i for i, line in enumerate(lines) if line.lstrip().startswith("page_views"))
    assert "n/a" in lines[page_views] and "win n/a" in lines[page_views + 1]
    assert "Holm-adjusted" in result.stdout
    assert "page_views treatment: no variance [zero_variance]" in result.stdout
    assert "may stop now: every primary metric is decided" in result.stdout


def test_an_unknown_experiment_exits_non_zero_saying_so(results_url: str) -> None:
    result = CliRunner().invoke(app, ["results", "unknown"])
    assert result.exit_code == 1
    assert "no experiment 'unknown' for tenant 'acme'" in result.stderr
    assert "Traceback" not in result.output


def test_a_service_error_is_shown_with_its_explanation(results_url: str) -> None:
    result = CliRunner().invoke(app, ["results", "broken"])
    assert result.exit_code == 1
    assert "HTTP 500" in result.stderr and "database is locked" in result.stderr


def test_without_a_platform_it_says_how_to_start_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    monkeypatch.delenv("LIFTSTREAM_RESULTS_URL", raising=False)
    result = CliRunner().invoke(app, ["results", "checkout-button"])
    assert result.exit_code == 1
    assert "no liftstream platform is running" in result.stderr
    assert "liftstream up" in result.stderr


def test_a_recorded_platform_that_is_gone_is_reported_as_not_answering(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from services.broker.local import free_port

    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    monkeypatch.delenv("LIFTSTREAM_RESULTS_URL", raising=False)
    gone = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "platform.json").write_text(
        json.dumps(
            {
                "bootstrap": "127.0.0.1:1",
                "results_url": gone,
                "pids": {"supervisor": 999_999_999},
                "started_at": datetime.now(UTC).isoformat(),
            }
        )
    )
    result = CliRunner().invoke(app, ["results", "checkout-button"])
    assert result.exit_code == 1
    assert f"the results service at {gone} does not answer" in result.stderr
