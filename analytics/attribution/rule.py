"""The attribution rule in Python: a unit's first exposure and whether it is excluded.

The stream applies it per event (this module is compiled with mypyc alongside the
stream's per-event path, ``setup.py``); ``analytics.attribution.sql`` states the same rule
for DuckDB, and ``tests/unit/test_attribution_parity.py`` holds the two to each other.

- A unit's first exposure to an experiment is its earliest exposure ``timestamp``; ties
  go to the smaller variant key, so the result does not depend on arrival order.
- A unit that saw more than one distinct variant of an experiment is excluded from it.
- An outcome counts for an experiment when the unit is not excluded and the outcome's
  timestamp is at or after the unit's first exposure.

Timestamps are whole microseconds since the Unix epoch (``to_micros``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch (exact, no float)."""
    return (moment - _EPOCH) // _MICROSECOND


class ExposureSummary(NamedTuple):
    """What attribution needs from a unit's exposures to one experiment."""

    first_timestamp: int
    first_variant: str
    variants: tuple[str, ...]  # sorted, distinct

    @property
    def excluded(self) -> bool:
        return len(self.variants) > 1


def exposed(current: ExposureSummary | None, timestamp: int, variant: str) -> ExposureSummary:
    """The summary after one more exposure (``current`` None: the unit's first)."""
    # Unpacking and tuple.__new__: compiled, no Python-level NamedTuple attribute or call.
    if current is None:
        return tuple.__new__(ExposureSummary, (timestamp, variant, (variant,)))
    current_timestamp, current_variant, variants = current
    first_timestamp, first_variant = min((current_timestamp, current_variant), (timestamp, variant))
    if variant not in variants:
        variants = tuple(sorted((*variants, variant)))
    return tuple.__new__(ExposureSummary, (first_timestamp, first_variant, variants))


def counts_outcome(summary: ExposureSummary, timestamp: int) -> bool:
    """Whether an outcome at ``timestamp`` counts for the experiment ``summary`` is of."""
    first_timestamp, _, variants = summary
    return len(variants) == 1 and timestamp >= first_timestamp
