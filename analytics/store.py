"""The analytics store: one DuckDB file, owned by one process, fed from the Kafka log.

``AnalyticsStore`` holds the only writable connection. ``load`` writes a ``LoadBatch``
and the loader offsets it reaches in one transaction, so after any crash the file and
its offsets agree, and a deleted file is rebuilt by loading the topics from offset 0.
Readers (the API) take a cursor per thread with ``cursor()``; DuckDB gives each a
consistent snapshot while the loader writes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np

from analytics.load_batch import SUM_COLUMNS, Columns, LoadBatch
from analytics.store_migrations import prepare


def _at(column: str) -> str:
    return f"make_timestamptz({column})"


def _nullable(column: str) -> str:
    return f"CASE WHEN {column}_is_null THEN NULL ELSE {column} END"


# Within a batch, the first copy of a re-delivered event wins; the table keeps the first
# ever stored (ON CONFLICT DO NOTHING). The key is the stream's: (tenant, unit, event id),
# so no tenant's ids can hide another's rows. Aggregates and definitions: the latest wins.
_INSERT_EXPOSURES = f"""
    INSERT INTO exposures BY NAME
    SELECT event_id::UUID AS event_id, tenant_id, unit_id,
           {_at("timestamp_us")} AS timestamp,
           CASE WHEN received_us_is_null THEN NULL ELSE {_at("received_us")} END AS received_at,
           schema_version, experiment_key, variant_key, experiment_version,
           attributes::JSON AS attributes, kafka_partition, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, unit_id, event_id ORDER BY kafka_partition, kafka_offset) = 1
    ON CONFLICT DO NOTHING
"""
_INSERT_OUTCOMES = f"""
    INSERT INTO outcomes BY NAME
    SELECT event_id::UUID AS event_id, tenant_id, unit_id,
           {_at("timestamp_us")} AS timestamp,
           CASE WHEN received_us_is_null THEN NULL ELSE {_at("received_us")} END AS received_at,
           schema_version, event, value, properties::JSON AS properties,
           kafka_partition, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, unit_id, event_id ORDER BY kafka_partition, kafka_offset) = 1
    ON CONFLICT DO NOTHING
"""
_UPSERT_VARIANT_UNITS = f"""
    INSERT INTO variant_units BY NAME
    SELECT tenant_id, experiment_key, variant_key, source_partition, units, excluded_units,
           {_at("updated_us")} AS updated_at, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, experiment_key, variant_key, source_partition
        ORDER BY kafka_offset DESC) = 1
    ON CONFLICT DO UPDATE SET units = excluded.units, excluded_units = excluded.excluded_units,
        updated_at = excluded.updated_at, kafka_offset = excluded.kafka_offset
"""
_UPSERT_METRIC_STATS = f"""
    INSERT INTO metric_stats BY NAME
    SELECT tenant_id, experiment_key, variant_key, event, aggregation, source_partition,
           sum, sum_sq, {_at("updated_us")} AS updated_at, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, experiment_key, variant_key, event, aggregation, source_partition
        ORDER BY kafka_offset DESC) = 1
    ON CONFLICT DO UPDATE SET sum = excluded.sum, sum_sq = excluded.sum_sq,
        updated_at = excluded.updated_at, kafka_offset = excluded.kafka_offset
"""
_UPSERT_METRIC_SUMS = f"""
    INSERT INTO metric_sums BY NAME
    SELECT tenant_id, experiment_key, variant_key, metric, source_partition,
           definition_hash, n, {", ".join(SUM_COLUMNS)},
           {_at("updated_us")} AS updated_at, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, experiment_key, variant_key, metric, source_partition
        ORDER BY kafka_offset DESC) = 1
    ON CONFLICT DO UPDATE SET definition_hash = excluded.definition_hash, n = excluded.n,
        {", ".join(f"{name} = excluded.{name}" for name in SUM_COLUMNS)},
        updated_at = excluded.updated_at, kafka_offset = excluded.kafka_offset
