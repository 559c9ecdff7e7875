"""Raw events are keyed by tenant in the analytics file, and a file of the old layout is
migrated when opened (a real DuckDB file each time).

The old layout keyed ``exposures``, ``outcomes`` and ``control_events`` by ``event_id``
alone: a tenant reusing another tenant's ids made the other tenant's rows disappear.
"""

from __future__ import annotations

import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore
from analytics.store_migrations import StoreVersionError, stored_version
from analytics.store_schema import SCHEMA_VERSION, TABLES
from schemas.events import ExposureEvent, OutcomeEvent
from services.private_files import make_private

pytestmark = pytest.mark.integration

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)

#: The tables of layout 1 whose key or columns changed, as that layout created them.
_VERSION_1 = {
    "exposures": """CREATE TABLE exposures (
        event_id UUID PRIMARY KEY, tenant_id VARCHAR NOT NULL, unit_id VARCHAR NOT NULL,
        timestamp TIMESTAMPTZ NOT NULL, received_at TIMESTAMPTZ,
        schema_version INTEGER NOT NULL, experiment_key VARCHAR NOT NULL,
        variant_key VARCHAR NOT NULL, experiment_version INTEGER NOT NULL,
        attributes JSON NOT NULL, kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL)""",
    "outcomes": """CREATE TABLE outcomes (
        event_id UUID PRIMARY KEY, tenant_id VARCHAR NOT NULL, unit_id VARCHAR NOT NULL,
        timestamp TIMESTAMPTZ NOT NULL, received_at TIMESTAMPTZ,
        schema_version INTEGER NOT NULL, event VARCHAR NOT NULL, value DOUBLE NOT NULL,
        properties JSON NOT NULL, kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL)""",
    "control_events": """CREATE TABLE control_events (
        event_id UUID PRIMARY KEY, type VARCHAR NOT NULL, tenant_id VARCHAR NOT NULL,
        experiment_key VARCHAR NOT NULL, author VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL, payload JSON NOT NULL,
        kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL)""",
    "deadletters": """CREATE TABLE deadletters (
        kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL,
        stage VARCHAR NOT NULL, source_topic VARCHAR NOT NULL, source_partition INTEGER,
        source_offset BIGINT, reason VARCHAR NOT NULL, errors JSON NOT NULL,
        payload VARCHAR NOT NULL, failed_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (kafka_partition, kafka_offset))""",
    "load_rejections": """CREATE TABLE load_rejections (
        topic VARCHAR NOT NULL, kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL, reason VARCHAR NOT NULL, payload VARCHAR NOT NULL,
        PRIMARY KEY (topic, kafka_partition, kafka_offset))""",
}
_NEW_IN_2 = ("definition_errors", "event_counts", "store_schema_version")


def _exposure(tenant: str, unit: str, event_id: uuid.UUID) -> ExposureEvent:
    return ExposureEvent(
        event_id=event_id,
        tenant_id=tenant,
        unit_id=unit,
        timestamp=NOW,
        experiment_key="checkout",
        variant_key="control",
    )


def _outcome(tenant: str, unit: str, event_id: uuid.UUID) -> OutcomeEvent:
    return OutcomeEvent(
        event_id=event_id, tenant_id=tenant, unit_id=unit, timestamp=NOW, event="purchase"
    )


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_two_tenants_with_the_same_event_ids_both_keep_every_row(tmp_path: Path) -> None:
    store = AnalyticsStore(tmp_path / "a.duckdb")
    ids = [uuid.uuid4() for _ in range(5)]
    batch = LoadBatch()
    for offset, event_id in enumerate(ids):
        batch.add_exposure("ns.exposures", 0, offset, _exposure("alice", f"u{offset}", event_id))
        batch.add_outcome("ns.outcomes", 0, offset, _outcome("alice", f"u{offset}", event_id))
    store.load(batch)
    # mallory copies alice's ids, in a later batch and within one batch twice over
    hostile = LoadBatch()
    for offset, event_id in enumerate(ids + ids):
        hostile.add_exposure("ns.exposures", 1, offset, _exposure("mallory", "m", event_id))
        hostile.add_outcome("ns.outcomes", 1, offset, _outcome("mallory", "m", event_id))
    store.load(hostile)
    store.close()

    for table in ("exposures", "outcomes"):
        counts = dict(
            _rows(tmp_path / "a.duckdb", f"SELECT tenant_id, count(*) FROM {table} GROUP BY 1")
        )
        assert counts == {"alice": 5, "mallory": 5}, table
    # messages loaded per tenant, duplicates included: the health view's duplicates
    counted = _rows(
        tmp_path / "a.duckdb",
        "SELECT tenant_id, kind, messages FROM event_counts ORDER BY tenant_id, kind",
    )
    assert counted == [
        ("alice", "exposure", 5),
        ("alice", "outcome", 5),
        ("mallory", "exposure", 10),
        ("mallory", "outcome", 10),
    ]


