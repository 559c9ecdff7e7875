"""The results loader goes on whatever one tenant's message does: a batch DuckDB refuses
is stored message by message, and only the message it refuses is rejected (with its
tenant), never the loader (a real DuckDB file; the refusal is injected)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore
from schemas.events import ExposureEvent
from schemas.topics import TopicCatalog
from services.results.decoding import TopicRole, add_message
from services.results.loader import Loader, _Message

CATALOG = TopicCatalog(namespace="ns", event_partitions=1)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


class RefusingStore(AnalyticsStore):
    """Refuses any batch holding one of mallory's exposures (as DuckDB might some value)."""

    def load(self, batch: LoadBatch) -> None:
        if any(row[1] == "mallory" for row in batch.exposures.rows):
            raise duckdb.ConversionException("Conversion Error: mallory's value")
        super().load(batch)


def _message(tenant: str, offset: int) -> _Message:
    event = ExposureEvent(
        tenant_id=tenant,
        unit_id=f"u{offset}",
        timestamp=NOW,
        experiment_key="checkout",
        variant_key="control",
    )
    return _Message(
        TopicRole.EXPOSURES,
        CATALOG.exposures,
        0,
        offset,
        event.to_json(),
        event.partition_key,
    )


def test_a_batch_with_one_refused_message_loads_everything_else(tmp_path: Path) -> None:
    store = RefusingStore(tmp_path / "r.duckdb")
    loader = Loader(store, "unused:9092", CATALOG)
    batch = LoadBatch()
    for offset, tenant in enumerate(["alice", "mallory", "alice", "alice"]):
        message = _message(tenant, offset)
        batch.messages_read.append(message)
        add_message(batch, *message)

    loader._write(batch)

    with store.cursor() as cursor:
        stored = cursor.execute("SELECT unit_id FROM exposures ORDER BY 1").fetchall()
        rejected = cursor.execute(
            "SELECT kafka_offset, tenant_id, reason FROM load_rejections"
        ).fetchall()
    assert stored == [("u0",), ("u2",), ("u3",)]
    [(offset, tenant, reason)] = rejected
    assert (offset, tenant) == (1, "mallory")
    assert "could not be stored" in reason and "ConversionException" in reason
    assert store.loaded_offsets() == {(CATALOG.exposures, 0): 4}
    assert loader.health().error is None and loader.health().messages_loaded == 4
    store.close()
