"""Read queries over the analytics store, each taking a cursor of the owner's connection.

Aggregates are partial per stream partition; these queries sum the partials, so callers
see per-variant totals.
"""

from __future__ import annotations

from typing import Any

import duckdb
import orjson

from analytics.replay import computation_key
from analytics.scorecard import StatsByCell, SumsByMetric, build_scorecard
from analytics.unit_metrics import VariantSums
from schemas.experiment import Aggregation, Experiment
from schemas.results import ExperimentView, LoadProgress, Scorecard

Cursor = duckdb.DuckDBPyConnection


def variant_units(cursor: Cursor, tenant_id: str, experiment_key: str) -> dict[str, int]:
    """Variant -> units exposed, summed over the stream's partitions."""
    rows = cursor.execute(
        """SELECT variant_key, sum(units)::BIGINT FROM variant_units
           WHERE tenant_id = ? AND experiment_key = ? GROUP BY variant_key""",
        [tenant_id, experiment_key],
    ).fetchall()
    return {variant: int(units) for variant, units in rows}


def excluded_units(cursor: Cursor, tenant_id: str, experiment_key: str) -> int:
    """Units the stream left out of the experiment (they saw several variants)."""
    row = cursor.execute(
        """SELECT coalesce(sum(excluded_units), 0)::BIGINT FROM variant_units
           WHERE tenant_id = ? AND experiment_key = ?""",
        [tenant_id, experiment_key],
    ).fetchone()
    return int(row[0]) if row else 0


def metric_stats(cursor: Cursor, tenant_id: str, experiment_key: str) -> StatsByCell:
    """(variant, event, aggregation) -> (Σx, Σx²), summed over the stream's partitions."""
    rows = cursor.execute(
        """SELECT variant_key, event, aggregation, sum(sum), sum(sum_sq) FROM metric_stats
           WHERE tenant_id = ? AND experiment_key = ?
           GROUP BY variant_key, event, aggregation""",
        [tenant_id, experiment_key],
    ).fetchall()
    return {
        (variant, event, Aggregation(aggregation)): (float(total), float(total_sq))
        for variant, event, aggregation, total, total_sq in rows
    }


_SUM_COLUMNS = "n, sum_x, sum_xx, sum_y, sum_yy, sum_xy, sum_c, sum_cc, sum_xc"


def replayed_sums(cursor: Cursor, tenant_id: str, experiment: Experiment) -> SumsByMetric:
    """(variant, metric) -> replayed sums, for the experiment's metrics whose replay used
    their current definition (a replay of an older definition is ignored)."""
    current = {metric.name: computation_key(metric) for metric in experiment.metrics}
    rows = cursor.execute(
        f"""SELECT variant_key, metric, definition, {_SUM_COLUMNS} FROM replayed_metric_stats
            WHERE tenant_id = ? AND experiment_key = ?""",
        [tenant_id, experiment.key],
    ).fetchall()
    return {
        (variant, metric): VariantSums(int(sums[0]), *map(float, sums[1:]))
        for variant, metric, definition, *sums in rows
        if current.get(metric) == computation_key(definition)
    }


def replayed_rows(
    cursor: Cursor, tenant_id: str, metric: str, experiment_key: str | None = None
) -> list[dict[str, Any]]:
    """The stored replay of ``metric``: one JSON-ready row per experiment and variant."""
    rows = cursor.execute(
        f"""SELECT experiment_key, variant_key, {_SUM_COLUMNS}, excluded_units, cap_value,
                   since, replayed_at
            FROM replayed_metric_stats
            WHERE tenant_id = ? AND metric = ? AND (? IS NULL OR experiment_key = ?)
            ORDER BY experiment_key, variant_key""",
        [tenant_id, metric, experiment_key, experiment_key],
    ).fetchall()
    names = ["experiment_key", "variant_key", *_SUM_COLUMNS.split(", ")]
    names += ["excluded_units", "cap_value", "since", "replayed_at"]
    return [
        {
            name: value.isoformat() if hasattr(value, "isoformat") else value
            for name, value in zip(names, row, strict=True)
        }
        for row in rows
    ]


_EXPERIMENT_COLUMNS = "tenant_id, experiment_key, defined_at, author, reason, event_id, definition"


def _experiment_view(row: tuple[Any, ...]) -> ExperimentView:
    tenant_id, key, defined_at, author, reason, event_id, definition = row
    return ExperimentView(
        tenant_id=tenant_id,
        key=key,
        defined_at=defined_at,
        author=author,
        reason=reason,
        event_id=event_id,
        experiment=Experiment.model_validate_json(definition),
    )


def experiments(cursor: Cursor, tenant_id: str) -> list[ExperimentView]:
    """The tenant's experiments as currently defined, by key."""
    rows = cursor.execute(
        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE tenant_id = ? "
        "ORDER BY experiment_key",
        [tenant_id],
    ).fetchall()
    return [_experiment_view(row) for row in rows]


def experiment(cursor: Cursor, tenant_id: str, experiment_key: str) -> ExperimentView | None:
    row = cursor.execute(
        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE tenant_id = ? AND experiment_key = ?",
        [tenant_id, experiment_key],
    ).fetchone()
    return None if row is None else _experiment_view(row)


def scorecard(cursor: Cursor, tenant_id: str, experiment_key: str) -> Scorecard | None:
    """The experiment's scorecard from the loaded aggregates; None if it is not defined."""
    view = experiment(cursor, tenant_id, experiment_key)
    if view is None:
        return None
    return build_scorecard(
        tenant_id,
        view.experiment,
        variant_units(cursor, tenant_id, experiment_key),
        metric_stats(cursor, tenant_id, experiment_key),
        excluded_units=excluded_units(cursor, tenant_id, experiment_key),
        metric_sums=replayed_sums(cursor, tenant_id, view.experiment),
    )


def loaded_offsets(cursor: Cursor) -> dict[str, dict[str, int]]:
    """Topic -> partition -> next offset the loader will read."""
    result: dict[str, dict[str, int]] = {}
    rows = cursor.execute(
        "SELECT topic, partition, next_offset FROM loader_offsets ORDER BY topic, partition"
    ).fetchall()
    for topic, partition, offset in rows:
        result.setdefault(topic, {})[str(partition)] = int(offset)
    return result


def stream_progress(cursor: Cursor) -> dict[str, dict[str, int]]:
    """Topic -> source partition -> next offset the stream has fully aggregated."""
    result: dict[str, dict[str, int]] = {}
    rows = cursor.execute(
        "SELECT source_partition, next_offsets FROM stream_progress ORDER BY source_partition"
    ).fetchall()
    for partition, next_offsets in rows:
        for topic, offset in orjson.loads(next_offsets).items():
            result.setdefault(topic, {})[str(partition)] = int(offset)
    return result


def rejected_counts(cursor: Cursor) -> dict[str, int]:
    """Topic -> messages the loader could not parse (see table ``load_rejections``)."""
    rows = cursor.execute(
        "SELECT topic, count(*) FROM load_rejections GROUP BY topic ORDER BY topic"
    ).fetchall()
    return {topic: int(count) for topic, count in rows}


def progress(cursor: Cursor) -> LoadProgress:
    return LoadProgress(
        stream=stream_progress(cursor),
        loaded=loaded_offsets(cursor),
        rejected=rejected_counts(cursor),
    )
