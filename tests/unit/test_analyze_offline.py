"""``liftstream analyze``: scorecards from exported exposures and outcomes (CSV, Parquet).

The exports are generated with seeded numpy and include the awkward rows warehouse data
has: a duplicated event, an outcome before the unit's exposure, a unit exposed to both
variants, rows of another experiment and another tenant. The reference numbers come from
the unit-level values computed here in plain Python and tested with statsmodels.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from statsmodels.stats.proportion import proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
from typer.testing import CliRunner

from analytics.offline import offline_scorecard
from liftstream.errors import InvalidInputError
from liftstream_cli.control import load_experiment_file
from liftstream_cli.main import app
from schemas.experiment import Aggregation, Experiment
from schemas.results import Scorecard

EXPERIMENT_FILE = Path(__file__).parents[2] / "examples" / "checkout-button.yaml"
TENANT = "acme"
START = datetime(2026, 3, 1, tzinfo=UTC)
EXPOSURE_FIELDS = ["unit_id", "timestamp", "variant_key", "experiment_key", "event_id"]
OUTCOME_FIELDS = ["unit_id", "timestamp", "event", "value", "event_id", "tenant_id"]

Row = dict[str, Any]


def _generate(seed: int = 7, units: int = 300) -> tuple[list[Row], list[Row]]:
    rng = np.random.default_rng(seed)
    exposures: list[Row] = []
    outcomes: list[Row] = []
    counter = iter(range(10**9))

    def stamp(seconds: float) -> str:
        return (START + timedelta(seconds=float(seconds))).isoformat(sep=" ")

    for index in range(units):
        unit = f"u{index}"
        variant = "treatment" if rng.random() < 0.5 else "control"
        first = rng.uniform(0, 86_400)
        for offset in (0.0, rng.uniform(10, 5_000)):  # a second, later exposure
            exposures.append(
                {
                    "unit_id": unit,
                    "timestamp": stamp(first + offset),
                    "variant_key": variant,
                    "experiment_key": "checkout-button",
                    "event_id": f"x{next(counter)}",
                }
            )
        rate = 0.25 if variant == "treatment" else 0.15
        purchases = int(rng.random() < rate) * int(rng.integers(1, 4))
        views = int(rng.poisson(4.0 if variant == "treatment" else 3.6))
        for event, count in (("purchase", purchases), ("page_view", views)):
            for _ in range(count):
                outcomes.append(
                    {
                        "unit_id": unit,
                        "timestamp": stamp(first + rng.uniform(0, 20_000)),
                        "event": event,
                        "value": round(float(rng.gamma(2.0, 20.0)), 2),
                        "event_id": f"o{next(counter)}",
                        "tenant_id": TENANT,
                    }
                )
        if rng.random() < 0.2:  # before the unit's first exposure: not attributed
            outcomes.append(
                {
                    "unit_id": unit,
                    "timestamp": stamp(first - rng.uniform(1, 3_600)),
                    "event": "purchase",
                    "value": 99.0,
                    "event_id": f"early{next(counter)}",
                    "tenant_id": TENANT,
                }
            )
    # One unit seen in both variants, one duplicated purchase, rows of others.
    switched = _other(exposures[0]["variant_key"])
    exposures.append({**exposures[0], "variant_key": switched, "event_id": "x-both"})
    both = exposures[0]["unit_id"]
    purchase = next(
        r
        for r in outcomes
        if r["event"] == "purchase"
        and r["unit_id"] != both
        and not r["event_id"].startswith("early")
    )
    outcomes.append(dict(purchase))
    exposures.append({**exposures[2], "experiment_key": "other-test", "event_id": "x-other"})
    stranger = {"unit_id": "stranger", "event_id": "x-stranger"}
    exposures.append({**exposures[4], "experiment_key": "other-test", **stranger})
    view = next(r for r in outcomes if r["event"] == "page_view" and r["unit_id"] != both)
    outcomes.append({**view, "tenant_id": "someone-else", "event_id": "o-else"})
    return exposures, outcomes


def _other(variant: str) -> str:
    return "control" if variant == "treatment" else "treatment"


def _unit_values(
    exposures: list[Row], outcomes: list[Row], experiment: Experiment
) -> tuple[dict[str, dict[tuple[str, Aggregation], list[float]]], int]:
    """Per variant and (event, aggregation): every included unit's value; excluded units."""
    seen_ids: set[str] = set()

    def unique(rows: list[Row]) -> list[Row]:
        kept = []
        for row in rows:
            if row["event_id"] not in seen_ids:
                seen_ids.add(row["event_id"])
                kept.append(row)
        return kept

    first: dict[str, datetime] = {}
    variants: dict[str, set[str]] = defaultdict(set)
    for row in unique([r for r in exposures if r["experiment_key"] == experiment.key]):
        when = datetime.fromisoformat(row["timestamp"])
        first[row["unit_id"]] = min(first.get(row["unit_id"], when), when)
        variants[row["unit_id"]].add(row["variant_key"])
    included = {unit: next(iter(vs)) for unit, vs in variants.items() if len(vs) == 1}
    events: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in unique([r for r in outcomes if r["tenant_id"] == TENANT]):
        unit = row["unit_id"]
        if unit in included and datetime.fromisoformat(row["timestamp"]) >= first[unit]:
            events[(unit, row["event"])].append(float(row["value"]))
    values: dict[str, dict[tuple[str, Aggregation], list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for unit, variant in included.items():
        for metric in experiment.metrics:
            done = events.get((unit, metric.event), [])
            value = {
                Aggregation.CONVERSION: float(bool(done)),
                Aggregation.COUNT: float(len(done)),
                Aggregation.SUM: sum(done),
            }[metric.type]
            values[variant][(metric.event, metric.type)].append(value)
    return values, len(variants) - len(included)


def _write_csv(path: Path, rows: list[Row], fields: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _to_parquet(csv_path: Path) -> Path:
    target = csv_path.with_suffix(".parquet")
    with duckdb.connect(":memory:") as connection:
        connection.execute(
            f"COPY (SELECT * FROM read_csv_auto('{csv_path}')) TO '{target}' (FORMAT parquet)"
        )
    return target


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("exports")
    exposures, outcomes = _generate()
    exposures_csv = _write_csv(folder / "exposures.csv", exposures, EXPOSURE_FIELDS)
    outcomes_csv = _write_csv(folder / "outcomes.csv", outcomes, OUTCOME_FIELDS)
    return {
        "csv": (exposures_csv, outcomes_csv),
        "parquet": (_to_parquet(exposures_csv), _to_parquet(outcomes_csv)),
    }


def _assert_matches_reference(scorecard: Scorecard, experiment: Experiment) -> None:
    exposures, outcomes = _generate()
    values, excluded = _unit_values(exposures, outcomes, experiment)
    assert excluded == 1
    assert scorecard.excluded_units == excluded
    assert scorecard.total_units == sum(len(next(iter(v.values()))) for v in values.values())
    assert len(scorecard.metrics) == len(experiment.metrics)
    for comparison in scorecard.metrics:
        cell = (comparison.event, comparison.aggregation)
        x_t = np.array(values["treatment"][cell])
        x_c = np.array(values["control"][cell])
        assert comparison.treatment.units == len(x_t)
        assert comparison.control.units == len(x_c)
        assert comparison.treatment.mean == pytest.approx(x_t.mean(), rel=1e-8)
        assert comparison.control.mean == pytest.approx(x_c.mean(), rel=1e-8)
        if comparison.aggregation is Aggregation.CONVERSION:
            _, p_value = proportions_ztest([x_t.sum(), x_c.sum()], [len(x_t), len(x_c)])
        else:
            compare = CompareMeans(DescrStatsW(x_t), DescrStatsW(x_c))
            _, p_value, _ = compare.ttest_ind(usevar="unequal")
        assert comparison.p_value is not None
        assert math.isclose(comparison.p_value, float(p_value), rel_tol=1e-8)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_scorecard_matches_statsmodels_on_unit_values(
    exports: dict[str, tuple[Path, Path]], kind: str
) -> None:
    experiment = load_experiment_file(EXPERIMENT_FILE)
    exposures, outcomes = exports[kind]
    scorecard = offline_scorecard(exposures, outcomes, experiment, TENANT, scale="absolute")
    assert scorecard.tenant_id == TENANT
    assert scorecard.experiment_key == experiment.key
    _assert_matches_reference(scorecard, experiment)


def test_exports_without_optional_columns_are_scored(tmp_path: Path) -> None:
    experiment = load_experiment_file(EXPERIMENT_FILE)
    exposures, outcomes = _generate(seed=11, units=120)
    mine = [r for r in exposures if r["experiment_key"] == experiment.key]
    ours = [r for r in outcomes if r["tenant_id"] == TENANT]
    exposures_csv = _write_csv(
        tmp_path / "e.csv",
        [{k: r[k] for k in EXPOSURE_FIELDS[:3]} for r in mine],
        EXPOSURE_FIELDS[:3],
    )
    outcomes_csv = _write_csv(
        tmp_path / "o.csv",
        [{k: r[k] for k in OUTCOME_FIELDS[:4]} for r in ours],
        OUTCOME_FIELDS[:4],
    )
    scorecard = offline_scorecard(exposures_csv, outcomes_csv, experiment, TENANT)
    # Without event ids the duplicated purchase counts twice: the totals show it.
    with_ids = offline_scorecard(
        _write_csv(tmp_path / "e2.csv", mine, EXPOSURE_FIELDS),
        _write_csv(tmp_path / "o2.csv", ours, OUTCOME_FIELDS),
        experiment,
        TENANT,
    )
    counts = {(c.aggregation, c.treatment.mean, c.control.mean) for c in scorecard.metrics} ^ {
        (c.aggregation, c.treatment.mean, c.control.mean) for c in with_ids.metrics
    }
    assert {aggregation for aggregation, _, _ in counts} <= {Aggregation.COUNT, Aggregation.SUM}
    assert counts
    assert scorecard.excluded_units == 1


def test_missing_column_names_the_file_and_column(tmp_path: Path) -> None:
    experiment = load_experiment_file(EXPERIMENT_FILE)
    fields = ["unit_id", "timestamp"]
    exposures = _write_csv(tmp_path / "e.csv", [{"unit_id": "u1", "timestamp": START}], fields)
    outcomes = _write_csv(tmp_path / "o.csv", [], OUTCOME_FIELDS)
    with pytest.raises(InvalidInputError) as caught:
        offline_scorecard(exposures, outcomes, experiment, TENANT)
    assert str(exposures) in str(caught.value)
    assert "variant_key" in str(caught.value)


def test_cli_prints_the_scorecard_json(exports: dict[str, tuple[Path, Path]]) -> None:
    exposures, outcomes = exports["parquet"]
    result = CliRunner().invoke(
        app,
        [
            "analyze",
            "--exposures",
            str(exposures),
            "--outcomes",
            str(outcomes),
            "-f",
            str(EXPERIMENT_FILE),
            "--tenant",
            TENANT,
            "--json",
            "--scale",
            "absolute",
        ],
    )
    assert result.exit_code == 0, result.output
    scorecard = Scorecard.model_validate(json.loads(result.stdout))
    assert scorecard.scale == "absolute"
    assert all(m.scale == "absolute" for m in scorecard.metrics)
    _assert_matches_reference(scorecard, load_experiment_file(EXPERIMENT_FILE))


def _rest() -> list[str]:
    return ["-f", str(EXPERIMENT_FILE), "--tenant", TENANT]


def test_cli_table_shows_the_metrics(exports: dict[str, tuple[Path, Path]]) -> None:
    exposures, outcomes = exports["csv"]
    result = CliRunner().invoke(
        app,
        ["analyze", "--exposures", str(exposures), "--outcomes", str(outcomes), *_rest()],
    )
    assert result.exit_code == 0, result.output
    for metric in ("conversion", "revenue", "page_views"):
        assert metric in result.stdout


def test_cli_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    exposures = _write_csv(tmp_path / "e.csv", [], EXPOSURE_FIELDS)
    outcomes = _write_csv(tmp_path / "o.csv", [], ["unit_id", "timestamp", "event"])
    result = CliRunner().invoke(
        app,
        ["analyze", "--exposures", str(exposures), "--outcomes", str(outcomes), *_rest()],
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert str(outcomes) in result.output
    assert "value" in result.output
    assert "Traceback" not in result.output


def test_unknown_variant_and_mismatched_timestamps_are_clear_errors(tmp_path: Path) -> None:
    experiment = load_experiment_file(EXPERIMENT_FILE)
    fields = EXPOSURE_FIELDS[:3]
    exposure = {"unit_id": "u1", "timestamp": START.isoformat(sep=" "), "variant_key": "blue"}
    outcome = {"unit_id": "u1", "timestamp": 12, "event": "purchase", "value": 1}
    exposures = _write_csv(tmp_path / "e.csv", [exposure], fields)
    outcomes = _write_csv(tmp_path / "o.csv", [], OUTCOME_FIELDS[:4])
    with pytest.raises(InvalidInputError, match="'blue' is not one of"):
        offline_scorecard(exposures, outcomes, experiment, TENANT)
    exposures = _write_csv(tmp_path / "e.csv", [{**exposure, "variant_key": "control"}], fields)
    outcomes = _write_csv(tmp_path / "o.csv", [outcome], OUTCOME_FIELDS[:4])
    with pytest.raises(InvalidInputError, match="cannot score"):
        offline_scorecard(exposures, outcomes, experiment, TENANT)


def test_ratio_and_mean_metrics_are_computed_from_the_exports(
    exports: dict[str, tuple[Path, Path]],
) -> None:
    base = load_experiment_file(EXPERIMENT_FILE)
    added = [
        {
            "name": "revenue_per_view",
            "type": "ratio",
            "numerator": {"event": "purchase", "type": "sum"},
            "denominator": {"event": "page_view", "type": "count"},
        },
        {"name": "order_value", "event": "purchase", "type": "mean"},
    ]
    experiment = Experiment.model_validate(
        {**base.model_dump(), "metrics": [*base.model_dump()["metrics"], *added]}
    )
    scorecard = offline_scorecard(*exports["csv"], experiment, TENANT)
    exposures, outcomes = _generate()
    parts = [
        {"name": "r", "event": "purchase", "type": "sum"},
        {"name": "c", "event": "purchase", "type": "count"},
        {"name": "v", "event": "page_view", "type": "count"},
    ]
    reference = Experiment.model_validate(
        {**base.model_dump(exclude={"metrics"}), "metrics": parts}
    )
    values, _ = _unit_values(exposures, outcomes, reference)
    by_name = {comparison.metric: comparison for comparison in scorecard.metrics}
    for variant in ("control", "treatment"):
        revenue = sum(values[variant][("purchase", Aggregation.SUM)])
        views = sum(values[variant][("page_view", Aggregation.COUNT)])
        orders = sum(values[variant][("purchase", Aggregation.COUNT)])
        ratio = getattr(by_name["revenue_per_view"], variant)
        mean = getattr(by_name["order_value"], variant)
        assert ratio.mean == pytest.approx(revenue / views, rel=1e-9)
        assert mean.mean == pytest.approx(revenue / orders, rel=1e-9)
    assert by_name["revenue_per_view"].test == "ratio_delta"
    assert by_name["order_value"].p_value is not None
