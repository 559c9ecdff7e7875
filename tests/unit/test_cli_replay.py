"""``liftstream replay``: --since is read as an instant (UTC without a zone) or refused
with the option named; the job is polled until it ends and a failed job is an error."""

from __future__ import annotations

from typing import Any

import pytest

from liftstream.errors import InvalidInputError
from liftstream_cli.replay import parse_since, run_replay, sums_table
from liftstream_cli.results_api import ResultsServiceError


class _Api:
    """Answers a started job, then its later states, in order."""

    def __init__(self, *states: dict[str, Any]) -> None:
        self.states = list(states)
        self.started: dict[str, Any] | None = None

    def start_replay(self, tenant_id: str, request: dict[str, Any]) -> dict[str, Any]:
        self.started = request
        return self.states.pop(0)

    def replay_job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        return self.states.pop(0)


def _job(status: str, done: int, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": "j1",
        "metric": "m",
        "status": status,
        "done_units": done,
        "total_units": 10,
        "error": None,
        "results": [],
        **extra,
    }


def test_since_is_an_instant_and_bad_text_names_the_option() -> None:
    assert parse_since("2026-03-01") == "2026-03-01T00:00:00+00:00"
    assert parse_since("2026-03-01T10:00:00+02:00") == "2026-03-01T10:00:00+02:00"
    assert parse_since(None) is None
    with pytest.raises(InvalidInputError, match="--since: 'yesterday' is not a date"):
        parse_since("yesterday")


def test_the_job_is_polled_until_done_and_its_sums_are_tabled() -> None:
    row = {
        "experiment_key": "e",
        "variant_key": "a",
        "n": 10,
        "sum_x": 2.5,
        "sum_xx": 1.0,
        "sum_y": 0.0,
        "sum_c": 0.0,
        "excluded_units": 1,
        "cap_value": None,
    }
    api = _Api(_job("running", 0), _job("running", 4), _job("done", 10, results=[row]))
    job = run_replay(api, "acme", "m", None, "e", sleep=lambda _: None)  # type: ignore[arg-type]
    assert job["done_units"] == 10 and api.started == {
        "metric": "m",
        "since": None,
        "experiment": "e",
    }
    assert sums_table(job).row_count == 1


def test_a_failed_job_is_reported_with_its_error() -> None:
    api = _Api(_job("running", 0), _job("failed", 3, error="IOException: disk full"))
    with pytest.raises(ResultsServiceError, match="replay of metric 'm' failed: IOException"):
        run_replay(api, "acme", "m", None, None, sleep=lambda _: None)  # type: ignore[arg-type]
