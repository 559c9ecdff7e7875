"""``liftstream results EXP --health`` shows what the pipeline counted and refused, and
quarantined definitions; a scorecard shows its errors; a replay of an empty raw log says
so instead of a "0/? units" bar. The results service is a canned HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from liftstream_cli import replay as replay_cli
from liftstream_cli.main import app
from liftstream_cli.replay import run_replay
from schemas.results import ExperimentHealth, PipelineError, RejectedCount
from tests.unit.canned_results import DAILY, SCORECARD, CannedResults

QUARANTINED = PipelineError(
    stage="stream",
    subject="metric aov",
    reason="metric 'aov' cannot be kept live and is quarantined: OverflowError: too big",
    at=datetime(2026, 3, 1, tzinfo=UTC),
)
HEALTH = ExperimentHealth(
    tenant_id="acme",
    experiment_key="checkout-button",
    exposures=1200,
    duplicate_exposures=37,
    late_exposures=5,
    units=1100,
    units_in_several_variants=4,
    tenant_outcomes=900,
    tenant_duplicate_outcomes=12,
    tenant_late_outcomes=3,
    tenant_rejected=21,
    rejected_by_reason=[
        RejectedCount(
            stage="collector", field="timestamp", count=20, example="timestamp: not a time"
        ),
        RejectedCount(stage="stream", field="key", count=1, example="key: not tenant:unit"),
    ],
    errors=[QUARANTINED],
    empty_raw_log=False,
)


@pytest.fixture
def with_health(results_url: str) -> Iterator[str]:
    CannedResults.routes["/v1/tenants/acme/experiments/checkout-button/health"] = (
        200,
        HEALTH.model_dump(mode="json"),
    )
    erroring = SCORECARD.model_copy(update={"errors": [QUARANTINED]})
    CannedResults.routes["/v1/tenants/acme/experiments/checkout-button/results?scale=relative"] = (
        200,
        erroring.model_dump(mode="json"),
    )
    yield results_url


def test_health_shows_counts_refusals_by_reason_and_quarantined_definitions(
    with_health: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["results", "checkout-button", "--health"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "1,200" in text and "37" in text  # exposures stored, duplicates dropped
    assert "left out for seeing several variants: 4" in text
    assert "refused messages of the tenant: 21" in text
    assert "timestamp: not a time" in text and "collector" in text
    assert "OverflowError" in text and "metric aov" in text
    as_json = CliRunner().invoke(app, ["results", "checkout-button", "--health", "--json"])
    assert ExperimentHealth.model_validate_json(as_json.output) == HEALTH


def test_the_scorecard_prints_the_experiment_errors(with_health: str) -> None:
    result = CliRunner().invoke(app, ["results", "checkout-button"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "error (stream) metric aov" in result.output


class _EmptyLogApi:
    """A replay job over an empty raw log: counted, nothing to do, done."""

    def __init__(self) -> None:
        self.polls = 0

    def start_replay(self, tenant_id: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._job("running", None)

    def replay_job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        self.polls += 1
        return self._job("done", "nothing to replay: the raw log of tenant 'acme' holds no unit")

    @staticmethod
    def _job(status: str, note: str | None) -> dict[str, Any]:
        return {
            "job_id": "j1",
            "metric": "aov",
            "status": status,
            "done_units": 0,
            "total_units": 0,
            "error": None,
            "results": [],
            "note": note,
        }


def test_a_replay_of_an_empty_raw_log_says_so_without_a_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_bar(*args: object, **kwargs: object) -> None:
        raise AssertionError("a progress bar of 0/? units was drawn")

    monkeypatch.setattr(replay_cli, "Progress", no_bar)
    api = _EmptyLogApi()
    job = run_replay(api, "acme", "aov", None, None, sleep=lambda _: None)  # type: ignore[arg-type]
    assert api.polls == 1 and job["note"].startswith("nothing to replay")


def test_daily_takes_since_and_through_and_shows_what_was_clamped(results_url: str) -> None:
    clamped = DAILY.model_copy(update={"clamped": "no event after 2026-03-03"})
    CannedResults.routes[
        "/v1/tenants/acme/experiments/checkout-button/daily?since=2026-03-01&through=9999-12-31"
    ] = (200, clamped.model_dump(mode="json"))
    result = CliRunner().invoke(
        app,
        [
            "results",
            "checkout-button",
            "--daily",
            "--since",
            "2026-03-01",
            "--through",
            "9999-12-31",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "no event after 2026-03-03" in result.output
    alone = CliRunner().invoke(app, ["results", "checkout-button", "--since", "2026-03-01"])
    assert alone.exit_code == 2 and "--daily" in alone.output
