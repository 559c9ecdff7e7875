"""``liftstream plan``: units needed to detect an effect, and the effect detectable so far.

Pure text from ``analytics.stats.power``; the command in ``main`` only parses options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["conversion", "mean"]

#: Argument names of ``analytics.stats.power`` -> the option the user typed.
_OPTIONS = {
    "base_rate + mde": "--baseline/--mde",
    "base_rate": "--baseline",
    "mde": "--mde",
    "std": "--std",
    "alpha": "--alpha",
    "power": "--power",
    "ratio": "--ratio",
    "control_units": "--units",
    "treatment_units": "--units",
}


class PlanInputError(ValueError):
    """An option that cannot make a plan; the message starts with the option's name."""


@dataclass(frozen=True)
class PlanRequest:
    metric: MetricKind
    baseline: float
    mde: float | None
    relative: bool
    std: float | None
    alpha: float
    power: float
    ratio: float
    units: int | None


def plan_text(request: PlanRequest) -> str:
    """The plan as lines of text; ``PlanInputError`` names a bad option."""
    from analytics.stats import power as power_module

    if request.metric == "mean" and request.std is None:
        raise PlanInputError("--std: a mean metric needs the per-unit standard deviation")
    if request.mde is None and request.units is None:
        raise PlanInputError("--mde or --units: give an effect to detect or units so far")
    absolute = None
    if request.mde is not None:
        absolute = request.mde * request.baseline if request.relative else request.mde
    lines = [
        f"{request.metric} metric, baseline {_value(request, request.baseline)}, "
        f"alpha {request.alpha:g} (two-sided), power {request.power:.0%}, "
        f"{request.ratio:g} treatment units per control unit"
    ]
    try:
        if absolute is not None:
            if request.metric == "conversion":
                n_c, n_t = power_module.sample_size_proportions(
                    request.baseline,
                    absolute,
                    alpha=request.alpha,
                    power=request.power,
                    ratio=request.ratio,
                )
            else:
                n_c, n_t = power_module.sample_size_means(
                    request.std,
                    absolute,
                    alpha=request.alpha,
                    power=request.power,
                    ratio=request.ratio,
                )
            lines.append(
                f"to detect {_effect(request, absolute)}: {int(n_c[0]):,} control units and "
                f"{int(n_t[0]):,} per treatment ({int(n_c[0] + n_t[0]):,} for one treatment)"
            )
            lines.append(
                f"experiment YAML: planned_units: {int(n_c[0] + n_t[0])} (control and one "
                "treatment; add the other treatments' units) tunes its sequential tests"
            )
        if request.units is not None:
            treatment_units = request.units * request.ratio
            if request.metric == "conversion":
                detectable = power_module.detectable_effect_proportions(
                    request.baseline,
                    request.units,
                    treatment_units,
                    alpha=request.alpha,
                    power=request.power,
                )
            else:
                detectable = power_module.detectable_effect_means(
                    request.std,
                    request.units,
                    treatment_units,
                    alpha=request.alpha,
                    power=request.power,
                )
            lines.append(
                f"with {request.units:,} control units so far: detectable effect "
                f"{_effect(request, float(detectable[0]))}"
            )
    except ValueError as error:
        name, _, reason = str(error).partition(": ")
        raise PlanInputError(f"{_OPTIONS.get(name, name)}: {reason}") from None
    return "\n".join(lines)


def _value(request: PlanRequest, value: float) -> str:
    return f"{value:.2%}" if request.metric == "conversion" else f"{value:g}"


def _effect(request: PlanRequest, absolute: float) -> str:
    unit = " pp" if request.metric == "conversion" else ""
    scale = 100 if request.metric == "conversion" else 1
    text = f"{absolute * scale:+.4g}{unit}"
    if request.baseline:
        text += f" ({absolute / request.baseline:+.1%} relative)"
    return text
