"""Bring an analytics DuckDB file to the current table layout (``store_schema``).

A file records its layout in ``store_schema_version``. A file without that table but
with an ``exposures`` table was written before versions existed: version 1, whose raw
``exposures``, ``outcomes`` and ``control_events`` were keyed by ``event_id`` alone, so
one tenant reusing another's event ids hid the other's rows. Migrating to version 2
rebuilds those three tables under their tenant-scoped keys, keeping every row (the old
key was stricter, so no row collides under the new one), adds the tenant columns of
``deadletters`` and ``load_rejections`` (NULL for rows loaded before: the old rows do
not keep the Kafka key that names a letter's tenant) and creates the new tables. All of
it happens in one transaction: a crash leaves the file as it was, and the next start
migrates again.

Rows that the old key had already dropped (a tenant's event hidden by another tenant's
equal id) are not in the file; rebuilding the file from the topics (delete it and
restart: the log is the source of truth) brings them back.
"""

from __future__ import annotations

import logging
import re

import duckdb

from analytics.store_schema import SCHEMA_VERSION, TABLES

log = logging.getLogger(__name__)

#: The tables whose primary key changed in version 2.
REKEYED = ("exposures", "outcomes", "control_events")


class StoreVersionError(RuntimeError):
    """The file was written by a newer liftstream than this one."""


def stored_version(cursor: duckdb.DuckDBPyConnection) -> int | None:
    """The file's layout version; None for a new, empty file."""
    rows = cursor.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    tables = {name for (name,) in rows}
    if "store_schema_version" in tables:
        row = cursor.execute("SELECT max(version) FROM store_schema_version").fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
    return 1 if "exposures" in tables else None


def prepare(cursor: duckdb.DuckDBPyConnection) -> int | None:
    """Create the tables of a new file, or migrate an older one; return the version the
    file had (None: new)."""
    version = stored_version(cursor)
    if version is not None and version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"the analytics file has layout version {version}; this liftstream reads "
            f"{SCHEMA_VERSION} (upgrade liftstream, or delete the file to rebuild it from Kafka)"
        )
    cursor.begin()
    try:
        if version == 1:
            _version_1_to_2(cursor)
        for statement in TABLES:
            cursor.execute(statement)
        if version != SCHEMA_VERSION:
            cursor.execute("DELETE FROM store_schema_version")
            cursor.execute("INSERT INTO store_schema_version VALUES (?)", [SCHEMA_VERSION])
        cursor.commit()
    except BaseException:
        cursor.rollback()
        raise
    return version


def _create_statement(table: str, name: str) -> str:
    """The current ``CREATE TABLE`` of ``table``, creating ``name`` instead."""
    for statement in TABLES:
        if re.search(rf"CREATE TABLE IF NOT EXISTS {table} \(", statement):
            old = f"CREATE TABLE IF NOT EXISTS {table} ("
            return statement.replace(old, f"CREATE TABLE {name} (")
    raise LookupError(table)


def _version_1_to_2(cursor: duckdb.DuckDBPyConnection) -> None:
    for table in REKEYED:
        rebuilt = f"{table}__v2"
        cursor.execute(_create_statement(table, rebuilt))
        cursor.execute(f"INSERT INTO {rebuilt} BY NAME SELECT * FROM {table}")
        cursor.execute(f"DROP TABLE {table}")
        cursor.execute(f"ALTER TABLE {rebuilt} RENAME TO {table}")
    cursor.execute("ALTER TABLE deadletters ADD COLUMN IF NOT EXISTS tenant_id VARCHAR")
    cursor.execute("ALTER TABLE load_rejections ADD COLUMN IF NOT EXISTS tenant_id VARCHAR")
    cursor.execute("ALTER TABLE load_rejections ADD COLUMN IF NOT EXISTS subject VARCHAR")
    counts = {
        table: cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        for table in REKEYED
    }
    log.info("analytics file migrated from layout 1 to 2 (tenant keys): %s rows kept", counts)
