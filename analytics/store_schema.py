"""The DuckDB tables of the analytics store: a projection of the Kafka log.

- ``exposures``, ``outcomes``: raw events, once per ``(tenant_id, unit_id, event_id)``
  (re-deliveries ignored; the stream's de-duplication key: a unit's state holds the event
  ids it has seen), with the Kafka partition and offset they were read from. One
  tenant's event ids never hide another tenant's rows.
- ``variant_units``, ``metric_stats``, ``metric_sums``, ``stream_progress``: the
  stream's partial aggregates, keyed like their record keys on the aggregates topic
  (latest wins). ``metric_sums`` rows name the ``definition_hash`` they were computed for.
- ``experiments``: the latest definition per (tenant, key), from any control event that
  carries one; ``control_events``: every control event (``experiment_key`` holds the
  event's subject: experiment or flag key, key id, or '' for tenant-wide events).
- ``deadletters``: messages the platform refused, for analysts, with their tenant (the
  letter's own ``tenant_id``, else the tenant its Kafka key names; NULL if neither: a
  letter's payload is never trusted to say whose it is).
- ``load_rejections``: messages the loader itself could not parse, with the tenant and
  subject they claim when they can be read (a control event that no longer validates is
  shown on its experiment).
- ``definition_errors``: metric definitions the stream quarantined (``DefinitionError``
  records on the aggregates topic), latest per (tenant, experiment, metric).
- ``event_counts``: messages loaded per tenant, experiment ('' for outcomes) and kind,
  duplicates included: less the rows kept, that is the duplicates dropped.
- ``replayed_metric_stats``: per-variant sums of a metric replayed from the raw log
  (``analytics.replay``), with the definition used, the cap, ``since`` and when.
- ``loader_offsets``: the next offset to load per topic partition, written in the same
  transaction as the rows of its batch, so the file is an exactly-once projection.
- ``store_schema_version``: the version of these tables (``SCHEMA_VERSION``); an older
  file is migrated when opened (``analytics.store_migrations``).

Timestamps are ``TIMESTAMPTZ`` (UTC); free-form dictionaries are ``JSON``.
"""

from __future__ import annotations

#: Version 2: raw events and control events keyed by tenant; dead letters and rejections
#: carry their tenant; ``definition_errors`` and ``event_counts``.
SCHEMA_VERSION = 2

#: n and the nine sums of ``analytics.unit_metrics.VariantSums``.
_VARIANT_SUMS = """
        n BIGINT NOT NULL,
        sum_x DOUBLE NOT NULL,
        sum_xx DOUBLE NOT NULL,
        sum_y DOUBLE NOT NULL,
        sum_yy DOUBLE NOT NULL,
        sum_xy DOUBLE NOT NULL,
        sum_c DOUBLE NOT NULL,
        sum_cc DOUBLE NOT NULL,
        sum_xc DOUBLE NOT NULL,
"""

#: The envelope columns every raw event table starts with (``schemas.events``).
_EVENT_ENVELOPE = """
        event_id UUID NOT NULL,
        tenant_id VARCHAR NOT NULL,
        unit_id VARCHAR NOT NULL,
        timestamp TIMESTAMPTZ NOT NULL,
        received_at TIMESTAMPTZ,
        schema_version INTEGER NOT NULL,
"""

#: Where a raw event was read from, and the key it is kept once under.
_EVENT_SOURCE = """        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, unit_id, event_id)
    )
    """

TABLES: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS exposures (
"""
    + _EVENT_ENVELOPE
    + """        experiment_key VARCHAR NOT NULL,
        variant_key VARCHAR NOT NULL,
        experiment_version INTEGER NOT NULL,
        attributes JSON NOT NULL,
"""
    + _EVENT_SOURCE,
    """
    CREATE TABLE IF NOT EXISTS outcomes (
"""
    + _EVENT_ENVELOPE
    + """        event VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        properties JSON NOT NULL,
"""
    + _EVENT_SOURCE,
    """
    CREATE TABLE IF NOT EXISTS variant_units (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        variant_key VARCHAR NOT NULL,
        source_partition INTEGER NOT NULL,
        units BIGINT NOT NULL,
        excluded_units BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key, variant_key, source_partition)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS metric_stats (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        variant_key VARCHAR NOT NULL,
        event VARCHAR NOT NULL,
        aggregation VARCHAR NOT NULL,
        source_partition INTEGER NOT NULL,
        sum DOUBLE NOT NULL,
        sum_sq DOUBLE NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key, variant_key, event, aggregation, source_partition)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS metric_sums (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        variant_key VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        source_partition INTEGER NOT NULL,
        definition_hash VARCHAR NOT NULL,
"""
    + _VARIANT_SUMS
    + """        updated_at TIMESTAMPTZ NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key, variant_key, metric, source_partition)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS stream_progress (
        source_partition INTEGER PRIMARY KEY,
        next_offsets JSON NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        kafka_offset BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS experiments (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        definition JSON NOT NULL,
        author VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        defined_at TIMESTAMPTZ NOT NULL,
        event_id UUID NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS control_events (
        event_id UUID NOT NULL,
        type VARCHAR NOT NULL,
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        author VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        payload JSON NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, event_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS deadletters (
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        stage VARCHAR NOT NULL,
        source_topic VARCHAR NOT NULL,
        source_partition INTEGER,
        source_offset BIGINT,
        reason VARCHAR NOT NULL,
        errors JSON NOT NULL,
        payload VARCHAR NOT NULL,
        failed_at TIMESTAMPTZ NOT NULL,
        tenant_id VARCHAR,
        PRIMARY KEY (kafka_partition, kafka_offset)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS load_rejections (
        topic VARCHAR NOT NULL,
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        reason VARCHAR NOT NULL,
        payload VARCHAR NOT NULL,
        tenant_id VARCHAR,
        subject VARCHAR,
        PRIMARY KEY (topic, kafka_partition, kafka_offset)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS definition_errors (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        definition_hash VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key, metric)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS event_counts (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        messages BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key, kind)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS replayed_metric_stats (
        tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL,
        variant_key VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        definition JSON NOT NULL,
"""
    + _VARIANT_SUMS
    + """        excluded_units BIGINT NOT NULL,
        cap_value DOUBLE,
        since TIMESTAMPTZ,
        replayed_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant_id, experiment_key, variant_key, metric)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS loader_offsets (
        topic VARCHAR NOT NULL,
        partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, partition)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS store_schema_version (
        version INTEGER NOT NULL
    )
    """,
)