"""
_UPSERT_STREAM_PROGRESS = f"""
    INSERT INTO stream_progress BY NAME
    SELECT source_partition, next_offsets::JSON AS next_offsets,
           {_at("updated_us")} AS updated_at, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (PARTITION BY source_partition ORDER BY kafka_offset DESC) = 1
    ON CONFLICT DO UPDATE SET next_offsets = excluded.next_offsets,
        updated_at = excluded.updated_at, kafka_offset = excluded.kafka_offset
"""
_INSERT_CONTROL_EVENTS = f"""
    INSERT INTO control_events BY NAME
    SELECT event_id::UUID AS event_id, type, tenant_id, experiment_key, author, reason,
           {_at("occurred_us")} AS occurred_at, payload::JSON AS payload,
           kafka_partition, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, event_id ORDER BY kafka_partition, kafka_offset) = 1
    ON CONFLICT DO NOTHING
"""
_UPSERT_EXPERIMENTS = f"""
    INSERT INTO experiments BY NAME
    SELECT tenant_id, experiment_key, version, status, definition::JSON AS definition,
           author, reason, {_at("occurred_us")} AS defined_at, event_id::UUID AS event_id,
           kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, experiment_key ORDER BY kafka_partition DESC, kafka_offset DESC
    ) = 1
    ON CONFLICT DO UPDATE SET version = excluded.version, status = excluded.status,
        definition = excluded.definition, author = excluded.author, reason = excluded.reason,
        defined_at = excluded.defined_at, event_id = excluded.event_id,
        kafka_offset = excluded.kafka_offset
"""
_INSERT_DEADLETTERS = f"""
    INSERT INTO deadletters BY NAME
    SELECT kafka_partition, kafka_offset, stage, source_topic,
           {_nullable("source_partition")} AS source_partition,
           {_nullable("source_offset")} AS source_offset,
           reason, errors::JSON AS errors, payload, {_at("failed_us")} AS failed_at,
           tenant_id
    FROM batch
    ON CONFLICT DO NOTHING
"""
_INSERT_REJECTIONS = """
    INSERT INTO load_rejections BY NAME
    SELECT topic, kafka_partition, kafka_offset, reason, payload, tenant_id, subject FROM batch
    ON CONFLICT DO NOTHING
"""
_UPSERT_DEFINITION_ERRORS = f"""
    INSERT INTO definition_errors BY NAME
    SELECT tenant_id, experiment_key, metric, definition_hash, stage, reason,
           {_at("updated_us")} AS updated_at, kafka_offset
    FROM batch
    QUALIFY row_number() OVER (
        PARTITION BY tenant_id, experiment_key, metric ORDER BY kafka_offset DESC) = 1
    ON CONFLICT DO UPDATE SET definition_hash = excluded.definition_hash,
        stage = excluded.stage, reason = excluded.reason, updated_at = excluded.updated_at,
        kafka_offset = excluded.kafka_offset
"""
_ADD_EVENT_COUNTS = """
    INSERT INTO event_counts BY NAME
    SELECT tenant_id, experiment_key, kind, messages FROM batch
    ON CONFLICT DO UPDATE SET messages = messages + excluded.messages
"""
_UPSERT_LOADER_OFFSETS = """
    INSERT INTO loader_offsets BY NAME
    SELECT topic, partition, next_offset FROM batch
    ON CONFLICT DO UPDATE SET next_offset = excluded.next_offset
"""


class QueryBudgetExceeded(RuntimeError):
    """A read query ran longer than its budget and was interrupted."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(f"the query ran longer than its budget of {budget_s:g}s")
        self.budget_s = budget_s


