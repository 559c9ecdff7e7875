"""Replaying a metric from the raw log, beside reading the same rows out of DuckDB.

A DuckDB analytics store (``analytics.store.AnalyticsStore``, a temporary file) gets
``--units`` exposed units of one experiment (two exposures each) and about 6 outcomes a
unit (purchases and sessions). Timed in the same process on the same file, best of
``--rounds`` interleaved rounds, CPU time of this process (the machine is shared):

- ``read rows (baseline)``: the replay's own query (units' first exposure, exclusion,
  outcome rows in unit order) fetched in chunks into Python, nothing computed: the floor
  any replay through Python pays.
- ``replay ratio, 7-day window``: ``analytics.replay.replay_metric`` of revenue per
  session (sum of purchase values / session count), windowed.
- ``replay sum, p99 cap``: revenue capped at its 99th percentile over the units (two
  passes: values kept, then capped and summed).
- ``unit_value`` per call on a 40-event history, beside ``math.fsum`` of the same
  values (the stream's hot path and what it cannot go below).

Run: ``.venv/bin/python -m bench.replay_metric [--units 100000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from analytics import replay
from analytics.replay import replay_metric
from analytics.store import AnalyticsStore
from analytics.unit_metrics import UnitMetric, unit_value
from schemas.experiment import MetricDefinition

START_US = 1_772_000_000_000_000
HOUR_US = 3_600_000_000

RATIO = MetricDefinition.model_validate(
    {
        "name": "revenue_per_session",
        "type": "ratio",
        "numerator": {"event": "purchase", "type": "sum"},
        "denominator": {"event": "session_start", "type": "count"},
        "window_hours": 168,
    }
)
CAPPED = MetricDefinition.model_validate(
    {"name": "revenue", "event": "purchase", "type": "sum", "cap": {"percentile": 99}}
)


def _fill(store: AnalyticsStore, units: int, seed: int = 1) -> int:
    rng = np.random.default_rng(seed)
    first = START_US + rng.integers(0, 14 * 24 * HOUR_US, units)
    unit_ids = np.array([f"user-{i:07d}" for i in range(units)], dtype=object)
    variants = np.where(rng.random(units) < 0.5, "control", "treatment").astype(object)
    sessions = rng.poisson(4.0, units)
    purchases = rng.poisson(1.5, units)
    per_unit = sessions + purchases
    owner = np.repeat(np.arange(units), per_unit)
    is_purchase = np.concatenate(
        [
            np.r_[np.zeros(s, bool), np.ones(p, bool)]
            for s, p in zip(sessions, purchases, strict=True)
        ]
    )
    with store.cursor() as cursor:
        cursor.register(
            "rows",
            {
                "unit": np.concatenate([unit_ids, unit_ids]),
                "t": np.concatenate([first, first + HOUR_US]),
                "v": np.concatenate([variants, variants]),
            },
        )
        cursor.execute(
            """INSERT INTO exposures SELECT uuid(), 'acme', unit, make_timestamptz(t), NULL, 1,
                   'checkout', v, 1, '{}', 0, row_number() OVER () FROM rows"""
        )
        cursor.unregister("rows")
        cursor.register(
            "rows",
            {
                "unit": unit_ids[owner],
                "t": first[owner] + rng.integers(-2 * 24 * HOUR_US, 10 * 24 * HOUR_US, owner.size),
                "e": np.where(is_purchase, "purchase", "session_start").astype(object),
                "value": np.where(is_purchase, rng.gamma(2.0, 20.0, owner.size), 1.0),
            },
        )
        cursor.execute(
            """INSERT INTO outcomes SELECT uuid(), 'acme', unit, make_timestamptz(t), NULL, 1,
                   e, value, '{}', 0, row_number() OVER () FROM rows"""
        )
        cursor.unregister("rows")
    return int(owner.size)


def _read_rows(store: AnalyticsStore) -> None:
    compiled = UnitMetric.of(RATIO)
    with store.cursor() as cursor:
        parameters = replay._parameters("acme", "checkout", None)
        for _ in replay._unit_histories(cursor, compiled, parameters):
            pass


def _replay(store: AnalyticsStore, metric: MetricDefinition) -> None:
    with store.cursor() as cursor:
        replay_metric(cursor, "acme", "checkout", metric)


def _cpu(work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = AnalyticsStore(Path(folder) / "bench.duckdb")
        outcomes = _fill(store, args.units)
        print(f"{args.units:,} units, {2 * args.units:,} exposures, {outcomes:,} outcomes")
        cases: dict[str, Callable[[], None]] = {
            "read rows (baseline)": lambda: _read_rows(store),
            "replay ratio, 7-day window": lambda: _replay(store, RATIO),
            "replay sum, p99 cap": lambda: _replay(store, CAPPED),
        }
        best = dict.fromkeys(cases, math.inf)
        for _ in range(args.rounds):
            for name, work in cases.items():
                best[name] = min(best[name], _cpu(work))
        for name, seconds in best.items():
            ratio = seconds / best["read rows (baseline)"]
            print(
                f"{name:<28} {seconds:7.2f} s CPU  {args.units / seconds:>10,.0f} units/s"
                f"  ({ratio:.2f}x baseline)"
            )
        store.close()

    rng = random.Random(2)
    history = {
        "purchase": [
            (START_US + rng.randrange(-48, 240) * HOUR_US, rng.random()) for _ in range(20)
        ],
        "session_start": [(START_US + rng.randrange(-48, 240) * HOUR_US, 1.0) for _ in range(20)],
    }
    compiled = UnitMetric.of(RATIO)
    values = [value for _, value in history["purchase"]]
    calls = 200_000
    fsum = _cpu(lambda: [math.fsum(values) for _ in range(calls)])
    value = _cpu(lambda: [unit_value(history, START_US, compiled) for _ in range(calls)])
    print(
        f"unit_value, 40-event history   {value / calls * 1e6:6.2f} µs/call"
        f"   math.fsum of 20 values (baseline) {fsum / calls * 1e6:6.2f} µs/call"
    )


if __name__ == "__main__":
    main()
