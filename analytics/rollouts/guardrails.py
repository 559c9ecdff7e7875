"""One guardrail's test: is the candidate worse than the tolerated regression?

Per guardrail the always-valid test of ``analytics.stats.sequential`` (normal-mixture
mSPRT) is run against the null "the effect is exactly the tolerated regression" (the
threshold, signed the worse way: +tolerance for a metric that should decrease). The
guardrail fails when the always-valid p-value is at most the guardrail's alpha (the plan's alpha
split evenly over its guardrails) *and* the estimate lies beyond the threshold on the
worse side: the whole confidence sequence is worse than what is tolerated. Using the
two-sided sequence at alpha for a one-sided decision keeps the false-failure rate of each
guardrail at most alpha over every check (conservative by up to a factor of two).

The effect is relative (treatment mean / control mean - 1, delta method) when the
tolerance is relative, absolute (difference of means) when it is absolute. Per-unit
metrics (conversion, count, sum) use the arms' Σx and Σx²; ratio metrics (mean, ratio)
Σx / Σy with the delta method for the ratio of means.
"""

from __future__ import annotations

import math

import numpy as np

from analytics.stats.cells import BoolArray, FloatArray
from analytics.stats.comparison import relative_effect
from analytics.stats.sequential import always_valid_test, mixing_variance_for
from schemas.rollout import Guardrail, GuardrailResult, MetricInput


def arm_mean(stats: MetricInput, ratio: bool) -> tuple[float, float] | None:
    """(mean, variance of the mean) of one arm, or None without enough data."""
    n = stats.n
    if n < 2:
        return None
    mean_x = stats.sum_x / n
    var_x = max(0.0, (stats.sum_xx - n * mean_x**2) / (n - 1))
    if not ratio:
        return mean_x, var_x / n
    if stats.sum_y <= 0:
        return None
    mean_y = stats.sum_y / n
    var_y = max(0.0, (stats.sum_yy - n * mean_y**2) / (n - 1))
    cov = (stats.sum_xy - n * mean_x * mean_y) / (n - 1)
    estimate = stats.sum_x / stats.sum_y
    variance = (var_x - 2 * estimate * cov + estimate**2 * var_y) / (n * mean_y**2)
    return estimate, max(0.0, variance)


def worse_than_tolerated(
    estimate: FloatArray,
    variance: FloatArray,
    units: FloatArray,
    *,
    threshold: float,
    worse_sign: float,
    alpha: float,
    planned_units: int,
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    """(always-valid p-value, interval low, high, failed) per cell: the test every
    guardrail check runs, vectorised (the simulation runs it over many rollouts at once).
    Cells without a usable estimate or variance get NaN and do not fail."""
    mixing = mixing_variance_for(variance, units, planned_units, alpha=alpha)
    test = always_valid_test(estimate, variance, mixing, alpha=alpha, null_value=threshold)
    low = np.ma.filled(test.ci_low, np.nan)
    high = np.ma.filled(test.ci_high, np.nan)
    with np.errstate(invalid="ignore"):
        worse = worse_sign * (estimate - threshold) > 0
        # One-sided: an estimate on the better side is no evidence of being worse.
        p_value = np.where(worse, np.ma.filled(test.p_value, np.nan), 1.0)
        failed = worse & (p_value <= alpha)
    return p_value, low, high, np.asarray(failed, dtype=bool)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def check_guardrail(
    guardrail: Guardrail,
    control: MetricInput,
    treatment: MetricInput,
    *,
    ratio: bool,
    alpha: float,
    planned_units: int,
) -> GuardrailResult:
    """The guardrail's verdict and the figures behind it (pure)."""
    worse_sign = 1.0 if guardrail.direction == "decrease" else -1.0
    threshold = worse_sign * guardrail.tolerance + 0.0  # + 0.0: no "-0" for no tolerance
    base = {
        "metric": guardrail.metric,
        "role": guardrail.role,
        "dry_run": guardrail.dry_run,
        "direction": guardrail.direction,
        "scale": guardrail.scale,
        "n_control": control.n,
        "n_treatment": treatment.n,
        "alpha": alpha,
        "threshold": threshold,
    }
    control_arm = arm_mean(control, ratio)
    treatment_arm = arm_mean(treatment, ratio)
    if control_arm is None or treatment_arm is None:
        return GuardrailResult(
            **base,
            control_mean=None if control_arm is None else _finite(control_arm[0]),
            treatment_mean=None if treatment_arm is None else _finite(treatment_arm[0]),
            effect=None,
            interval=None,
            p_value=None,
            verdict="no_data",
            reason="fewer than 2 units in an arm",
        )
    (mean_c, var_c), (mean_t, var_t) = control_arm, treatment_arm
    note = ""
    if guardrail.scale == "relative" and mean_c == 0:
        # A candidate that brings errors to a service that had none must not slip through
        # as "relative effect undefined": any regression of a zero baseline is beyond
        # every relative tolerance, so the difference is tested against 0.
        base = {**base, "scale": "absolute", "threshold": 0.0}
        threshold = 0.0
        note = " (the control mean is 0: tested on the difference against 0)"
    if guardrail.scale == "relative" and mean_c != 0:
        if mean_c < 0:
            return GuardrailResult(
                **base,
                control_mean=mean_c,
                treatment_mean=mean_t,
                effect=None,
                interval=None,
                p_value=None,
                verdict="no_data",
                reason="the control mean is negative, so a relative effect is undefined",
            )
        rel, se = relative_effect(
            np.array(mean_c), np.array(mean_t), np.array(var_c), np.array(var_t)
        )
        estimate, variance = float(rel), float(se) ** 2
    else:
        estimate, variance = mean_t - mean_c, var_c + var_t
    if not variance > 0:
        # Both arms constant: equal (e.g. no errors in either) is no sign of being worse;
        # a constant difference cannot be tested yet and holds the rollout.
        worse = worse_sign * (estimate - threshold) > 0
        return GuardrailResult(
            **base,
            control_mean=mean_c,
            treatment_mean=mean_t,
            effect=_finite(estimate),
            interval=None,
            p_value=None,
            verdict="no_data" if worse else "pass",
            reason=(
                "no variance in either arm, and the treatment is worse: not testable yet"
                if worse
                else f"no variance in either arm, and not worse than {threshold:.4g}"
            )
            + note,
        )
    figures = worse_than_tolerated(
        np.array(estimate),
        np.array(variance),
        np.array(control.n + treatment.n),
        threshold=threshold,
        worse_sign=worse_sign,
        alpha=alpha,
        planned_units=planned_units,
    )
    p_value, low, high = (float(values.reshape(-1)[0]) for values in figures[:3])
    failed = bool(figures[3].reshape(-1)[0])
    side = "above" if worse_sign > 0 else "below"
    if failed:
        reason = (
            f"worse than tolerated: the always-valid interval [{low:.4g}, {high:.4g}] lies "
            f"{side} the threshold {threshold:.4g} (p = {p_value:.3g} <= {alpha:.3g})"
        )
    else:
        reason = (
            f"not shown worse than {threshold:.4g} (p = {p_value:.3g} > {alpha:.3g})"
            if (p_value > alpha)
            else f"better than the threshold {threshold:.4g}"
        )
    return GuardrailResult(
        **base,
        control_mean=mean_c,
        treatment_mean=mean_t,
        effect=_finite(estimate),
        interval=(low, high) if math.isfinite(low) and math.isfinite(high) else None,
        p_value=_finite(p_value),
        verdict="fail" if failed else "pass",
        reason=reason + note,
    )
