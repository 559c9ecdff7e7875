"""``liftstream shadow results|gate``: the figures as a table or JSON; the gate's exit code."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from analytics.shadow import gate_from_results, shadow_results
from liftstream_cli.main import app
from liftstream_cli.results_api import ResultsApi, UnknownExperimentError
from liftstream_cli.shadow_commands import EXIT_NOT_ALLOWED
from schemas.shadow import ShadowObservation


def _results() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    observations = [
        ShadowObservation(
            shadow="pricing",
            run="candidate" if i % 2 else "secondary",
            match=bool(rng.random() > (0.02 if i % 2 else 0.005)),
            primary_ms=float(p),
            other_ms=float(p * 1.1),
        )
        for i, p in enumerate(rng.lognormal(0, 0.3, 4000))
    ]
    return shadow_results("acme", "pricing", observations).model_dump(mode="json")


RESULTS = _results()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setenv("LIFTSTREAM_RESULTS_URL", "http://results.invalid")

    def shadow_json(self: ResultsApi, *args: Any) -> dict[str, Any]:
        calls.append(("results", args))
        if args[1] != "pricing":
            raise UnknownExperimentError(f"no observation of shadow test '{args[1]}'")
        return RESULTS

    def shadow_gate_json(self: ResultsApi, *args: Any) -> dict[str, Any]:
        calls.append(("gate", args))
        from schemas.shadow import ShadowResults

        return gate_from_results(ShadowResults.model_validate(RESULTS), args[2]).model_dump(
            mode="json"
        )

    monkeypatch.setattr(ResultsApi, "shadow_json", shadow_json)
    monkeypatch.setattr(ResultsApi, "shadow_gate_json", shadow_gate_json)
    return calls


def test_results_print_every_figure(served: list[Any]) -> None:
    result = CliRunner().invoke(app, ["shadow", "results", "pricing", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    for label in ("mismatch (candidate)", "noise floor", "mismatch beyond noise", "p99"):
        assert label in result.output
    assert f"{RESULTS['mismatch']['count']:,} / {RESULTS['mismatch']['n']:,}" in result.output
    assert served == [("results", ("acme", "pricing", None, 0.95))]


def test_results_as_json_are_the_service_document(served: list[Any]) -> None:
    result = CliRunner().invoke(
        app, ["shadow", "results", "pricing", "--tenant", "acme", "--json", "--confidence", "0.9"]
    )
    assert result.exit_code == 0
    assert json.loads(result.output) == RESULTS
    assert served[0][1][3] == 0.9


def test_an_unknown_shadow_is_a_clear_error(served: list[Any]) -> None:
    result = CliRunner().invoke(app, ["shadow", "results", "nope", "--tenant", "acme"])
    assert result.exit_code == 1
    assert "no observation of shadow test 'nope'" in result.output


def test_the_gate_exit_code_says_whether_promotion_is_allowed(served: list[Any]) -> None:
    allowed = CliRunner().invoke(
        app, ["shadow", "gate", "pricing", "--tenant", "acme", "--max-beyond-noise", "0.1"]
    )
    assert allowed.exit_code == 0 and "promotion allowed" in allowed.output
    refused = CliRunner().invoke(
        app, ["shadow", "gate", "pricing", "--tenant", "acme", "--max-beyond-noise", "0.001"]
    )
    assert refused.exit_code == EXIT_NOT_ALLOWED
    assert "promotion not allowed" in refused.output
