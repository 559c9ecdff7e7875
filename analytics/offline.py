"""Scorecards from exported exposures and outcomes (Parquet or CSV), through DuckDB.

``liftstream analyze`` uses this for data brought from elsewhere, such as a warehouse.
The attribution rule is the stream's: a unit's first exposure is its earliest exposure;
units exposed to more than one variant are excluded (and counted); an outcome counts
when it happens at or after the unit's first exposure. Rows repeating a unit's
``event_id`` count once (the platform's key: tenant, unit, event id). Per unit and
metric the value is 1 for a conversion, the number of events for a count and the sum of
``value`` (1.0 where empty, the events' default) for a sum;
DuckDB then sums those per variant into n, Σx and Σx², which
``analytics.scorecard.build_scorecard`` turns into the scorecard. Metrics the stream does
not keep (mean, ratio, capped, windowed, CUPED) are computed from the same tables by the
results service's replay (``analytics.replay``), so they match it exactly.

Expected columns: exposures ``unit_id, timestamp, variant_key`` (optional
``experiment_key, event_id, tenant_id``), outcomes ``unit_id, timestamp, event, value``
(optional ``event_id, tenant_id``). Optional ``experiment_key`` and ``tenant_id`` columns
filter the rows to the experiment and tenant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from analytics.replay import replay_metric
from analytics.scorecard import SumsByMetric, build_scorecard
from analytics.stats.analysis import Scale
from liftstream.errors import InvalidInputError
from schemas.deadletter import FieldError
from schemas.experiment import Aggregation, Experiment
from schemas.results import Scorecard

__all__ = ["EXPOSURE_COLUMNS", "OUTCOME_COLUMNS", "offline_scorecard"]

EXPOSURE_COLUMNS = ("unit_id", "timestamp", "variant_key")
OUTCOME_COLUMNS = ("unit_id", "timestamp", "event", "value")

_UNIT_VALUES = """
WITH units AS (
    SELECT unit_id, min(variant_key) AS variant_key, min(timestamp) AS first_exposure,
           count(DISTINCT variant_key) AS variants
    FROM exposures GROUP BY unit_id
),
included AS (SELECT * FROM units WHERE variants = 1),
per_unit AS (
    SELECT i.variant_key, o.event, o.unit_id,
           count(*)::DOUBLE AS events, sum(o.value) AS total
    FROM outcomes AS o JOIN included AS i ON o.unit_id = i.unit_id
    WHERE o.timestamp >= i.first_exposure
    GROUP BY i.variant_key, o.event, o.unit_id
)
SELECT variant_key, event, count(*)::DOUBLE,
       sum(events), sum(events * events), sum(total), sum(total * total)
