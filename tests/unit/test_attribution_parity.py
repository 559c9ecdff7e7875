"""One event log through the four places that attribute it: the stream processor, the
replay, the daily figures and ``analyze`` (offline). They must agree on every unit's
variant, first exposure and exclusion, and on every per-variant sum.

The log (``tests/unit/event_logs.py``) holds what makes attribution hard: late events,
duplicates, a tie, units in two variants, window edges, others' events.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import pytest

from analytics.attribution import to_micros, units_query
from analytics.daily import daily_figures
from analytics.load_batch import LoadBatch
from analytics.offline import offline_figures
from analytics.replay import replay_metric
from analytics.store import AnalyticsStore
from analytics.unit_metrics import UnitMetric, VariantSums
from schemas.events import ExposureEvent
from schemas.experiment import Aggregation
from schemas.topics import TopicCatalog
from services.stream.attribution import LiveMetric, StatsKey, SumsKey, UnitsKey
from services.stream.intake import SourceMessage
from services.stream.processor import StreamProcessor
from tests.unit.event_logs import EXPERIMENT, HOUR, REPLAYED, T0, Event, tricky_log

CATALOG = TopicCatalog(namespace="parity", event_partitions=1)


def _message(event: Event, offsets: dict[str, int]) -> SourceMessage:
    topic = CATALOG.exposures if isinstance(event, ExposureEvent) else CATALOG.outcomes
    offsets[topic] = offsets.get(topic, -1) + 1
    return SourceMessage(topic, 0, offsets[topic], event.partition_key, event.to_json())


def _stream(arrivals: Iterable[Event]) -> StreamProcessor:
    processor = StreamProcessor(CATALOG)
    processor.assign(0, {}, {})
    processor.set_live(
        {
            ("acme", "checkout"): tuple(
                LiveMetric(UnitMetric.of(metric), metric.definition_hash) for metric in REPLAYED
            )
        }
    )
    offsets: dict[str, int] = {}
    for event in arrivals:
        assert processor.handle(_message(event, offsets)) is None
    return processor


def _store(path: Path, arrivals: list[Event]) -> AnalyticsStore:
    store = AnalyticsStore(path)
    batch = LoadBatch()
    for offset, event in enumerate(arrivals):
        if isinstance(event, ExposureEvent):
            batch.add_exposure(CATALOG.exposures, 0, offset, event)
        else:
            batch.add_outcome(CATALOG.outcomes, 0, offset, event)
    store.load(batch)
    return store


def _export(directory: Path, arrivals: list[Event]) -> tuple[Path, Path]:
    """The log as a warehouse would export it: Parquet, duplicates kept as rows."""
    exposures, outcomes = directory / "exposures.parquet", directory / "outcomes.parquet"
    with duckdb.connect() as connection:
        connection.execute(
            "CREATE TABLE e (unit_id VARCHAR, timestamp TIMESTAMPTZ, variant_key VARCHAR,"
            " experiment_key VARCHAR, tenant_id VARCHAR, event_id VARCHAR)"
        )
        connection.execute(
            "CREATE TABLE o (unit_id VARCHAR, timestamp TIMESTAMPTZ, event VARCHAR,"
            " value DOUBLE, tenant_id VARCHAR, event_id VARCHAR)"
        )
        for event in arrivals:
            if isinstance(event, ExposureEvent):
                connection.execute(
                    "INSERT INTO e VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        event.unit_id,
                        event.timestamp,
                        event.variant_key,
                        event.experiment_key,
                        event.tenant_id,
                        str(event.event_id),
                    ],
                )
            else:
                connection.execute(
                    "INSERT INTO o VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        event.unit_id,
                        event.timestamp,
                        event.event,
                        event.value,
                        event.tenant_id,
                        str(event.event_id),
                    ],
                )
        connection.execute(f"COPY e TO '{exposures}' (FORMAT parquet)")
        connection.execute(f"COPY o TO '{outcomes}' (FORMAT parquet)")
    return exposures, outcomes


def _stream_figures(
    processor: StreamProcessor,
) -> tuple[
    dict[str, int],
    dict[str, int],
    dict[tuple[str, str, Aggregation], tuple[float, float]],
    dict[tuple[str, str], VariantSums],
]:
    units: dict[str, int] = {}
    excluded: dict[str, int] = {}
    stats: dict[tuple[str, str, Aggregation], tuple[float, float]] = {}
    sums: dict[tuple[str, str], VariantSums] = {}
    for key, values in processor.partials.totals(0).items():
        if key[:2] != ("acme", "checkout"):
            continue
        if len(key) == 3:
            key = UnitsKey(*key)
            if values[0]:
                units[key.variant_key] = int(values[0])
            if values[1]:
                excluded[key.variant_key] = int(values[1])
        elif len(key) == 5 and isinstance(key[4], Aggregation):
            key = StatsKey(*key)
            if values != (0, 0):
                stats[(key.variant_key, key.event, key.aggregation)] = (values[0], values[1])
        else:
            key = SumsKey(*key)
            sums[(key.variant_key, key.metric)] = VariantSums(int(values[0]), *values[1:])
    return units, excluded, stats, sums


@pytest.fixture(scope="module")
def arrivals() -> list[Event]:
    return tricky_log()


def test_stream_and_sql_assign_every_unit_alike(arrivals: list[Event], tmp_path: Path) -> None:
    processor = _stream(arrivals)
    streamed = {
        key.decode().partition(":")[2]: state.exposures["checkout"]
        for key, state in processor.units[0].items()
        if key.startswith(b"acme:") and "checkout" in state.exposures
    }
    store = _store(tmp_path / "log.duckdb", arrivals)
    with store.cursor() as cursor:
        rows = cursor.execute(
            units_query(), {"tenant": "acme", "experiment": "checkout"}
        ).fetchall()
    store.close()
    queried = {
        unit: (first_us, variant, variants > 1)
        for unit, variant, _first, first_us, variants in rows
    }
    assert queried == {
        unit: (summary.first_timestamp, summary.first_variant, summary.excluded)
        for unit, summary in streamed.items()
    }
    assert queried["late"] == (to_micros(T0 + 2 * HOUR), "treatment", False)
    assert queried["tie"] == (to_micros(T0 + 7 * HOUR), "control", True)
    assert queried["multi"] == (to_micros(T0 + HOUR), "treatment", True)


def test_stream_replay_daily_and_offline_agree(arrivals: list[Event], tmp_path: Path) -> None:
    units, excluded, stats, sums = _stream_figures(_stream(arrivals))
    assert excluded == {"control": 1, "treatment": 1}  # the tie and the multi unit
    edge_revenue = 0.5 + 2.25 + 3.0  # at the exposure and after; not a microsecond before
    assert stats[("control", "purchase", Aggregation.SUM)][0] >= edge_revenue

    store = _store(tmp_path / "log.duckdb", arrivals)
    with store.cursor() as cursor:
        last_day = daily_figures(cursor, "acme", "checkout")[-1]
        replayed = {
            (variant, metric.name): variant_sums
            for metric in REPLAYED
            for variant, variant_sums in replay_metric(
                cursor, "acme", "checkout", metric
            ).sums.items()
        }
        replay_excluded = replay_metric(cursor, "acme", "checkout", REPLAYED[0]).excluded
    store.close()
    offline = offline_figures(*_export(tmp_path, arrivals), EXPERIMENT, "acme")

    # daily
    assert {v: n for v, n in last_day.units.items() if n} == units
    assert {v: n for v, n in last_day.excluded.items() if n} == excluded
    assert {cell: v for cell, v in last_day.stats.items() if v != (0.0, 0.0)} == stats
    # replay
    assert replayed == sums
    assert replay_excluded == excluded
    # offline: its stats are of the metrics' events only (all of them here)
    assert offline.units == units
    assert offline.excluded == excluded
    assert {cell: v for cell, v in offline.stats.items() if v != (0.0, 0.0)} == stats
    assert offline.metric_sums == sums

    # The window's edges, unit by unit: only the edge unit's purchases are in this check.
    edge = [e for e in arrivals if e.unit_id == "edge"]
    _, _, _, edge_sums = _stream_figures(_stream(edge))
    assert edge_sums[("control", "revenue_24h")].sum_x == 0.5 + 2.25
    assert edge_sums[("control", "revenue_per_visit")].sum_x == edge_revenue
