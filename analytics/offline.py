"""Scorecards from exported exposures and outcomes (Parquet or CSV), through DuckDB.

``liftstream analyze`` uses this for data brought from elsewhere, such as a warehouse.
Units and outcomes are attributed by ``analytics.attribution`` (its SQL form, the
stream's rule): a unit's first exposure is its earliest exposure (ties: the smaller
variant key); units exposed to more than one variant are excluded (and counted); an
outcome counts when it happens at or after the unit's first exposure. Rows repeating a unit's
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

from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics.attribution import attribution_ctes, metric_events
from analytics.replay import replay_metric
from analytics.scorecard import StatsByCell, SumsByMetric, build_scorecard
from analytics.stats.analysis import Scale
from liftstream.errors import InvalidInputError
from schemas.errors import FieldError
from schemas.experiment import Aggregation, Experiment
from schemas.results import Scorecard

__all__ = [
    "EXPOSURE_COLUMNS",
    "OUTCOME_COLUMNS",
    "OfflineFigures",
    "offline_figures",
    "offline_scorecard",
]

EXPOSURE_COLUMNS = ("unit_id", "timestamp", "variant_key")
OUTCOME_COLUMNS = ("unit_id", "timestamp", "event", "value")

UNITS_SQL = f"""WITH {attribution_ctes()}
SELECT variant_key, count(*) FILTER (WHERE variants = 1), count(*) FILTER (WHERE variants > 1)
FROM units GROUP BY variant_key"""
UNIT_VALUES_SQL = f"""WITH {attribution_ctes(outcomes=True)},
per_unit AS (
    SELECT variant_key, event, unit_id, count(*)::DOUBLE AS events, sum(value) AS total
    FROM attributed_outcomes WHERE variants = 1
    GROUP BY variant_key, event, unit_id
)
SELECT variant_key, event, count(*)::DOUBLE,
       sum(events), sum(events * events), sum(total), sum(total * total)
FROM per_unit GROUP BY variant_key, event
"""


@dataclass
class OfflineFigures:
    """What the scorecard is built from: per variant the included and excluded units;
    per (variant, event, aggregation) Σx and Σx²; the replayed metrics' sums."""

    units: dict[str, int]
    excluded: dict[str, int]
    stats: StatsByCell
    metric_sums: SumsByMetric


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
    figures = offline_figures(exposures_path, outcomes_path, experiment, tenant_id)
    return build_scorecard(
        tenant_id,
        experiment,
        figures.units,
        figures.stats,
        excluded_units=sum(figures.excluded.values()),
        metric_sums=figures.metric_sums,
        scale=scale,
    )


def offline_figures(
    exposures_path: str | Path,
    outcomes_path: str | Path,
    experiment: Experiment,
    tenant_id: str,
) -> OfflineFigures:
    """The attributed figures of ``experiment`` from the two exported files (raises as
    ``offline_scorecard`` does)."""
    exposures_file, outcomes_file = Path(exposures_path), Path(outcomes_path)
    with duckdb.connect(":memory:") as connection:
        exposures = _columns(connection, exposures_file, EXPOSURE_COLUMNS)
        outcomes = _columns(connection, outcomes_file, OUTCOME_COLUMNS)
        try:
            return _query(
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


def _query(
    connection: duckdb.DuckDBPyConnection,
    exposures_file: Path,
    outcomes_file: Path,
    exposures: set[str],
    outcomes: set[str],
    experiment: Experiment,
    tenant_id: str,
) -> OfflineFigures:
    _create_exposures(connection, exposures_file, exposures, experiment, tenant_id)
    _create_outcomes(connection, outcomes_file, outcomes, experiment, tenant_id)
    _check_variants(connection, exposures_file, experiment)
    parameters = {"tenant": tenant_id, "experiment": experiment.key}
    figures = OfflineFigures(units={}, excluded={}, stats={}, metric_sums={})
    for variant, included, excluded in connection.execute(UNITS_SQL, parameters).fetchall():
        if included:
            figures.units[variant] = int(included)
        if excluded:
            figures.excluded[variant] = int(excluded)
    value_rows = connection.execute(UNIT_VALUES_SQL, {**parameters, "events": None}).fetchall()
    for variant, event, converted, events, events_sq, total, total_sq in value_rows:
        figures.stats[(variant, event, Aggregation.CONVERSION)] = (converted, converted)
        figures.stats[(variant, event, Aggregation.COUNT)] = (events, events_sq)
        figures.stats[(variant, event, Aggregation.SUM)] = (total, total_sq)
    variants = [variant.key for variant in experiment.variants]
    figures.metric_sums = {
        (variant, metric.name): sums
        for metric in experiment.metrics
        if metric.needs_replay
        for variant, sums in replay_metric(
            connection, tenant_id, experiment.key, metric, variants=variants
        ).sums.items()
    }
    return figures


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
    events = metric_events(experiment)
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
