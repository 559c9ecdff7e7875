"""The sample size a rollout plan needs to catch a regression with its guardrail test.

For a conversion guardrail with control rate p and a relative regression δ, the relative
effect's delta-method variance at n units per arm is c / n (``relative_effect``). With the
always-valid test tuned to ``planned_units = 2n``, the confidence sequence's half-width at
n is k·sqrt(V), k = sqrt((1 + 1/f)(log(1 + f) - 2 log alpha)) with f the mixing factor
(``analytics.stats.sequential``). The regression is caught at n (the last look; earlier
looks only add power) with probability ``power`` when
(k + z_power)·sqrt(c / n) <= δ - tolerance, so

    n = c · ((k + z_power) / (δ - tolerance))².
"""

from __future__ import annotations

import math

from scipy import stats

from analytics.stats.sequential import mixing_factor


def half_width_factor(alpha: float) -> float:
    """k: the sequence's half-width at the planned units, in standard errors."""
    factor = mixing_factor(alpha)
    return math.sqrt((1 + 1 / factor) * (math.log(1 + factor) - 2 * math.log(alpha)))


def units_per_arm(
    control_rate: float,
    regression: float,
    *,
    alpha: float,
    tolerance: float = 0.0,
    power: float = 0.8,
) -> int:
    """Units per arm at which a relative ``regression`` of a conversion rate (either way:
    the rate times 1 + regression) is caught with ``power`` by a test at ``alpha``."""
    if not 0 < control_rate < 1:
        raise ValueError("control_rate: must be between 0 and 1")
    if not abs(regression) > tolerance:
        raise ValueError("regression: must exceed the tolerance")
    treated = control_rate * (1 + regression)
    if not 0 < treated < 1:
        raise ValueError("regression: moves the rate out of (0, 1)")
    scale = (
        treated * (1 - treated) / control_rate**2
        + treated**2 * control_rate * (1 - control_rate) / control_rate**4
    )
    z_power = float(stats.norm.ppf(power))
    margin = abs(regression) - tolerance
    return math.ceil(scale * ((half_width_factor(alpha) + z_power) / margin) ** 2)
