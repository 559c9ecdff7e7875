"""Replaying a metric from the raw log in DuckDB: the per-variant sums equal a direct
computation over the same events (windows, caps at a value or a percentile, ratios, CUPED
covariates, units that saw two variants excluded, ``since``), read in small chunks; and
replay jobs store them where scorecards pick them up for the current definition only."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics import queries, replay
from analytics.replay import replay_metric
from analytics.store import AnalyticsStore
from schemas.experiment import Experiment, MetricDefinition
from services.results.replay_jobs import ReplayJobs, ReplayRequest, UnknownReplayTarget

START = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class Log:
    exposures: list[tuple[str, datetime, str]]  # unit, timestamp, variant
    outcomes: list[tuple[str, datetime, str, float]]  # unit, timestamp, event, value


def _log(seed: int = 7, units: int = 240) -> Log:
    rng = random.Random(seed)
    log = Log([], [])
    for index in range(units):
        unit = f"u{index:04d}"
        first = START + rng.randrange(0, 96) * HOUR
        variant = rng.choice(["control", "treatment"])
        log.exposures.append((unit, first, variant))
        log.exposures.append((unit, first + rng.randrange(1, 50) * HOUR, variant))
        if index % 37 == 0:  # saw both variants: excluded
            log.exposures.append((unit, first + 2 * HOUR, "treatment"))
            log.exposures.append((unit, first + 3 * HOUR, "control"))
        for _ in range(rng.randrange(0, 6)):
            moment = first + timedelta(minutes=rng.randrange(-20 * 24 * 60, 10 * 24 * 60))
            log.outcomes.append((unit, moment, "purchase", round(rng.expovariate(0.05), 2)))
        for _ in range(rng.randrange(0, 8)):
            moment = first + timedelta(minutes=rng.randrange(-60, 5 * 24 * 60))
            log.outcomes.append((unit, moment, "session_start", 1.0))
    log.outcomes.append(("stranger", START, "purchase", 5.0))  # never exposed
    return log


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = AnalyticsStore(tmp_path / "replay.duckdb")
    yield store
    store.close()


def _load(store: AnalyticsStore, log: Log, tenant: str = "acme") -> None:
    def column(values: list[Any]) -> np.ndarray[Any, Any]:
        return np.array(values, dtype=object)

    with store.cursor() as cursor:
        units, moments, variants = zip(*log.exposures, strict=True)
        cursor.register(
            "rows",
            {"unit": column(list(units)), "t": column(list(moments)), "v": column(list(variants))},
        )
        cursor.execute(
            """INSERT INTO exposures SELECT uuid(), $tenant, unit, t, NULL, 1, 'checkout', v,
                   1, '{}', 0, row_number() OVER () FROM rows""",
            {"tenant": tenant},
        )
        cursor.unregister("rows")
        units, moments, events, values = zip(*log.outcomes, strict=True)
        cursor.register(
            "rows",
            {
                "unit": column(list(units)),
                "t": column(list(moments)),
                "e": column(list(events)),
                "value": np.array(values, dtype=np.float64),
            },
        )
        cursor.execute(
            """INSERT INTO outcomes SELECT uuid(), $tenant, unit, t, NULL, 1, e, value, '{}',
                   0, row_number() OVER () FROM rows""",
            {"tenant": tenant},
        )
        cursor.unregister("rows")


def _direct(
    log: Log, metric: MetricDefinition, since: datetime | None = None
) -> dict[str, tuple[float, ...]]:
    """Per variant (n, Σx, Σx², Σy, Σxy, Σc, Σxc), straight from the event lists."""
    seen: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for unit, moment, variant in log.exposures:
        seen[unit].append((moment, variant))
    units = {
        unit: min(exposures)
        for unit, exposures in seen.items()
        if len({variant for _, variant in exposures}) == 1
        and (since is None or min(exposures)[0] >= since)
    }
    window = None if metric.window_hours is None else timedelta(hours=metric.window_hours)
    lookback = timedelta(days=metric.cuped_lookback_days or 0)

    def total(unit: str, event: str, kind: str, start: datetime, end: datetime | None) -> float:
        values = [
            v
            for u, t, e, v in log.outcomes
            if u == unit and e == event and start <= t and (end is None or t < end)
        ]
        return float(sum(values)) if kind == "sum" else float(len(values))

    rows = {}
    for unit, (first, variant) in units.items():
        end = None if window is None else first + window
        if metric.numerator is not None and metric.denominator is not None:
            x = total(unit, metric.numerator.event, metric.numerator.type, first, end)
            y = total(unit, metric.denominator.event, metric.denominator.type, first, end)
        else:
            x, y = total(unit, metric.event, metric.type.value, first, end), 0.0
        c = total(unit, metric.event, metric.type.value, first - lookback, first)
        rows[unit] = (variant, x, y, c)
    cap = None
    if metric.cap is not None:
        cap = metric.cap.value or float(
            np.percentile([x for _, x, _, _ in rows.values()], metric.cap.percentile)
        )
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0] * 7)
    for variant, x, y, c in rows.values():
        if cap is not None:
            x, c = min(x, cap), min(c, cap)
        for index, term in enumerate((1, x, x * x, y, x * y, c, x * c)):
            sums[variant][index] += term
    return {variant: tuple(values) for variant, values in sums.items()}


METRICS = [
    {"name": "revenue", "event": "purchase", "type": "sum", "cuped_lookback_days": 14},
    {"name": "buyers_24h", "event": "purchase", "type": "conversion", "window_hours": 24},
    {"name": "orders", "event": "purchase", "type": "count", "cap": {"value": 2}},
    {"name": "revenue_p90", "event": "purchase", "type": "sum", "cap": {"percentile": 90}},
    {
        "name": "revenue_per_session",
        "type": "ratio",
        "numerator": {"event": "purchase", "type": "sum"},
        "denominator": {"event": "session_start", "type": "count"},
        "window_hours": 72,
        "cap": {"percentile": 95},
    },
]


@pytest.mark.parametrize("body", METRICS, ids=[m["name"] for m in METRICS])
def test_replayed_sums_equal_a_direct_computation(
    store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]
) -> None:
    monkeypatch.setattr(replay, "CHUNK_ROWS", 7)  # many chunks, units split across them
    log = _log()
    _load(store, log)
    metric = MetricDefinition.model_validate(body)
    seen: list[tuple[int, int]] = []
    since = START + 24 * HOUR if metric.cap is None else None
    with store.cursor() as cursor:
        result = replay_metric(
            cursor, "acme", "checkout", metric, since=since, progress=lambda *p: seen.append(p)
        )
    expected = _direct(log, metric, since)
    assert set(result.sums) == set(expected)
    for variant, sums in result.sums.items():
        n, sx, sxx, sy, sxy, sc, sxc = expected[variant]
        got = (sums.n, sums.sum_x, sums.sum_xx, sums.sum_y, sums.sum_xy, sums.sum_c, sums.sum_xc)
        assert got == pytest.approx((n, sx, sxx, sy, sxy, sc, sxc), rel=1e-9, abs=1e-9)
    mixed = [
        unit
        for unit in {u for u, _, _ in log.exposures}
        if len({v for u, _, v in log.exposures if u == unit}) > 1
        and (since is None or min(t for u, t, _ in log.exposures if u == unit) >= since)
    ]
    assert sum(result.excluded.values()) == len(mixed) > 0
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] == sum(s.n for s in result.sums.values())


def _define(store: AnalyticsStore, experiment: Experiment, tenant: str = "acme") -> None:
    with store.cursor() as cursor:
        cursor.execute(
            "INSERT OR REPLACE INTO experiments VALUES (?, ?, 1, 'running', ?, 'ana', '', ?, ?, 0)",
            [tenant, experiment.key, experiment.model_dump_json(), START, str(uuid.uuid4())],
        )


def _experiment(*metrics: dict[str, Any]) -> Experiment:
    return Experiment.model_validate(
        {
            "key": "checkout",
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [{"name": "buyers", "event": "purchase", "type": "conversion"}, *metrics],
        }
    )


def _finished(jobs: ReplayJobs, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        job = jobs.get("acme", job["job_id"]) or job
    assert job["status"] == "done", job
    return job


def test_a_replay_job_feeds_the_scorecard_until_the_definition_changes(
    store: AnalyticsStore,
) -> None:
    _load(store, _log())
    ratio = METRICS[-1]
    _define(store, _experiment(ratio))
    jobs = ReplayJobs(store)
    with store.cursor() as cursor:
        before = queries.scorecard(cursor, "acme", "checkout")
    assert before is not None and "liftstream replay" in (before.metrics[1].reason or "")

    job = _finished(jobs, jobs.start("acme", ReplayRequest(metric="revenue_per_session")))
    assert job["done_units"] == job["total_units"] == 233  # 240 units, 7 excluded
    assert {row["variant_key"] for row in job["results"]} == {"control", "treatment"}
    with store.cursor() as cursor:
        after = queries.scorecard(cursor, "acme", "checkout")
        stored = queries.replayed_rows(cursor, "acme", "revenue_per_session")
    assert after is not None
    compared = after.metrics[1]
    assert compared.test == "ratio_delta" and compared.p_value is not None
    assert compared.control.units + compared.treatment.units == 233
    assert [row["n"] for row in stored] == [row["n"] for row in job["results"]]

    # A new definition (another window) makes the stored replay stale: replay again.
    _define(store, _experiment({**ratio, "window_hours": 24}))
    with store.cursor() as cursor:
        stale = queries.scorecard(cursor, "acme", "checkout")
    assert stale is not None and stale.metrics[1].p_value is None


def test_replay_refuses_unknown_metrics_and_experiments(store: AnalyticsStore) -> None:
    _define(store, _experiment())
    jobs = ReplayJobs(store)
    with pytest.raises(UnknownReplayTarget, match="metric: 'nope' is not a metric of tenant"):
        jobs.start("acme", ReplayRequest(metric="nope"))
    with pytest.raises(UnknownReplayTarget, match="experiment: 'other' is not defined"):
        jobs.start("acme", ReplayRequest(metric="buyers", experiment="other"))
