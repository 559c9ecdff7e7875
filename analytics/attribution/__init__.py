"""Attribution, stated once: which variant a unit counts under and which outcomes count.

- A unit's first exposure to an experiment is its earliest exposure; ties go to the
  smaller variant key, so the result does not depend on arrival order.
- A unit that saw more than one distinct variant of an experiment is excluded from it
  (counted as excluded under the variant of its first exposure).
- An outcome counts for an experiment when its timestamp is at or after the unit's first
  exposure (and the unit is not excluded).

``rule`` is the Python form the stream applies per event (compiled with it);
``sql.attribution_ctes`` the DuckDB form that replay, the daily figures and ``analyze``
query; ``events.metric_events`` names the outcome events an experiment's metrics read.
``tests/unit/test_attribution_parity.py`` runs one event log through all four paths.
"""

from analytics.attribution.events import metric_events
from analytics.attribution.rule import ExposureSummary, counts_outcome, exposed, to_micros
from analytics.attribution.sql import attribution_ctes, units_query

__all__ = [
    "ExposureSummary",
    "attribution_ctes",
    "counts_outcome",
    "exposed",
    "metric_events",
    "to_micros",
    "units_query",
]
