"""Read queries over the analytics store, each taking a cursor of the owner's connection.

Aggregates are partial per stream partition; these queries sum the partials, so callers
see per-variant totals. Metrics that need more than the stream's per-event sums are
scored from the stream's ``metric_sums`` when it keeps them for the metric's current
definition, else from a stored replay of that definition (``replayed_metric_stats``).
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import orjson

from analytics.load_batch import SUM_COLUMNS
from analytics.replay import computation_key
from analytics.scorecard import StatsByCell, SumsByMetric, SumsSource, build_scorecard
from analytics.stats.analysis import Scale
from analytics.unit_metrics import VariantSums
from schemas.experiment import Aggregation, Experiment
from schemas.results import ExperimentView, LoadProgress, Scorecard

Cursor = duckdb.DuckDBPyConnection
log = logging.getLogger(__name__)


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


_SUM_COLUMNS = ", ".join(("n", *SUM_COLUMNS))


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


def live_sums(cursor: Cursor, tenant_id: str, experiment: Experiment) -> SumsByMetric:
    """(variant, metric) -> the stream's sums summed over its partitions, for the
    experiment's metrics the stream keeps, computed for their current definition (partials
    of an older definition are ignored). A metric with sums for some variants gets zero
    sums for the others: no unit of theirs has been counted yet."""
    current = {
        metric.name: metric.definition_hash for metric in experiment.metrics if metric.kept_live
    }
    if not current:
        return {}
    rows = cursor.execute(
        f"""SELECT variant_key, metric, definition_hash,
                   {", ".join(f"sum({name})" for name in _SUM_COLUMNS.split(", "))}
            FROM metric_sums WHERE tenant_id = ? AND experiment_key = ?
            GROUP BY variant_key, metric, definition_hash""",
        [tenant_id, experiment.key],
    ).fetchall()
    found: dict[tuple[str, str], VariantSums] = {
        (variant, metric): VariantSums(int(sums[0]), *map(float, sums[1:]))
        for variant, metric, definition_hash, *sums in rows
        if current.get(metric) == definition_hash
    }
    for metric in {metric for _, metric in found}:
        for variant in experiment.variants:
            found.setdefault((variant.key, metric), VariantSums())
    return found


def metric_sums(
    cursor: Cursor, tenant_id: str, experiment: Experiment
) -> tuple[SumsByMetric, dict[str, SumsSource]]:
    """The sums the scorecard uses per (variant, metric) and, per metric, where they came
    from: the stream's live sums when it has any for the current definition, else the
    stored replay of that definition."""
    live = live_sums(cursor, tenant_id, experiment)
    streamed = {metric for _, metric in live}
    chosen: dict[tuple[str, str], VariantSums] = {
        key: sums
        for key, sums in replayed_sums(cursor, tenant_id, experiment).items()
        if key[1] not in streamed
    }
    sources: dict[str, SumsSource] = {metric: "replay" for _, metric in chosen}
    sources.update({metric: "stream" for metric in streamed})
    chosen.update(live)
    return chosen, sources


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
    """The tenant's experiments as currently defined, by key (a stored definition that no
    longer validates is left out, and logged)."""
    rows = cursor.execute(
        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE tenant_id = ? "
        "ORDER BY experiment_key",
        [tenant_id],
    ).fetchall()
    views = []
    for row in rows:
        try:
            views.append(_experiment_view(row))
        except ValueError as error:  # pydantic's ValidationError
            log.warning("experiment %s of tenant %s no longer validates: %s", row[1], row[0], error)
    return views


def experiment(cursor: Cursor, tenant_id: str, experiment_key: str) -> ExperimentView | None:
    row = cursor.execute(
        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE tenant_id = ? AND experiment_key = ?",
        [tenant_id, experiment_key],
    ).fetchone()
    return None if row is None else _experiment_view(row)


def scorecard(
    cursor: Cursor, tenant_id: str, experiment_key: str, *, scale: Scale = "relative"
) -> Scorecard | None:
    """The experiment's scorecard from the loaded aggregates, its headline figures on
    ``scale``; None if it is not defined."""
    view = experiment(cursor, tenant_id, experiment_key)
    if view is None:
        return None
    sums, sources = metric_sums(cursor, tenant_id, view.experiment)
    return build_scorecard(
        tenant_id,
        view.experiment,
        variant_units(cursor, tenant_id, experiment_key),
        metric_stats(cursor, tenant_id, experiment_key),
        excluded_units=excluded_units(cursor, tenant_id, experiment_key),
        metric_sums=sums,
        sums_source=sources,
        scale=scale,
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
