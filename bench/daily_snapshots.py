"""Daily cumulative snapshots of a ~1M-event experiment, beside its plain totals query.

A DuckDB analytics store (``analytics.store.AnalyticsStore``, a temporary file) gets
``--units`` exposed units of one experiment over 28 days (two exposures each, 2% also
exposed to the other variant) and about 3 outcomes a unit (purchases with values, and
visits), spread from a day before to 14 days after the unit's first exposure. Timed in the
same process on the same file, best of ``--rounds`` interleaved rounds, wall time (DuckDB
uses both cores; the machine is shared):

- ``totals query (baseline)``: the same attribution for the whole log in two queries
  (the SQL of ``liftstream analyze``, ``analytics.offline``, on the store's tables):
  units and excluded per variant, Σx and Σx² per (variant, event) for all aggregations.
- ``daily figures``: ``analytics.daily.daily_figures``, every day's cumulative
  figures (one query), turned into ``DayFigures`` objects.

Run: ``.venv/bin/python -m bench.daily_snapshots [--units 250000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from analytics import offline
from analytics.daily import daily_figures
from analytics.store import AnalyticsStore

START_US = 1_772_000_000_000_000
HOUR_US = 3_600_000_000


def _fill(store: AnalyticsStore, units: int, seed: int = 1) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    first = START_US + rng.integers(0, 28 * 24 * HOUR_US, units)
    unit_ids = np.array([f"user-{i:07d}" for i in range(units)], dtype=object)
    variants = np.where(rng.random(units) < 0.5, "control", "treatment").astype(object)
    other = np.where(variants == "control", "treatment", "control").astype(object)
    switched = np.flatnonzero(rng.random(units) < 0.02)
    outcomes = rng.poisson(3.0, units)
    owner = np.repeat(np.arange(units), outcomes)
    is_purchase = rng.random(owner.size) < 0.4
    exposure_rows = {
        "unit": np.concatenate([unit_ids, unit_ids, unit_ids[switched]]),
        "t": np.concatenate(
            [
                first,
                first + rng.integers(0, 72 * HOUR_US, units),
                first[switched] + rng.integers(0, 10 * 24 * HOUR_US, switched.size),
            ]
        ),
        "v": np.concatenate([variants, variants, other[switched]]),
    }
    outcome_rows = {
        "unit": unit_ids[owner],
        "t": first[owner] + rng.integers(-24 * HOUR_US, 14 * 24 * HOUR_US, owner.size),
        "e": np.where(is_purchase, "purchase", "visit").astype(object),
        "value": np.where(is_purchase, rng.gamma(2.0, 20.0, owner.size), 1.0),
    }
    with store.cursor() as cursor:
        cursor.register("rows", exposure_rows)
        cursor.execute(
            """INSERT INTO exposures SELECT uuid(), 'acme', unit, make_timestamptz(t), NULL, 1,
                   'checkout', v, 1, '{}', 0, row_number() OVER () FROM rows"""
        )
        cursor.unregister("rows")
        cursor.register("rows", outcome_rows)
        cursor.execute(
            """INSERT INTO outcomes SELECT uuid(), 'acme', unit, make_timestamptz(t), NULL, 1,
                   e, value, '{}', 0, row_number() OVER () FROM rows"""
        )
        cursor.unregister("rows")
    return len(exposure_rows["unit"]), int(owner.size)


def _totals(store: AnalyticsStore) -> None:
    with store.cursor() as cursor:
        parameters = {"tenant": "acme", "experiment": "checkout"}
        cursor.execute(offline.UNITS_SQL, parameters).fetchall()
        cursor.execute(offline.UNIT_VALUES_SQL, {**parameters, "events": None}).fetchall()


def _daily(store: AnalyticsStore) -> int:
    with store.cursor() as cursor:
        return len(daily_figures(cursor, "acme", "checkout"))


def _wall(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = AnalyticsStore(Path(folder) / "bench.duckdb")
        exposures, outcomes = _fill(store, args.units)
        days = _daily(store)
        print(
            f"{args.units:,} units, {exposures:,} exposures, {outcomes:,} outcomes"
            f" ({exposures + outcomes:,} events), {days} days"
        )
        cases: dict[str, Callable[[], object]] = {
            "totals query (baseline)": lambda: _totals(store),
            "daily figures": lambda: _daily(store),
        }
        best = dict.fromkeys(cases, math.inf)
        for _ in range(args.rounds):
            for name, work in cases.items():
                best[name] = min(best[name], _wall(work))
        events = exposures + outcomes
        for name, seconds in best.items():
            ratio = seconds / best["totals query (baseline)"]
            print(
                f"{name:<26} {seconds:7.2f} s  {events / seconds:>12,.0f} events/s"
                f"  ({ratio:.2f}x baseline)"
            )
        store.close()


if __name__ == "__main__":
    main()
