"""The analytics store on a real DuckDB file: a batch and its loader offsets are written
together or not at all, aggregates keep the latest record per key, events are stored once,
and everything survives closing and reopening the file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from analytics import queries
from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore
from schemas.aggregates import MetricStats, VariantUnits
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Aggregation
from services.results.decoding import TopicRole, add_message

pytestmark = pytest.mark.integration

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def _exposure(unit: str, variant: str = "control") -> ExposureEvent:
    return ExposureEvent(
        tenant_id="acme",
        unit_id=unit,
        timestamp=NOW,
        experiment_key="checkout",
        variant_key=variant,
        attributes={"region": "eu"},
    )


def _units(variant: str, partition: int, units: int) -> VariantUnits:
    return VariantUnits(
        source_partition=partition,
        updated_at=NOW,
        tenant_id="acme",
        experiment_key="checkout",
        variant_key=variant,
        units=units,
    )


def test_a_failing_batch_leaves_neither_rows_nor_offsets(tmp_path: Path) -> None:
    store = AnalyticsStore(tmp_path / "a.duckdb")
    good = LoadBatch()
    good.add_exposure("ns.exposures", 0, 0, _exposure("u1"))
    store.load(good)

    failing = LoadBatch()
    failing.add_outcome(
        "ns.outcomes",
        0,
        0,
        OutcomeEvent(tenant_id="acme", unit_id="u1", timestamp=NOW, event="buy"),
    )
    failing.add_exposure("ns.exposures", 0, 1, _exposure("u2"))
    # A row DuckDB refuses (the JSON column cannot hold it), as a disk error would fail a write.
    row = failing.exposures.rows[0]
    failing.exposures.rows[0] = (*row[:9], "{not json", *row[10:])
    with pytest.raises(duckdb.Error):
        store.load(failing)

    with store.cursor() as cursor:
        assert cursor.execute("SELECT count(*) FROM outcomes").fetchone() == (0,)
        assert cursor.execute("SELECT unit_id FROM exposures").fetchall() == [("u1",)]
    assert store.loaded_offsets() == {("ns.exposures", 0): 1}
    store.close()


def test_aggregates_keep_the_latest_record_and_events_are_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "b.duckdb"
    store = AnalyticsStore(path)
    first = LoadBatch()
    first.add_aggregate("ns.aggregates", 0, 0, _units("control", 0, 10))
    first.add_aggregate("ns.aggregates", 0, 1, _units("control", 0, 12))  # same key, later
    first.add_aggregate("ns.aggregates", 0, 2, _units("control", 1, 5))
    exposure = _exposure("u1")
    first.add_exposure("ns.exposures", 2, 7, exposure)
    first.add_exposure("ns.exposures", 2, 8, exposure)  # re-delivered in the same batch
    store.load(first)
    second = LoadBatch()
    second.add_aggregate("ns.aggregates", 0, 3, _units("control", 1, 6))
    second.add_aggregate(
        "ns.aggregates",
        0,
        4,
        MetricStats(
            source_partition=1,
            updated_at=NOW + timedelta(seconds=1),
            tenant_id="acme",
            experiment_key="checkout",
            variant_key="control",
            event="buy",
            aggregation=Aggregation.SUM,
            sum=3.0,
            sum_sq=5.0,
        ),
    )
    second.add_exposure("ns.exposures", 2, 9, exposure)  # re-delivered in a later batch
    store.load(second)
    store.close()

    reopened = AnalyticsStore(path)
    with reopened.cursor() as cursor:
        assert queries.variant_units(cursor, "acme", "checkout") == {"control": 12 + 6}
        assert queries.metric_stats(cursor, "acme", "checkout") == {
            ("control", "buy", Aggregation.SUM): (3.0, 5.0)
        }
        rows = cursor.execute("SELECT event_id, kafka_offset FROM exposures").fetchall()
        assert rows == [(exposure.event_id, 7)]  # the first delivery is the one kept
    assert reopened.loaded_offsets() == {("ns.aggregates", 0): 5, ("ns.exposures", 2): 10}
    reopened.close()


def test_readers_see_committed_batches_only(tmp_path: Path) -> None:
    store = AnalyticsStore(tmp_path / "c.duckdb")
    batch = LoadBatch()
    for index in range(2000):
        batch.add_exposure("ns.exposures", index % 4, index // 4, _exposure(f"u{index}"))
    with store.cursor() as reader:
        reader.begin()
        assert reader.execute("SELECT count(*) FROM exposures").fetchone() == (0,)
        store.load(batch)
        # The reader's transaction keeps its snapshot while the batch is committed.
        assert reader.execute("SELECT count(*) FROM exposures").fetchone() == (0,)
        reader.commit()
        assert reader.execute("SELECT count(*) FROM exposures").fetchone() == (2000,)
    store.close()


def test_a_batch_message_loads_its_good_events_and_records_its_bad_ones(tmp_path: Path) -> None:
    store = AnalyticsStore(tmp_path / "batch.duckdb")
    good = [_exposure(f"u{n}") for n in range(3)]
    bad = b'{"tenant_id": "acme", "unit_id": "u9", "type": "exposure"}'
    value = b"[" + b",".join([good[0].to_json(), bad, good[1].to_json(), good[2].to_json()]) + b"]"
    batch = LoadBatch()
    add_message(batch, TopicRole.EXPOSURES, "ns.exposures", 1, 40, value)
    add_message(batch, TopicRole.EXPOSURES, "ns.exposures", 1, 41, _exposure("u7").to_json())
    add_message(batch, TopicRole.EXPOSURES, "ns.exposures", 1, 42, b"[oops")
    assert (len(batch), batch.events) == (3, 4)
    store.load(batch)

    with store.cursor() as cursor:
        rows = cursor.execute(
            "SELECT unit_id, kafka_offset FROM exposures ORDER BY unit_id"
        ).fetchall()
        rejections = cursor.execute(
            "SELECT kafka_offset, reason FROM load_rejections ORDER BY kafka_offset"
        ).fetchall()
        tenants = cursor.execute(
            "SELECT tenant_id FROM load_rejections ORDER BY kafka_offset"
        ).fetchall()
    assert rows == [("u0", 40), ("u1", 40), ("u2", 40), ("u7", 41)]
    assert [offset for offset, _ in rejections] == [40, 42]
    assert rejections[0][1].startswith("batch element 1: ")
    assert "experiment_key" in rejections[0][1]
    assert "Invalid JSON" in rejections[1][1]
    assert tenants == [("acme",), (None,)]  # the bad element's tenant; nobody's
    assert store.loaded_offsets() == {("ns.exposures", 1): 43}
    store.close()
