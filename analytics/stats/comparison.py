"""The result of comparing a treatment with its control, over many cells at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from analytics.stats.cells import BoolArray, FloatArray, ReasonArray, masked

RELATIVE_UNDEFINED = "control mean is 0, so the relative effect is undefined"


@dataclass(frozen=True)
class ComparisonCell:
    """One cell of a ``Comparison`` as plain floats; ``None`` where undefined."""

    test: str
    control_mean: float | None
    treatment_mean: float | None
    difference: float | None
    difference_ci: tuple[float, float] | None
    relative: float | None
    relative_ci: tuple[float, float] | None
    statistic: float | None
    p_value: float | None
    significant: bool
    reason: str | None
    standard_error: float | None = None
    interval_method: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control, per cell. Masked entries are undefined (see ``reason``).

    ``difference`` is treatment mean - control mean; ``relative`` is the difference over
    the control mean, with a delta-method interval. Intervals are two-sided at
    1 - ``alpha``. ``standard_error`` is the unpooled standard error of the difference
    (what sequential and Bayesian summaries build on); ``interval_method`` names how
    the difference's interval was made (``welch_t``, ``wald`` or ``newcombe``).
    """

    test: str
    alpha: float
    control_mean: np.ma.MaskedArray
    treatment_mean: np.ma.MaskedArray
    difference: np.ma.MaskedArray
    difference_ci_low: np.ma.MaskedArray
    difference_ci_high: np.ma.MaskedArray
    relative: np.ma.MaskedArray
    relative_ci_low: np.ma.MaskedArray
    relative_ci_high: np.ma.MaskedArray
    statistic: np.ma.MaskedArray
    p_value: np.ma.MaskedArray
    reason: ReasonArray
    standard_error: np.ma.MaskedArray
    interval_method: ReasonArray

    def __len__(self) -> int:
        return int(self.p_value.size)

    @property
    def significant(self) -> BoolArray:
        return np.asarray(np.ma.filled(self.p_value < self.alpha, False), dtype=bool)

    def cell(self, index: int) -> ComparisonCell:
        def value(array: np.ma.MaskedArray) -> float | None:
            flat = array.ravel()
            return None if np.ma.is_masked(flat[index]) else float(flat[index])

        def interval(low: np.ma.MaskedArray, high: np.ma.MaskedArray) -> tuple[float, float] | None:
            low_value, high_value = value(low), value(high)
            return None if low_value is None or high_value is None else (low_value, high_value)

        return ComparisonCell(
            test=self.test,
            control_mean=value(self.control_mean),
            treatment_mean=value(self.treatment_mean),
            difference=value(self.difference),
            difference_ci=interval(self.difference_ci_low, self.difference_ci_high),
            relative=value(self.relative),
            relative_ci=interval(self.relative_ci_low, self.relative_ci_high),
            statistic=value(self.statistic),
            p_value=value(self.p_value),
            significant=bool(self.significant.ravel()[index]),
            reason=self.reason.ravel()[index],
            standard_error=value(self.standard_error),
            interval_method=self.interval_method.ravel()[index],
        )

    def cells(self) -> list[ComparisonCell]:
        return [self.cell(index) for index in range(len(self))]


@dataclass(frozen=True)
class RawComparison:
    """What a test computes before masking; NaN may appear where a cell is degenerate."""

    control_mean: FloatArray
    treatment_mean: FloatArray
    control_mean_variance: FloatArray
    treatment_mean_variance: FloatArray
    difference: FloatArray
    difference_half_width: FloatArray
    statistic: FloatArray
    p_value: FloatArray
    #: Per cell, the name of the method behind ``difference_half_width``.
    interval_method: ReasonArray
    #: Where set, the interval of the difference; replaces ± ``difference_half_width``.
    difference_ci: tuple[FloatArray, FloatArray] | None = None


def assemble(
    test: str,
    alpha: float,
    raw: RawComparison,
    invalid_reason: ReasonArray,
    control_has_units: BoolArray,
    treatment_has_units: BoolArray,
) -> Comparison:
    """Mask degenerate cells and add the delta-method relative effect."""
    invalid = invalid_reason != None  # noqa: E711 (elementwise on an object array)
    with np.errstate(all="ignore"):
        relative, relative_half_width = _relative_effect(raw, alpha)
    relative_undefined = ~invalid & ~np.isfinite(relative)
    reason = invalid_reason.copy()
    reason[relative_undefined] = RELATIVE_UNDEFINED
    relative_invalid = invalid | relative_undefined
    with np.errstate(all="ignore"):
        if raw.difference_ci is None:
            ci_low = raw.difference - raw.difference_half_width
            ci_high = raw.difference + raw.difference_half_width
        else:
            ci_low, ci_high = raw.difference_ci
        standard_error = np.sqrt(raw.control_mean_variance + raw.treatment_mean_variance)
        return Comparison(
            test=test,
            alpha=alpha,
            control_mean=masked(raw.control_mean, ~control_has_units),
            treatment_mean=masked(raw.treatment_mean, ~treatment_has_units),
            difference=masked(raw.difference, invalid),
            difference_ci_low=masked(ci_low, invalid),
            difference_ci_high=masked(ci_high, invalid),
            relative=masked(relative, relative_invalid),
            relative_ci_low=masked(relative - relative_half_width, relative_invalid),
            relative_ci_high=masked(relative + relative_half_width, relative_invalid),
            statistic=masked(raw.statistic, invalid),
            p_value=masked(np.clip(raw.p_value, 0.0, 1.0), invalid),
            reason=reason,
            standard_error=masked(standard_error, invalid),
            interval_method=np.where(invalid, None, raw.interval_method),
        )


def _relative_effect(raw: RawComparison, alpha: float) -> tuple[FloatArray, FloatArray]:
    """(mean_t / mean_c - 1, half-width of its normal CI) by the delta method.

    Var(m_t / m_c) ~ Var(m_t) / m_c² + m_t² Var(m_c) / m_c⁴ for independent arms.
    """
    control, treatment = raw.control_mean, raw.treatment_mean
    relative = np.where(control == 0, np.nan, treatment / control - 1.0)
    variance = (
        raw.treatment_mean_variance / control**2
        + treatment**2 * raw.control_mean_variance / control**4
    )
    half_width = special.ndtri(1.0 - alpha / 2.0) * np.sqrt(variance)
    return relative, half_width