def test_a_file_of_the_old_layout_is_migrated_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as connection:
        for statement in TABLES:
            name = statement.split("EXISTS", 1)[1].split("(", 1)[0].strip()
            if name not in _VERSION_1 and name not in _NEW_IN_2:
                connection.execute(statement)
        for statement in _VERSION_1.values():
            connection.execute(statement)
        for index in range(3):
            connection.execute(
                "INSERT INTO exposures VALUES (?, 'alice', ?, ?, NULL, 1, 'checkout', "
                "'control', 1, '{}', 0, ?)",
                [uuid.uuid4(), f"u{index}", NOW, index],
            )
            connection.execute(
                "INSERT INTO outcomes VALUES (?, 'alice', ?, ?, NULL, 1, 'purchase', 1.0, "
                "'{}', 0, ?)",
                [uuid.uuid4(), f"u{index}", NOW, index],
            )
        connection.execute(
            "INSERT INTO control_events VALUES (?, 'tenant_created', 'alice', '', 'operator', "
            "'', ?, '{}', 0, 0)",
            [uuid.uuid4(), NOW],
        )
        connection.execute(
            "INSERT INTO deadletters VALUES (0, 0, 'stream', 't', 0, 0, 'bad', '[]', 'x', ?)",
            [NOW],
        )
        connection.execute("INSERT INTO loader_offsets VALUES ('ns.exposures', 0, 3)")
        assert stored_version(connection) == 1
        old_ids = connection.execute("SELECT event_id FROM exposures ORDER BY 1").fetchall()

    store = AnalyticsStore(path)
    assert store.migrated_from == 1
    assert store.loaded_offsets() == {("ns.exposures", 0): 3}
    # the migrated file now keeps another tenant's copy of alice's ids
    batch = LoadBatch()
    for offset, (event_id,) in enumerate(old_ids):
        batch.add_exposure("ns.exposures", 1, offset, _exposure("mallory", "m", event_id))
    store.load(batch)
    store.close()

    assert _rows(path, "SELECT max(version) FROM store_schema_version") == [(SCHEMA_VERSION,)]
    assert _rows(path, "SELECT count(*) FROM outcomes") == [(3,)]
    assert _rows(path, "SELECT count(*) FROM control_events") == [(1,)]
    assert _rows(path, "SELECT tenant_id, reason FROM deadletters") == [(None, "bad")]
    by_tenant = _rows(path, "SELECT tenant_id, count(*) FROM exposures GROUP BY 1 ORDER BY 1")
    assert by_tenant == [("alice", 3), ("mallory", 3)]
    keys = _rows(
        path,
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY' AND table_name IN "
        "('exposures', 'outcomes', 'control_events') ORDER BY 1",
    )
    assert keys == [
        ("control_events", ["tenant_id", "event_id"]),
        ("exposures", ["tenant_id", "unit_id", "event_id"]),
        ("outcomes", ["tenant_id", "unit_id", "event_id"]),
    ]
    # opening it again changes nothing
    assert AnalyticsStore(path).migrated_from == SCHEMA_VERSION


def test_a_file_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    AnalyticsStore(path).close()
    with duckdb.connect(str(path)) as connection:
        connection.execute("UPDATE store_schema_version SET version = ?", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreVersionError, match="upgrade liftstream"):
        AnalyticsStore(path)


def test_the_data_directory_and_files_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    old = home / "results.duckdb"
    AnalyticsStore(old).close()
    old.chmod(0o644)  # as a file written before this change
    monkeypatch.setenv("LIFTSTREAM_HOME", str(home))
    umask = os.umask(0o022)
    try:
        make_private(old)
        store = AnalyticsStore(old)
        batch = LoadBatch()
        batch.add_exposure("ns.exposures", 0, 0, _exposure("alice", "u", uuid.uuid4()))
        store.load(batch)
        fresh = tmp_path / "made" / "control.duckdb"
        make_private(fresh)
        AnalyticsStore(fresh).close()
        modes = {
            file.name: stat.S_IMODE(file.stat().st_mode)
            for folder in (home, fresh.parent)
            for file in folder.iterdir()
        }
        store.close()
    finally:
        os.umask(umask)
    assert "results.duckdb.wal" in modes
    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
