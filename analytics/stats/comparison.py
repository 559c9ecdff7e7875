"""The result of comparing a treatment with its control, over many cells at once.

Every comparison carries both scales. The absolute scale is treatment mean - control
mean with the test's own interval and p-value. The relative scale is treatment mean /
control mean - 1 by the delta method (for independent arms,
Var ≈ Var(m_t) / m_c² + m_t² Var(m_c) / m_c⁴), with its interval and p-value from
Student's t at the Welch-Satterthwaite degrees of freedom of the two arms' means, as
GrowthBook's gbstats does (``TwoSidedTTest`` with relative differences). t is used at
every sample size: at 10,000 degrees of freedom it differs from z by 2e-4, so no z
shortcut is taken. A relative effect is undefined when the control mean is 0 or
negative (a ratio to a negative base flips its sign) and has no interval when its
delta-method variance is 0 (for instance a treatment arm whose units are all 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from analytics.stats.cells import (
    BoolArray,
    FloatArray,
    ReasonArray,
    masked,
    reason_codes,
    rule,
)
from analytics.stats.quantiles import t_quantile

RELATIVE_UNDEFINED = "control mean is 0 or negative, so the relative effect is undefined"
RELATIVE_NO_VARIANCE = (
    "the relative effect's delta-method variance is 0 (an arm without variance, such as a "
    "treatment whose units are all 0): no interval, p-value or chance to win"
)
rule(np.zeros(0, dtype=bool), RELATIVE_UNDEFINED, "control_mean_not_positive")
rule(np.zeros(0, dtype=bool), RELATIVE_NO_VARIANCE, "zero_variance")


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
    dof: float | None = None
    relative_standard_error: float | None = None
    relative_statistic: float | None = None
    relative_p_value: float | None = None
    relative_reason: str | None = None
    reason_code: str | None = None
    relative_reason_code: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control, per cell. Masked entries are undefined (see ``reason``).

    ``difference`` is treatment mean - control mean; ``relative`` is the difference over
    the control mean, with a delta-method interval. Intervals are two-sided at
    1 - ``alpha``. ``standard_error`` is the unpooled standard error of the difference
    (what sequential and Bayesian summaries build on); ``interval_method`` names how
    the difference's interval was made (``welch_t``, ``wald`` or ``newcombe``).
    ``reason`` explains the first missing figure of the absolute scale, else of the
    relative one; ``relative_reason`` the relative scale's; ``*_code`` are their codes.
    ``dof`` is the Welch-Satterthwaite degrees of freedom of the arms' means.
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
    dof: np.ma.MaskedArray
    relative_standard_error: np.ma.MaskedArray
    relative_statistic: np.ma.MaskedArray
    relative_p_value: np.ma.MaskedArray
    absolute_reason: ReasonArray
    relative_reason: ReasonArray
    #: log(m_t / m_c) and its delta-method standard error, sqrt(Var(m_t) / m_t² +
    #: Var(m_c) / m_c²): the relative effect on the log scale, where the estimate is far
    #: closer to normal in small samples (the sequential test works there). Masked where
    #: the relative effect has no interval or the treatment mean is not positive.
    log_ratio: np.ma.MaskedArray
    log_ratio_standard_error: np.ma.MaskedArray

    @property
    def reason_code(self) -> ReasonArray:
        return reason_codes(self.reason)

    @property
    def relative_reason_code(self) -> ReasonArray:
        return reason_codes(self.relative_reason)

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
            dof=value(self.dof),
            relative_standard_error=value(self.relative_standard_error),
            relative_statistic=value(self.relative_statistic),
            relative_p_value=value(self.relative_p_value),
            relative_reason=self.relative_reason.ravel()[index],
            reason_code=self.reason_code.ravel()[index],
            relative_reason_code=self.relative_reason_code.ravel()[index],
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
    #: Welch-Satterthwaite degrees of freedom; computed from the arms when not given.
    dof: FloatArray | None = None
    control_n: FloatArray | None = None
    treatment_n: FloatArray | None = None


def welch_dof(
    control_mean_variance: FloatArray,
    treatment_mean_variance: FloatArray,
    control_n: FloatArray,
    treatment_n: FloatArray,
) -> FloatArray:
    """Welch-Satterthwaite degrees of freedom of the difference of two arms' means."""
    with np.errstate(all="ignore"):
        return (control_mean_variance + treatment_mean_variance) ** 2 / (
            control_mean_variance**2 / (control_n - 1)
            + treatment_mean_variance**2 / (treatment_n - 1)
        )


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
        if raw.dof is not None:
            dof = raw.dof
        elif raw.control_n is not None and raw.treatment_n is not None:
            dof = welch_dof(
                raw.control_mean_variance,
                raw.treatment_mean_variance,
                raw.control_n,
                raw.treatment_n,
            )
        else:
            dof = np.full(np.shape(raw.difference), np.inf)
        relative, relative_se = relative_effect(
            raw.control_mean,
            raw.treatment_mean,
            raw.control_mean_variance,
            raw.treatment_mean_variance,
        )
        relative_statistic = relative / relative_se
        relative_p = 2.0 * special.stdtr(dof, -np.abs(relative_statistic))
        relative_half_width = t_quantile(dof, 1.0 - alpha / 2.0) * relative_se
    undefined = ~invalid & ~(raw.control_mean > 0)
    no_variance = ~invalid & ~undefined & ~(relative_se > 0)
    relative_reason = invalid_reason.copy()
    relative_reason[undefined] = RELATIVE_UNDEFINED
    relative_reason[no_variance] = RELATIVE_NO_VARIANCE
    relative_invalid = invalid | undefined
    relative_untestable = relative_invalid | no_variance
    with np.errstate(all="ignore"):
        log_ratio = np.log(raw.treatment_mean / raw.control_mean)
        log_se = np.sqrt(
            raw.treatment_mean_variance / raw.treatment_mean**2
            + raw.control_mean_variance / raw.control_mean**2
        )
    log_invalid = relative_untestable | ~(raw.treatment_mean > 0) | ~(log_se > 0)
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
            relative_ci_low=masked(relative - relative_half_width, relative_untestable),
            relative_ci_high=masked(relative + relative_half_width, relative_untestable),
            statistic=masked(raw.statistic, invalid),
            p_value=masked(np.clip(raw.p_value, 0.0, 1.0), invalid),
            reason=np.where(invalid, invalid_reason, relative_reason),
            standard_error=masked(standard_error, invalid),
            interval_method=np.where(invalid, np.array(None, dtype=object), raw.interval_method),
            dof=masked(dof, invalid),
            relative_standard_error=masked(relative_se, relative_untestable),
            relative_statistic=masked(relative_statistic, relative_untestable),
            relative_p_value=masked(np.clip(relative_p, 0.0, 1.0), relative_untestable),
            absolute_reason=invalid_reason,
            relative_reason=relative_reason,
            log_ratio=masked(log_ratio, log_invalid),
            log_ratio_standard_error=masked(log_se, log_invalid),
        )


def relative_effect(
    control_mean: FloatArray,
    treatment_mean: FloatArray,
    control_mean_variance: FloatArray,
    treatment_mean_variance: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """(m_t / m_c - 1, its delta-method standard error); NaN where m_c is 0."""
    with np.errstate(all="ignore"):
        relative = np.where(control_mean == 0, np.nan, treatment_mean / control_mean - 1.0)
        variance = (
            treatment_mean_variance / control_mean**2
            + treatment_mean**2 * control_mean_variance / control_mean**4
        )
    return relative, np.sqrt(variance)