FROM per_unit GROUP BY variant_key, event
"""


def offline_scorecard(
    exposures_path: str | Path,
    outcomes_path: str | Path,
    experiment: Experiment,
    tenant_id: str,
    *,
    scale: Scale = "relative",
) -> Scorecard:
    """The scorecard of ``experiment`` for ``tenant_id`` from the two exported files, its
    headline figures on ``scale``.

    Raises ``InvalidInputError`` naming the file and column when a required column is
    missing, a file cannot be read, or an exposure names a variant the experiment lacks.
    """
    exposures_file, outcomes_file = Path(exposures_path), Path(outcomes_path)
    with duckdb.connect(":memory:") as connection:
        exposures = _columns(connection, exposures_file, EXPOSURE_COLUMNS)
        outcomes = _columns(connection, outcomes_file, OUTCOME_COLUMNS)
        try:
            units_rows, excluded, value_rows, metric_sums = _query(
                connection,
                exposures_file,
                outcomes_file,
                exposures,
                outcomes,
                experiment,
                tenant_id,
            )
        except duckdb.Error as error:
            reason = str(error).splitlines()[0]
            raise InvalidInputError(
                f"cannot score {exposures_file} with {outcomes_file}",
                [FieldError(field="", reason=reason)],
            ) from None
    units = {variant: int(n) for variant, n in units_rows}
    stats: dict[tuple[str, str, Aggregation], tuple[float, float]] = {}
    for variant, event, converted, events, events_sq, total, total_sq in value_rows:
        stats[(variant, event, Aggregation.CONVERSION)] = (converted, converted)
        stats[(variant, event, Aggregation.COUNT)] = (events, events_sq)
        stats[(variant, event, Aggregation.SUM)] = (total, total_sq)
    return build_scorecard(
        tenant_id,
        experiment,
        units,
        stats,
        excluded_units=int(excluded),
        metric_sums=metric_sums,
        scale=scale,
    )


def _query(
    connection: duckdb.DuckDBPyConnection,
    exposures_file: Path,
    outcomes_file: Path,
    exposures: set[str],
    outcomes: set[str],
    experiment: Experiment,
    tenant_id: str,
) -> tuple[list[tuple[Any, ...]], int, list[tuple[Any, ...]], SumsByMetric]:
    """Units per variant, units excluded, per (variant, event) the sums of unit values,
    and the sums of the metrics the stream does not keep."""
    _create_exposures(connection, exposures_file, exposures, experiment, tenant_id)
    _create_outcomes(connection, outcomes_file, outcomes, experiment, tenant_id)
    _check_variants(connection, exposures_file, experiment)
    units_rows = connection.execute(
        "SELECT variant_key, count(*) FROM (SELECT unit_id, min(variant_key) AS variant_key"
        " FROM exposures GROUP BY unit_id HAVING count(DISTINCT variant_key) = 1)"
        " GROUP BY variant_key"
    ).fetchall()
    (excluded,) = connection.execute(
        "SELECT count(*) FROM (SELECT unit_id FROM exposures GROUP BY unit_id"
        " HAVING count(DISTINCT variant_key) > 1)"
    ).fetchone() or (0,)
    variants = [variant.key for variant in experiment.variants]
    metric_sums = {
        (variant, metric.name): sums
        for metric in experiment.metrics
        if metric.needs_replay
        for variant, sums in replay_metric(
            connection, tenant_id, experiment.key, metric, variants=variants
        ).sums.items()
    }
    return (
        units_rows,
        int(excluded),
        connection.execute(_UNIT_VALUES).fetchall(),
        metric_sums,
    )


def _source(path: Path) -> str:
    literal = "'" + str(path).replace("'", "''") + "'"
    if path.suffix.lower() == ".parquet":
        return f"read_parquet({literal})"
    return f"read_csv_auto({literal})"


def _columns(
    connection: duckdb.DuckDBPyConnection, path: Path, required: tuple[str, ...]
) -> set[str]:
    try:
        described = connection.execute(f"DESCRIBE SELECT * FROM {_source(path)}").fetchall()
    except duckdb.Error as error:
        reason = str(error).splitlines()[0]
        raise InvalidInputError(
            f"cannot read {path}", [FieldError(field="", reason=reason)]
        ) from None
    columns = {row[0] for row in described}
    missing = [column for column in required if column not in columns]
    if missing:
        raise InvalidInputError(
            f"{path} lacks required columns",
            [FieldError(field=column, reason="missing column") for column in missing],
        )
    return columns


def _filters(
    columns: set[str], experiment_key: str | None, tenant_id: str
) -> tuple[str, list[str]]:
    clauses = ["TRUE"]
    parameters: list[str] = []
    if experiment_key is not None and "experiment_key" in columns:
        clauses.append("CAST(experiment_key AS VARCHAR) = ?")
        parameters.append(experiment_key)
    if "tenant_id" in columns:
        clauses.append("CAST(tenant_id AS VARCHAR) = ?")
        parameters.append(tenant_id)
    return " AND ".join(clauses), parameters


def _deduplicated(columns: set[str]) -> str:
    if "event_id" not in columns:
        return ""
    return "QUALIFY event_id IS NULL OR row_number() OVER (PARTITION BY unit_id, event_id) = 1"


def _create_exposures(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    columns: set[str],
    experiment: Experiment,
    tenant_id: str,
) -> None:
    where, parameters = _filters(columns, experiment.key, tenant_id)
    # tenant_id and experiment_key as constants: the shape ``analytics.replay`` reads.
    connection.execute(
        "CREATE TEMP TABLE exposures AS SELECT CAST(unit_id AS VARCHAR) AS unit_id,"
        " timestamp, CAST(variant_key AS VARCHAR) AS variant_key,"
        " ?::VARCHAR AS tenant_id, ?::VARCHAR AS experiment_key"
        f" FROM {_source(path)} WHERE {where} {_deduplicated(columns)}",
        [tenant_id, experiment.key, *parameters],
    )


def _create_outcomes(
    connection: duckdb.DuckDBPyConnection,
    path: Path,
    columns: set[str],
    experiment: Experiment,
    tenant_id: str,
) -> None:
    # Outcomes belong to units, not experiments: an experiment_key column is not a filter.
    where, parameters = _filters(columns, None, tenant_id)
    events = sorted(
        {metric.event for metric in experiment.metrics}
        | {part.event for m in experiment.metrics for part in (m.numerator, m.denominator) if part}
    )
    placeholders = ", ".join("?" for _ in events)
    connection.execute(
        "CREATE TEMP TABLE outcomes AS SELECT CAST(unit_id AS VARCHAR) AS unit_id,"
        " timestamp, CAST(event AS VARCHAR) AS event,"
        " coalesce(CAST(value AS DOUBLE), 1.0) AS value, ?::VARCHAR AS tenant_id"
        f" FROM {_source(path)} WHERE {where} AND CAST(event AS VARCHAR) IN ({placeholders})"
        f" {_deduplicated(columns)}",
        [tenant_id, *parameters, *events],
    )


def _check_variants(
    connection: duckdb.DuckDBPyConnection, path: Path, experiment: Experiment
) -> None:
    known = [variant.key for variant in experiment.variants]
    rows = connection.execute("SELECT DISTINCT variant_key FROM exposures").fetchall()
    unknown = sorted(str(row[0]) for row in rows if row[0] not in known)
    if unknown:
        raise InvalidInputError(
            f"{path} has exposures to variants {experiment.key} does not define",
            [
                FieldError(field="variant_key", reason=f"'{key}' is not one of {known}")
                for key in unknown
            ],
        )
