"""``liftstream results``: the scorecard as JSON or a table; clear errors otherwise.

The results service is replaced by a small HTTP server answering canned responses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from liftstream_cli.main import app
from schemas.experiment import Aggregation
from schemas.results import (
    ArmSummary,
    BayesianResult,
    DailyResults,
    DayResults,
    Interval,
    MetricComparison,
    MetricDay,
    SampleRatioCheck,
    Scorecard,
    SequentialResult,
    VariantDay,
)

SCORECARD = Scorecard(
    tenant_id="acme",
    experiment_key="checkout-button",
    experiment_version=2,
    status="running",
    control_variant="control",
    confidence_level=0.95,
    total_units=20_000,
    excluded_units=3,
    sample_ratio=SampleRatioCheck(
        observed_units={"control": 10_030, "treatment": 9_970},
        expected_share={"control": 0.5, "treatment": 0.5},
        p_value=0.67,
        threshold=0.001,
        srm_detected=False,
    ),
    trustworthy=True,
    warnings=["only 2 days of data"],
    metrics=[
        MetricComparison(
            metric="conversion",
            event="purchase",
            aggregation=Aggregation.CONVERSION,
            role="primary",
            direction="increase",
            test="two_proportion_z",
            scale="relative",
            control=ArmSummary(variant_key="control", units=10_030, mean=0.1002),
            treatment=ArmSummary(variant_key="treatment", units=9_970, mean=0.1297),
            absolute_effect=Interval(estimate=0.0295, ci_low=0.0207, ci_high=0.0383),
            relative_effect=Interval(estimate=0.294, ci_low=0.196, ci_high=0.392),
            p_value=3e-11,
            significant=True,
            verdict="better",
            adjusted_p_value=0.0312,
            adjusted_effect=Interval(estimate=0.294, ci_low=0.173, ci_high=0.415),
            adjusted_confidence_level=0.9875,
            sequential=SequentialResult(
                p_value=0.004,
                confidence_sequence=Interval(estimate=0.0295, ci_low=0.011, ci_high=0.048),
                mixing_variance=1e-4,
                planned_units=10_000,
                may_stop=True,
            ),
            bayesian=BayesianResult(
                prior="Beta(1, 1) prior on each arm's conversion rate",
                chance_to_beat_control=0.973,
                expected_loss_ship=0.0001,
                expected_loss_keep=0.03,
            ),
        ),
        MetricComparison(
            metric="page_views",
            event="page_view",
            aggregation=Aggregation.COUNT,
            role="guardrail",
            direction="increase",
            test="welch_t",
            scale="relative",
            control=ArmSummary(variant_key="control", units=10_030, mean=None),
            treatment=ArmSummary(variant_key="treatment", units=9_970, mean=None),
            absolute_effect=None,
            relative_effect=None,
            p_value=None,
            significant=False,
            verdict="not_computable",
            reason="no variance",
            reason_code="zero_variance",
        ),
    ],
    correction="holm",
    may_stop=True,
    stop_reason="every primary metric is decided (always-valid p below alpha)",
    scale="relative",
    planned_units=18_000,
    planned_units_source="plan",
    planned_units_basis="liftstream plan for 'conversion'",
)
ABSOLUTE = SCORECARD.model_copy(
    update={
        "scale": "absolute",
        "metrics": [
            SCORECARD.metrics[0].model_copy(
                update={
                    "scale": "absolute",
                    "adjusted_effect": Interval(estimate=0.0295, ci_low=0.0181, ci_high=0.0409),
                }
            ),
            SCORECARD.metrics[1].model_copy(update={"scale": "absolute"}),
        ],
    }
)


def _day(day: int, control: int, treatment: int, p: float | None) -> DayResults:
    return DayResults(
        day=date(2026, 11, day),
        total_units=control + treatment,
        excluded_units=0,
        variants=[
            VariantDay(variant_key="control", units=control, excluded_units=0, stats=[]),
            VariantDay(variant_key="treatment", units=treatment, excluded_units=0, stats=[]),
        ],
        sample_ratio_p_value=0.8,
        metrics=[
            MetricDay(
                metric="conversion",
                variant_key="treatment",
                p_value=p,
                adjusted_p_value=p,
                sequential_p_value=None if p is None else min(1.0, p * 4),
                absolute_effect=None if p is None else 0.02,
                significant=p is not None and p < 0.05,
                reason=None if p is not None else "an arm has no units",
            )
        ],
    )


DAILY = DailyResults(
    tenant_id="acme",
    experiment_key="checkout-button",
    experiment_version=2,
    days=[_day(26, 40, 0, None), _day(27, 1_200, 1_180, 0.2), _day(28, 10_030, 9_970, 0.00002)],
)


class _CannedResults(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, Any]]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, {"detail": "Not Found"}))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def results_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    _CannedResults.routes = {
        "/v1/tenants/acme/experiments/checkout-button/results?scale=relative": (
            200,
            SCORECARD.model_dump(mode="json"),
        ),
        "/v1/tenants/acme/experiments/checkout-button/results?scale=absolute": (
            200,
            ABSOLUTE.model_dump(mode="json"),
        ),
        "/v1/tenants/acme/experiments/checkout-button/daily": (
            200,
            DAILY.model_dump(mode="json"),
        ),
        "/v1/tenants/acme/experiments/broken/results?scale=relative": (
            500,
            {"detail": "database is locked"},
        ),
        "/v1/tenants/acme/experiments/unknown/results?scale=relative": (
            404,
            {"detail": "experiment not found"},
        ),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedResults)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("LIFTSTREAM_RESULTS_URL", url)
    monkeypatch.setenv("LIFTSTREAM_TENANT", "acme")
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


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
