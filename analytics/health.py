"""What the pipeline counted for one experiment and its tenant, and what it could not do.

``experiment_health`` reads the analytics store: events stored (each once) and the
messages loaded (``event_counts``, duplicates included: the difference is the duplicates
dropped), late events (received on a later UTC day than their timestamp), the stream's
units and units seen in several variants, the tenant's refused messages by stage and
field (dead letters, and messages the loader could not read), and ``pipeline_errors``:
definitions the stream quarantined and control events the loader could not read.
"""

from __future__ import annotations

import duckdb

from schemas.experiment import Experiment
from schemas.limits import MAX_TEXT_CHARS
from schemas.results import ExperimentHealth, PipelineError, RejectedCount

Cursor = duckdb.DuckDBPyConnection

#: The most (stage, field) groups of refused messages one answer lists.
MAX_REJECTION_GROUPS = 50

_LATE = (
    "received_at IS NOT NULL AND "
    "CAST(timezone('UTC', received_at) AS DATE) > CAST(timezone('UTC', timestamp) AS DATE)"
)


def pipeline_errors(
    cursor: Cursor, tenant_id: str, experiment_key: str, experiment: Experiment | None
) -> list[PipelineError]:
    """The experiment's quarantined definitions that are still current, and the control
    events about it that could not be read since its current definition (all of them
    when it has none)."""
    errors: list[PipelineError] = []
    if experiment is not None:
        current = {metric.name: metric.definition_hash for metric in experiment.metrics}
        rows = cursor.execute(
            """SELECT metric, definition_hash, reason, updated_at FROM definition_errors
               WHERE tenant_id = ? AND experiment_key = ? ORDER BY metric""",
            [tenant_id, experiment_key],
        ).fetchall()
        errors += [
            PipelineError(stage="stream", subject=f"metric {metric}", reason=reason, at=at)
            for metric, definition_hash, reason, at in rows
            if current.get(metric) == definition_hash
        ]
    rows = cursor.execute(
        """SELECT kafka_offset, reason FROM load_rejections
           WHERE tenant_id = $tenant AND subject = $key
             AND kafka_offset > coalesce((SELECT max(kafka_offset) FROM experiments
                                          WHERE tenant_id = $tenant AND experiment_key = $key),
                                         -1)
           ORDER BY kafka_offset""",
        {"tenant": tenant_id, "key": experiment_key},
    ).fetchall()
    errors += [
        PipelineError(
            stage="loader",
            subject=f"control event at offset {offset}",
            reason=f"a change to '{experiment_key}' could not be read and was not applied: "
            f"{reason}"[:MAX_TEXT_CHARS],
        )
        for offset, reason in rows
    ]
    return errors


def _counts(cursor: Cursor, table: str, where: str, parameters: list[str]) -> tuple[int, int]:
    row = cursor.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {_LATE}) FROM {table} WHERE {where}",
        parameters,
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _messages(cursor: Cursor, tenant_id: str, experiment_key: str) -> dict[str, int]:
    rows = cursor.execute(
        """SELECT kind, sum(messages)::BIGINT FROM event_counts
           WHERE tenant_id = ? AND (kind = 'outcome' OR experiment_key = ?) GROUP BY kind""",
        [tenant_id, experiment_key],
    ).fetchall()
    return {kind: int(messages) for kind, messages in rows}


def rejected_by_reason(cursor: Cursor, tenant_id: str) -> list[RejectedCount]:
    """The tenant's refused messages grouped by stage and first field, most first."""
    rows = cursor.execute(
        f"""SELECT stage, field, count(*) AS count, any_value(reason) FROM (
                SELECT stage, coalesce(json_extract_string(errors, '$[0].field'), '') AS field,
                       reason
                FROM deadletters WHERE tenant_id = $tenant
                UNION ALL
                SELECT 'loader', '', reason FROM load_rejections WHERE tenant_id = $tenant
            ) GROUP BY stage, field ORDER BY count DESC, stage, field
            LIMIT {MAX_REJECTION_GROUPS}""",
        {"tenant": tenant_id},
    ).fetchall()
    return [
        RejectedCount(stage=stage, field=field, count=int(count), example=example[:MAX_TEXT_CHARS])
        for stage, field, count, example in rows
    ]


def total_rejected(cursor: Cursor, tenant_id: str) -> int:
    row = cursor.execute(
        """SELECT (SELECT count(*) FROM deadletters WHERE tenant_id = $tenant)
                + (SELECT count(*) FROM load_rejections WHERE tenant_id = $tenant)""",
        {"tenant": tenant_id},
    ).fetchone()
    return int(row[0]) if row else 0


def experiment_health(
    cursor: Cursor, tenant_id: str, experiment_key: str, experiment: Experiment | None
) -> ExperimentHealth:
    exposures, late_exposures = _counts(
        cursor, "exposures", "tenant_id = ? AND experiment_key = ?", [tenant_id, experiment_key]
    )
    outcomes, late_outcomes = _counts(cursor, "outcomes", "tenant_id = ?", [tenant_id])
    messages = _messages(cursor, tenant_id, experiment_key)
    units_row = cursor.execute(
        """SELECT coalesce(sum(units), 0)::BIGINT, coalesce(sum(excluded_units), 0)::BIGINT
           FROM variant_units WHERE tenant_id = ? AND experiment_key = ?""",
        [tenant_id, experiment_key],
    ).fetchone()
    units, excluded = (int(units_row[0]), int(units_row[1])) if units_row else (0, 0)
    return ExperimentHealth(
        tenant_id=tenant_id,
        experiment_key=experiment_key,
        exposures=exposures,
        # Files migrated from layout 1 counted no messages before: never below 0.
        duplicate_exposures=max(messages.get("exposure", 0) - exposures, 0),
        late_exposures=late_exposures,
        units=units,
        units_in_several_variants=excluded,
        tenant_outcomes=outcomes,
        tenant_duplicate_outcomes=max(messages.get("outcome", 0) - outcomes, 0),
        tenant_late_outcomes=late_outcomes,
        tenant_rejected=total_rejected(cursor, tenant_id),
        rejected_by_reason=rejected_by_reason(cursor, tenant_id),
        errors=pipeline_errors(cursor, tenant_id, experiment_key, experiment),
        empty_raw_log=exposures == 0,
    )
