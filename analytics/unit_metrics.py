"""One unit's value of a metric from its outcome history, and per-variant sums of them.

This is the single definition of a unit-level metric value, shared by the stream (per
event, so it is plain Python: no pydantic, numpy or DuckDB in the hot path) and by the
results service's replay from the raw log. ``UnitMetric.of(definition)`` compiles a
``schemas.experiment.MetricDefinition`` once; ``unit_value`` then maps a unit's history
``{event: [(timestamp_us, value), ...]}`` and its first exposure (µs) to ``(x, y, c)``:

- x: the metric (conversion 1/0, count, or sum of values; a ratio's numerator), counting
  outcomes with ``first_exposure <= timestamp < first_exposure + window`` (no end
  without a window), then capped from above at the cap if there is one;
- y: a mean or ratio metric's denominator over the same window (None otherwise);
- c: the CUPED covariate, x over ``[first_exposure - lookback, first_exposure)``, capped
  the same way (None without ``cuped_lookback_days``).

Sums use ``math.fsum`` (correctly rounded), so a unit's value never depends on the order
its events arrived in. ``VariantSums`` accumulates n, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc
and can take a unit's contribution out again when its value changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Final, Literal, NamedTuple

from schemas.experiment import Aggregation, MetricDefinition

History = Mapping[str, Sequence[tuple[int, float]]]
PartKind = Literal["conversion", "count", "sum"]

_HOUR_US: Final = 3_600_000_000
_DAY_US: Final = 24 * _HOUR_US


class _Defined:
    """Marker: use the definition's fixed cap (the default of ``unit_value``)."""


DEFINED_CAP: Final = _Defined()


@dataclass(frozen=True, slots=True)
class Part:
    """Aggregate one event's values within a time range into a number."""

    event: str
    kind: PartKind

    def over(self, history: History, start: int, end: int | None) -> float:
        """The part over outcomes with ``start <= timestamp < end`` (``end`` None: no end)."""
        outcomes = history.get(self.event)
        if not outcomes:
            return 0.0
        if end is None:
            values = [value for timestamp, value in outcomes if timestamp >= start]
        else:
            values = [value for timestamp, value in outcomes if start <= timestamp < end]
        if self.kind == "sum":
            return math.fsum(values)
        if self.kind == "count":
            return float(len(values))
        return 1.0 if values else 0.0


@dataclass(frozen=True, slots=True)
class UnitMetric:
    """A metric definition compiled for per-unit evaluation."""

    name: str
    x: Part
    y: Part | None
    window_us: int | None
    lookback_us: int | None
    fixed_cap: float | None
    percentile_cap: float | None

    @classmethod
    def of(cls, metric: MetricDefinition) -> UnitMetric:
        x: Part
        y: Part | None = None
        if metric.type is Aggregation.RATIO:
            assert metric.numerator is not None and metric.denominator is not None
            x = Part(metric.numerator.event, metric.numerator.type)
            y = Part(metric.denominator.event, metric.denominator.type)
        elif metric.type is Aggregation.MEAN:
            x, y = Part(metric.event, "sum"), Part(metric.event, "count")
        else:
            x = Part(metric.event, metric.type.value)  # type: ignore[arg-type]
        cap = metric.cap
        return cls(
            name=metric.name,
            x=x,
            y=y,
            window_us=None
            if metric.window_hours is None
            else round(metric.window_hours * _HOUR_US),
            lookback_us=None
            if metric.cuped_lookback_days is None
            else round(metric.cuped_lookback_days * _DAY_US),
            fixed_cap=None if cap is None else cap.value,
            percentile_cap=None if cap is None else cap.percentile,
        )

    @property
    def events(self) -> frozenset[str]:
        """The event names whose outcomes can change this metric."""
        return frozenset({self.x.event} | ({self.y.event} if self.y else set()))


def _micros(amount: float | None, unit_us: int) -> int | None:
    return None if amount is None else round(amount * unit_us)


class UnitValue(NamedTuple):
    x: float
    y: float | None
    c: float | None


def unit_value(
    history: History,
    first_exposure_us: int,
    metric: UnitMetric,
    *,
    cap: float | _Defined | None = DEFINED_CAP,
) -> UnitValue:
    """The unit's ``(x, y, c)`` for ``metric`` (see the module docstring).

    ``cap``: by default the definition's fixed cap; a percentile cap must be passed in
    (its value over the experiment's units), and ``None`` leaves the values uncapped.
    """
    if isinstance(cap, _Defined):
        if metric.percentile_cap is not None:
            raise ValueError(
                f"cap: metric '{metric.name}' is capped at the {metric.percentile_cap:g}th "
                "percentile of its units; pass that value as cap (or None for uncapped values)"
            )
        cap = metric.fixed_cap
    end = None if metric.window_us is None else first_exposure_us + metric.window_us
    x = metric.x.over(history, first_exposure_us, end)
    y = None if metric.y is None else metric.y.over(history, first_exposure_us, end)
    c = None
    if metric.lookback_us is not None:
        c = metric.x.over(history, first_exposure_us - metric.lookback_us, first_exposure_us)
    value = UnitValue(x, y, c)
    return value if cap is None else capped(value, cap)


def capped(value: UnitValue, cap: float) -> UnitValue:
    """``value`` winsorised from above at ``cap``: x and the covariate c, never y."""
    x, y, c = value
    return UnitValue(min(x, cap), y, None if c is None else min(c, cap))


@dataclass(slots=True)
class VariantSums:
    """Per-variant sufficient statistics of one metric (y and c terms stay 0 if unused)."""

    n: int = 0
    sum_x: float = 0.0
    sum_xx: float = 0.0
    sum_y: float = 0.0
    sum_yy: float = 0.0
    sum_xy: float = 0.0
    sum_c: float = 0.0
    sum_cc: float = 0.0
    sum_xc: float = 0.0

    def add(self, value: UnitValue) -> None:
        """Count one unit with ``value``."""
        self._apply(value, 1)

    def subtract(self, value: UnitValue) -> None:
        """Take out a unit counted with ``value`` (e.g. before adding its new value)."""
        self._apply(value, -1)

    def _apply(self, value: UnitValue, sign: int) -> None:
        x, y, c = value
        self.n += sign
        self.sum_x += sign * x
        self.sum_xx += sign * x * x
        if y is not None:
            self.sum_y += sign * y
            self.sum_yy += sign * y * y
            self.sum_xy += sign * x * y
        if c is not None:
            self.sum_c += sign * c
            self.sum_cc += sign * c * c
            self.sum_xc += sign * x * c

    def merge(self, other: VariantSums) -> None:
        """Add ``other``'s units (e.g. another partition's sums) to these."""
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``th percentile (0 < q < 100) of ``values`` with linear interpolation
    (numpy's default), so the stream and DuckDB replay agree on percentile caps."""
    if not values:
        raise ValueError("values: a percentile needs at least one value")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
