"""Daily cumulative figures of one experiment, computed from the raw log.

For each UTC day D from the experiment's first exposure day to its last event day (or a
chosen day), per variant: the units and excluded units as of the end of D, and per
(event, aggregation) the Σx and Σx² of those units, counting the outcomes with ``first
exposure <= timestamp < end of D``. The attribution rule is ``analytics.attribution``'s
(its SQL form, the stream's rule): exposures before the end of D decide a unit's first
exposure (earliest timestamp, ties to the smaller variant key) and whether it saw more
than one variant, in which case it counts in ``excluded`` under its first variant from
the day its second variant appeared, and in nothing else.

One DuckDB query does it, over the deduplicated ``exposures`` and ``outcomes`` tables:
each unit's contributions change only on the day it enters, the days it has outcomes and
the day it is excluded, so the query computes those changes per (variant, cell, day),
then running sums over the day series. The cost grows with the events, not with units
times days. Because the figures are recomputed from the raw events, a late event lands on
the day of its timestamp and moves that day, every later day and the totals. Counts and
conversions are exact; sums of fractional values are exact up to float rounding, as the
stream's running sums are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import duckdb

from analytics.attribution import attribution_ctes
from analytics.scorecard import StatsByCell
from schemas.experiment import Aggregation
from schemas.limits import MAX_DAILY_DAYS

__all__ = ["DayFigures", "daily_figures", "first_exposure_day"]


@dataclass
class DayFigures:
    """An experiment's cumulative figures as of the end of ``day`` (UTC).

    ``units`` and ``excluded`` map variant -> units; ``stats`` maps (variant, event,
    aggregation) -> (Σx, Σx²), the shapes ``analytics.scorecard.build_scorecard`` takes.
    """

    day: date
    units: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    stats: StatsByCell = field(default_factory=dict)

    @property
    def excluded_units(self) -> int:
        return sum(self.excluded.values())


# Rows with a NULL event are the variant's (units, excluded); the others (Σx, Σx²).
_DAILY = (
    "WITH "
    + attribution_ctes(outcomes=True, exclusion_time=True)
    + """,
