"""The control service's DuckDB file: a queryable mirror of the control projection.

``control.duckdb`` (one writer: the control service) holds every control event
(``control_events``, the audit log) and the current ``tenants``, ``api_keys`` (hashes
only), ``experiments``, ``flags`` and ``metrics``. Rows are written as the follower applies each
event, with the next offset, in one transaction; events already in the file (a restart)
are skipped, and a deleted file is rewritten from offset 0. The service answers from
memory; the file is for SQL and for proving a rebuild gives the same state.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import duckdb

from schemas.control import ControlEvent
from services.control_domain.control_state import ControlState

log = logging.getLogger(__name__)

TABLES = (
    """CREATE TABLE IF NOT EXISTS control_events (
        kafka_offset BIGINT PRIMARY KEY, event_id UUID NOT NULL, type VARCHAR NOT NULL,
        tenant_id VARCHAR NOT NULL, subject VARCHAR NOT NULL, author VARCHAR NOT NULL,
        reason VARCHAR NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, payload JSON NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tenants (
        tenant_id VARCHAR PRIMARY KEY, created BOOLEAN NOT NULL, name VARCHAR NOT NULL,
        holdout_percent DOUBLE NOT NULL, revision BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id VARCHAR PRIMARY KEY, tenant_id VARCHAR NOT NULL, role VARCHAR NOT NULL,
        key_hash VARCHAR NOT NULL, revoked BOOLEAN NOT NULL, label VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS experiments (
        tenant_id VARCHAR NOT NULL, key VARCHAR NOT NULL, version INTEGER NOT NULL,
        status VARCHAR NOT NULL, killed BOOLEAN NOT NULL, definition JSON NOT NULL,
        PRIMARY KEY (tenant_id, key))""",
    """CREATE TABLE IF NOT EXISTS flags (
        tenant_id VARCHAR NOT NULL, key VARCHAR NOT NULL, version INTEGER NOT NULL,
        ramp DOUBLE NOT NULL, killed BOOLEAN NOT NULL, definition JSON NOT NULL,
        PRIMARY KEY (tenant_id, key))""",
    """CREATE TABLE IF NOT EXISTS metrics (
        tenant_id VARCHAR NOT NULL, name VARCHAR NOT NULL, version INTEGER NOT NULL,
        type VARCHAR NOT NULL, definition JSON NOT NULL, PRIMARY KEY (tenant_id, name))""",
    """CREATE TABLE IF NOT EXISTS projection_offset (
        id INTEGER PRIMARY KEY, next_offset BIGINT NOT NULL)""",
)


class ControlStore:
    """Owner of ``control.duckdb``; ``record`` is the follower's ``on_applied`` hook."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = duckdb.connect(str(path))
        self._connection.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        for statement in TABLES:
            self._connection.execute(statement)
        row = self._connection.execute(
            "SELECT next_offset FROM projection_offset WHERE id = 0"
        ).fetchone()
        self.next_offset = int(row[0]) if row else 0
        self.error: str | None = None

    def record(self, offset: int, event: ControlEvent, state: ControlState) -> None:
        """Mirror the state ``event`` left behind; skip events the file already holds."""
        if offset < self.next_offset:
            return
        try:
            with self._lock:
                self._write(offset, event, state)
            self.next_offset = offset + 1
            self.error = None
        except duckdb.Error as error:
            self.error = f"{type(error).__name__}: {error}"
            log.exception("could not mirror control event %d into %s", offset, self.path)

    def _write(self, offset: int, event: ControlEvent, state: ControlState) -> None:
        connection = self._connection
        connection.begin()
        try:
            connection.execute(
                "INSERT INTO control_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    offset,
                    str(event.event_id),
                    event.type,
                    event.tenant_id,
                    event.subject,
                    event.author,
                    event.reason,
                    event.occurred_at,
                    event.model_dump_json(),
                ],
            )
            tenant = state.tenants[event.tenant_id]
            connection.execute(
                "INSERT OR REPLACE INTO tenants VALUES (?, ?, ?, ?, ?)",
                [
                    tenant.tenant_id,
                    tenant.created,
                    tenant.name,
                    tenant.holdout_percent,
                    tenant.revision,
                ],
            )
            key = state.keys.get(event.subject)
            if key is not None and key.tenant_id == event.tenant_id:
                [row] = [r for r in state.keys.rows() if r[0] == key.key_id]
                connection.execute("INSERT OR REPLACE INTO api_keys VALUES (?, ?, ?, ?, ?, ?)", row)
            experiment = tenant.experiments.get(event.subject)
            if experiment is not None:
                definition = experiment.experiment
                connection.execute(
                    "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        tenant.tenant_id,
                        definition.key,
                        definition.version,
                        definition.status,
                        experiment.killed,
                        definition.model_dump_json(),
                    ],
                )
            flag = tenant.flags.get(event.subject)
            if flag is not None:
                connection.execute(
                    "INSERT OR REPLACE INTO flags VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        tenant.tenant_id,
                        flag.flag.key,
                        flag.flag.version,
                        flag.flag.ramp,
                        flag.killed,
                        flag.flag.model_dump_json(),
                    ],
                )
            metric = tenant.metrics.get(event.subject) if event.type == "metric_defined" else None
            if metric is not None:
                connection.execute(
                    "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
                    [
                        tenant.tenant_id,
                        metric.metric.name,
                        metric.version,
                        metric.metric.type,
                        metric.metric.model_dump_json(),
                    ],
                )
            connection.execute(
                "INSERT OR REPLACE INTO projection_offset VALUES (0, ?)", [offset + 1]
            )
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows, sorted (for tests and debugging)."""
        with self._lock:
            tables = [r[0] for r in self._connection.execute("SHOW TABLES").fetchall()]
            return {
                table: sorted(
                    self._connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr
                )
                for table in tables
            }

    def close(self) -> None:
        with self._lock:
            self._connection.close()