class AnalyticsStore:
    """The owner of one DuckDB file: creates its tables, loads batches, hands out cursors."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = duckdb.connect(str(self.path))
        self._lock = threading.Lock()
        self._writer = self._new_cursor()
        #: The layout version the file had when opened (None: new); see store_migrations.
        self.migrated_from = prepare(self._writer)

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            cursor = self._connection.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    @contextmanager
    def cursor(self, budget_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for the calling thread only; closed when the block ends.

        With ``budget_s``, a query still running that many seconds after the block began
        is interrupted, and the block raises ``QueryBudgetExceeded``: one request's query
        cannot hold the file's CPUs for long.
        """
        cursor = self._new_cursor()
        timer = None
        if budget_s is not None:
            timer = threading.Timer(budget_s, _interrupt, (cursor,))
            timer.daemon = True
            timer.start()
        try:
            yield cursor
        except duckdb.InterruptException:
            raise QueryBudgetExceeded(budget_s or 0.0) from None
        finally:
            if timer is not None:
                timer.cancel()
            cursor.close()

    def load(self, batch: LoadBatch) -> None:
        """Write the batch and its next offsets in one transaction (all or nothing)."""
        writes: list[tuple[str, Columns]] = [
            (_INSERT_EXPOSURES, batch.exposures.arrays()),
            (_INSERT_OUTCOMES, batch.outcomes.arrays()),
            (_UPSERT_VARIANT_UNITS, batch.variant_units.arrays()),
            (_UPSERT_METRIC_STATS, batch.metric_stats.arrays()),
            (_UPSERT_METRIC_SUMS, batch.metric_sums.arrays()),
            (_UPSERT_STREAM_PROGRESS, batch.stream_progress.arrays()),
            (_INSERT_CONTROL_EVENTS, batch.control_events.arrays()),
            (_UPSERT_EXPERIMENTS, batch.experiment_definitions.arrays()),
            (_INSERT_DEADLETTERS, batch.deadletters.arrays()),
            (_INSERT_REJECTIONS, batch.rejections.arrays()),
            (_UPSERT_DEFINITION_ERRORS, batch.definition_errors.arrays()),
            (_ADD_EVENT_COUNTS, batch.event_count_columns()),
            (_UPSERT_LOADER_OFFSETS, _offset_columns(batch)),
        ]
        with self._lock:
            writer = self._writer
            writer.begin()
            try:
                for statement, columns in writes:
                    if len(next(iter(columns.values()))) == 0:
                        continue
                    writer.register("batch", columns)
                    try:
                        writer.execute(statement)
                    finally:
                        writer.unregister("batch")
                writer.commit()
            except BaseException:
                writer.rollback()
                raise

    def save_replay(self, rows: list[dict[str, object]]) -> None:
        """Replace the replayed sums of each (tenant, experiment, metric) in ``rows``
        (columns of ``replayed_metric_stats``) in one transaction."""
        subjects = {(row["tenant_id"], row["experiment_key"], row["metric"]) for row in rows}
        columns = list(rows[0]) if rows else []
        insert = (
            f"INSERT INTO replayed_metric_stats ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        with self._lock:
            writer = self._writer
            writer.begin()
            try:
                for subject in subjects:
                    writer.execute(
                        "DELETE FROM replayed_metric_stats "
                        "WHERE tenant_id = ? AND experiment_key = ? AND metric = ?",
                        list(subject),
                    )
                for row in rows:
                    writer.execute(insert, list(row.values()))
                writer.commit()
            except BaseException:
                writer.rollback()
                raise

    def loaded_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset to load, as committed with the data."""
        with self.cursor() as cursor:
            rows = cursor.execute("SELECT topic, partition, next_offset FROM loader_offsets")
            return {(topic, partition): offset for topic, partition, offset in rows.fetchall()}

    def close(self) -> None:
        with self._lock:
            self._writer.close()
            self._connection.close()


def _interrupt(cursor: duckdb.DuckDBPyConnection) -> None:
    # The block may have closed the cursor just now: then there is nothing to interrupt.
    with contextlib.suppress(duckdb.Error):
        cursor.interrupt()


def _offset_columns(batch: LoadBatch) -> Columns:
    keys = list(batch.next_offsets)
    return {
        "topic": np.array([topic for topic, _ in keys], dtype=object),
        "partition": np.array([partition for _, partition in keys], dtype=np.int32),
        "next_offset": np.array([batch.next_offsets[key] for key in keys], dtype=np.int64),
    }