unit_entries AS (
    SELECT variant_key,
           CAST(timezone('UTC', first_exposure) AS DATE) AS entry_day,
           CAST(timezone('UTC', excluded_at) AS DATE) AS excluded_day
    FROM units
),
unit_changes AS (
    SELECT variant_key, entry_day AS day, 1 AS units, 0 AS excluded FROM unit_entries
    UNION ALL
    SELECT variant_key, excluded_day, -1, 1 FROM unit_entries WHERE excluded_day IS NOT NULL
),
unit_days AS (
    SELECT unit_id, variant_key, CAST(timezone('UTC', excluded_at) AS DATE) AS excluded_day,
           event, CAST(timezone('UTC', timestamp) AS DATE) AS day,
           count(*)::DOUBLE AS events, sum(value) AS total
    FROM attributed_outcomes
    GROUP BY ALL
),
cumulative AS (
    SELECT unit_id, variant_key, excluded_day, event, day, events,
           sum(events) OVER w AS events_so_far,
           sum(total) OVER w AS total_so_far,
           row_number() OVER w AS step
    FROM unit_days WHERE excluded_day IS NULL OR day < excluded_day
    WINDOW w AS (PARTITION BY unit_id, event ORDER BY day
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
running AS (
    SELECT *, lag(total_so_far, 1, 0.0) OVER w AS total_before,
           lead(day) OVER w IS NULL AS last_step
    FROM cumulative
    WINDOW w AS (PARTITION BY unit_id, event ORDER BY day)
),
stat_changes AS (
    SELECT variant_key, event, 'conversion' AS aggregation, day,
           1.0 AS sum, 1.0 AS sum_sq
    FROM running WHERE step = 1
    UNION ALL
    SELECT variant_key, event, 'count', day, events,
           events_so_far * events_so_far - (events_so_far - events) * (events_so_far - events)
    FROM running
    UNION ALL
    SELECT variant_key, event, 'sum', day, total_so_far - total_before,
           total_so_far * total_so_far - total_before * total_before
    FROM running
    UNION ALL
    -- excluded: the unit takes back all it added, from the day of its second variant
    SELECT variant_key, event, 'conversion', excluded_day, -1.0, -1.0
    FROM running WHERE last_step AND excluded_day IS NOT NULL
    UNION ALL
    SELECT variant_key, event, 'count', excluded_day,
           -events_so_far, -events_so_far * events_so_far
    FROM running WHERE last_step AND excluded_day IS NOT NULL
    UNION ALL
    SELECT variant_key, event, 'sum', excluded_day, -total_so_far, -total_so_far * total_so_far
    FROM running WHERE last_step AND excluded_day IS NOT NULL
),
-- the days shown: the data's span, cut to [since, through] and to $max_days days (the
-- last ones, or the first ones from since); changes before the first day shown are
-- counted on it, so every day's figures stay cumulative
bounds AS (
    SELECT greatest(data_first, coalesce($since, data_first)) AS wanted_first,
           least(data_last, coalesce($through, data_last)) AS wanted_last
    FROM (SELECT (SELECT min(entry_day) FROM unit_entries) AS data_first,
                 greatest((SELECT max(day) FROM unit_changes),
                          (SELECT max(day) FROM stat_changes)) AS data_last)
),
shown AS (
    SELECT CASE WHEN $since IS NULL
                THEN greatest(wanted_first, wanted_last - ($max_days - 1))
                ELSE wanted_first END AS first_day,
           CASE WHEN $since IS NULL THEN wanted_last
                ELSE least(wanted_last, wanted_first + ($max_days - 1)) END AS last_day
    FROM bounds
),
days AS (
    SELECT CAST(range AS DATE) AS day FROM range(
        (SELECT first_day FROM shown)::TIMESTAMP,
        ((SELECT last_day FROM shown) + INTERVAL 1 DAY)::TIMESTAMP,
        INTERVAL 1 DAY)
),
unit_totals AS (
    SELECT variant_key, greatest(day, (SELECT first_day FROM shown)) AS day,
           sum(units) AS units, sum(excluded) AS excluded
    FROM unit_changes GROUP BY ALL
),
stat_totals AS (
    SELECT variant_key, event, aggregation, greatest(day, (SELECT first_day FROM shown)) AS day,
           sum(sum) AS sum, sum(sum_sq) AS sum_sq
    FROM stat_changes GROUP BY ALL
)
SELECT d.day, v.variant_key, NULL AS event, NULL AS aggregation,
       sum(coalesce(t.units, 0)) OVER w, sum(coalesce(t.excluded, 0)) OVER w
FROM days AS d CROSS JOIN (SELECT DISTINCT variant_key FROM units) AS v
LEFT JOIN unit_totals AS t ON t.variant_key = v.variant_key AND t.day = d.day
WINDOW w AS (PARTITION BY v.variant_key ORDER BY d.day)
UNION ALL
SELECT d.day, c.variant_key, c.event, c.aggregation,
       sum(coalesce(t.sum, 0)) OVER w, sum(coalesce(t.sum_sq, 0)) OVER w
FROM days AS d
CROSS JOIN (SELECT DISTINCT variant_key, event, aggregation FROM stat_changes) AS c
LEFT JOIN stat_totals AS t
    ON t.variant_key = c.variant_key AND t.event = c.event
   AND t.aggregation = c.aggregation AND t.day = d.day
WINDOW w AS (PARTITION BY c.variant_key, c.event, c.aggregation ORDER BY d.day)
"""
)


def daily_figures(
    cursor: duckdb.DuckDBPyConnection,
    tenant_id: str,
    experiment_key: str,
    *,
    events: list[str] | None = None,
    since: date | None = None,
    through: date | None = None,
    max_days: int = MAX_DAILY_DAYS,
) -> list[DayFigures]:
    """The experiment's figures, one per day in order; empty without exposures.

    ``events`` limits the stats to those event names (all of the unit's events by
    default, like the stream's ``metric_stats``). Days run from the first exposure's day
    (or ``since``, if later) to the last day with an exposure or a counted outcome (or
    ``through``, if earlier), at most ``max_days`` of them: the last ones, or the first
    ones from ``since``. Each day's figures are cumulative from the first exposure
    whichever days are shown. ``cursor`` must see the analytics store's ``exposures`` and
    ``outcomes`` tables.
    """
    if max_days < 1:
        raise ValueError(f"max_days: must be at least 1, got {max_days}")
    rows = cursor.execute(
        _DAILY,
        {
            "tenant": tenant_id,
            "experiment": experiment_key,
            "events": events,
            "since": since,
            "through": through,
            "max_days": max_days,
        },
    ).fetchall()
    day_figures: dict[date, DayFigures] = {}
    for day, variant, event, aggregation, first, second in rows:
        figures = day_figures.get(day)
        if figures is None:
            figures = day_figures[day] = DayFigures(day)
        if event is None:
            figures.units[variant] = int(first)
            figures.excluded[variant] = int(second)
        else:
            figures.stats[(variant, event, Aggregation(aggregation))] = (
                float(first),
                float(second),
            )
    return [day_figures[day] for day in sorted(day_figures)]


def first_exposure_day(
    cursor: duckdb.DuckDBPyConnection, tenant_id: str, experiment_key: str
) -> date | None:
    """The UTC day of the experiment's first exposure in the raw log (None: none yet)."""
    row = cursor.execute(
        """SELECT CAST(timezone('UTC', min(timestamp)) AS DATE) FROM exposures
           WHERE tenant_id = ? AND experiment_key = ?""",
        [tenant_id, experiment_key],
    ).fetchone()
    return None if row is None else row[0]
