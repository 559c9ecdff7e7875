"""Score intervals for proportions that stay honest when counts are small.

- ``wilson_interval``: Wilson's score interval for one proportion (agrees with
  statsmodels ``proportion_confint(method="wilson")``).
- ``newcombe_interval``: Newcombe's hybrid score interval for a difference of two
  independent proportions, method 10 of Newcombe (1998), built from the two Wilson
  intervals (agrees with ``confint_proportions_2indep(method="newcomb")``).

Unlike the Wald interval, neither collapses to a point at 0 or n successes nor leaves
[0, 1] (or [-1, 1] for a difference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.cells import FloatArray, ReasonArray, broadcast, first_reasons, masked


@dataclass(frozen=True)
class ProportionInterval:
    """Per cell: the estimate and its interval; masked where ``reason`` says why not."""

    estimate: np.ma.MaskedArray
    low: np.ma.MaskedArray
    high: np.ma.MaskedArray
    reason: ReasonArray


def wilson_bounds(
    n: FloatArray, successes: FloatArray, alpha: float | FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(low, high) of the Wilson score interval; NaN where n is 0."""
    z = special.ndtri(1.0 - alpha / 2.0)
    with np.errstate(all="ignore"):
        rate = successes / n
        denominator = 1.0 + z * z / n
        centre = (rate + z * z / (2.0 * n)) / denominator
        half_width = z * np.sqrt(rate * (1.0 - rate) / n + z * z / (4.0 * n * n)) / denominator
    return np.clip(centre - half_width, 0.0, 1.0), np.clip(centre + half_width, 0.0, 1.0)


def newcombe_bounds(
    control_n: FloatArray,
    control_successes: FloatArray,
    treatment_n: FloatArray,
    treatment_successes: FloatArray,
    alpha: float | FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """(low, high) of Newcombe's interval for treatment rate - control rate (``alpha``
    per cell or one for all)."""
    low_c, high_c = wilson_bounds(control_n, control_successes, alpha)
    low_t, high_t = wilson_bounds(treatment_n, treatment_successes, alpha)
    with np.errstate(all="ignore"):
        rate_c, rate_t = control_successes / control_n, treatment_successes / treatment_n
        difference = rate_t - rate_c
        low = difference - np.sqrt((rate_t - low_t) ** 2 + (high_c - rate_c) ** 2)
        high = difference + np.sqrt((high_t - rate_t) ** 2 + (rate_c - low_c) ** 2)
    return low, high


def _count_rules(
    n: FloatArray, successes: FloatArray, arm: str
) -> list[tuple[npt.NDArray[np.bool_], str]]:
    return [
        (
            ~np.isfinite(n) | (n < 0) | (n != np.round(n)),
            f"{arm} units must be a whole number >= 0",
        ),
        (~np.isfinite(successes), f"{arm} conversions must be finite numbers"),
        ((successes < 0) | (successes > n), f"{arm} conversions must be between 0 and its units"),
        (n == 0, f"{arm} arm has no units yet"),
    ]


def wilson_interval(
    n: npt.ArrayLike, successes: npt.ArrayLike, *, alpha: float = 0.05
) -> ProportionInterval:
    """The rate ``successes / n`` with its Wilson score interval at 1 - ``alpha``."""
    n_, x_ = broadcast(n, successes)
    low, high = wilson_bounds(n_, x_, alpha)
    reason = first_reasons(n_.shape, _count_rules(n_, x_, "the"))
    invalid = reason != None  # noqa: E711 (elementwise on an object array)
    with np.errstate(all="ignore"):
        rate = x_ / n_
    return ProportionInterval(
        masked(rate, invalid), masked(low, invalid), masked(high, invalid), reason
    )


def newcombe_interval(
    control_n: npt.ArrayLike,
    control_successes: npt.ArrayLike,
    treatment_n: npt.ArrayLike,
    treatment_successes: npt.ArrayLike,
    *,
    alpha: float = 0.05,
) -> ProportionInterval:
    """Treatment rate - control rate with Newcombe's hybrid score interval."""
    n_c, x_c, n_t, x_t = broadcast(control_n, control_successes, treatment_n, treatment_successes)
    low, high = newcombe_bounds(n_c, x_c, n_t, x_t, alpha)
    reason = first_reasons(
        n_c.shape, [*_count_rules(n_c, x_c, "control"), *_count_rules(n_t, x_t, "treatment")]
    )
    invalid = reason != None  # noqa: E711 (elementwise on an object array)
    with np.errstate(all="ignore"):
        difference = x_t / n_t - x_c / n_c
    return ProportionInterval(
        masked(difference, invalid), masked(low, invalid), masked(high, invalid), reason
    )
