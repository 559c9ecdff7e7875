"""The attribution rule in DuckDB SQL: the one builder replay, daily and offline use.

``attribution_ctes()`` returns common table expressions over the ``exposures`` and
``outcomes`` tables of the analytics store (``analytics.store_schema``; ``analytics.offline``
builds tables of the same shape from exported files), for the experiment named by the
query parameters ``$tenant`` and ``$experiment``:

- ``exposure_variants``: per unit and variant, its earliest exposure ``since``;
- ``units``: per unit, ``variant_key`` (the variant of its first exposure: earliest, ties
  to the smaller variant key), ``first_exposure`` (a timestamp) and ``first_us`` (µs since
  the epoch), ``variants`` (distinct variants seen; more than one: excluded) and, with
  ``exclusion_time``, ``excluded_at`` (when its second variant first appeared, else NULL);
- with ``outcomes``: ``attributed_outcomes``, the tenant's outcomes at or after their
  unit's first exposure (``unit_id, variant_key, variants, event, timestamp, value``, plus
  ``excluded_at`` with ``exclusion_time``), of the event names in ``$events`` (a list, or
  NULL for every event). Units are not filtered: a caller keeps ``variants = 1`` (or, for
  a day-by-day view, what precedes ``excluded_at``).

The rule is ``analytics.attribution.rule``'s, which the stream applies per event.
"""

from __future__ import annotations

_EXPOSURE_VARIANTS = """exposure_variants AS (
    SELECT unit_id, variant_key, min(timestamp) AS since
    FROM exposures WHERE tenant_id = $tenant AND experiment_key = $experiment
    GROUP BY unit_id, variant_key
)"""

_UNITS = """units AS (
    SELECT unit_id,
           arg_min(variant_key, (since, variant_key)) AS variant_key,
           min(since) AS first_exposure,
           epoch_us(min(since)) AS first_us,
           count(*) AS variants{exclusion}
    FROM exposure_variants GROUP BY unit_id
)"""

_EXCLUDED_AT = """,
           CASE WHEN count(*) > 1 THEN list_sort(list(since))[2] END AS excluded_at"""

_ATTRIBUTED_OUTCOMES = """attributed_outcomes AS (
    SELECT u.unit_id, u.variant_key, u.variants{exclusion}, o.event, o.timestamp, o.value
    FROM outcomes AS o JOIN units AS u ON o.unit_id = u.unit_id
    WHERE o.tenant_id = $tenant AND o.timestamp >= u.first_exposure
      AND ($events IS NULL OR list_contains($events, o.event))
)"""


def attribution_ctes(*, outcomes: bool = False, exclusion_time: bool = False) -> str:
    """The CTEs (without ``WITH``) of the experiment's units, and with ``outcomes`` its
    attributed outcomes; see the module docstring for their columns and parameters."""
    parts = [
        _EXPOSURE_VARIANTS,
        _UNITS.format(exclusion=_EXCLUDED_AT if exclusion_time else ""),
    ]
    if outcomes:
        parts.append(
            _ATTRIBUTED_OUTCOMES.format(exclusion=", u.excluded_at" if exclusion_time else "")
        )
    return ",\n".join(parts)


def units_query() -> str:
    """A query of the experiment's ``units`` (one row per exposed unit)."""
    return f"WITH {attribution_ctes()}\nSELECT * FROM units"
