"""Power and sample size for a two-sided test of treatment vs control, per metric type.

- Means (count, sum, any unit-level mean): a z test on the difference of means with
  per-arm standard deviations; with equal ones this is statsmodels' ``NormalIndPower``
  with effect size d = δ / sd.
- Conversions: the arcsine (Cohen's h) transform, h = 2 asin √p_t - 2 asin √p_c, whose
  variance is 1/n whatever the rate; statsmodels' ``proportion_effectsize`` +
  ``NormalIndPower``.

Sample sizes use n = (z(1 - alpha/2) + z_power)² · (variance per unit) / δ² and ignore the
opposite tail's rejections (at most Φ(-2 z(1 - alpha/2) - z_power), ≈ 1e-6 at alpha 0.05,
power 0.8), so the power achieved is at least the target. ``power_*`` counts both tails.
``ratio`` is treatment units per control unit. Planning inputs are user input: a bad one
raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.cells import FloatArray, broadcast


def _check(alpha: float, power: float | None = None, ratio: float = 1.0) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha: must be between 0 and 1")
    if power is not None and not 0.0 < power < 1.0:
        raise ValueError("power: must be between 0 and 1")
    if not ratio > 0:
        raise ValueError("ratio: treatment units per control unit must be positive")


def _positive(name: str, values: FloatArray) -> None:
    if np.any(~(values > 0) | ~np.isfinite(values)):
        raise ValueError(f"{name}: must be a positive number")


def z_multiplier(alpha: float, power: float) -> float:
    """z(1 - alpha/2) + z_power: how many standard errors a detectable effect spans."""
    _check(alpha, power)
    return float(special.ndtri(1.0 - alpha / 2.0) + special.ndtri(power))


def _two_sided_power(standardised: FloatArray, alpha: float) -> FloatArray:
    z = special.ndtri(1.0 - alpha / 2.0)
    shift = np.abs(standardised)
    return special.ndtr(shift - z) + special.ndtr(-shift - z)


def sample_size_means(
    std: npt.ArrayLike,
    mde: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    treatment_std: npt.ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(control units, treatment units) to detect an absolute difference ``mde``."""
    _check(alpha, power, ratio)
    sd_c, sd_t, delta = broadcast(std, std if treatment_std is None else treatment_std, mde)
    _positive("std", sd_c)
    _positive("treatment_std", sd_t)
    _positive("mde", np.abs(delta))
    control = z_multiplier(alpha, power) ** 2 * (sd_c**2 + sd_t**2 / ratio) / delta**2
    return np.ceil(control), np.ceil(control * ratio)


def power_means(
    std: npt.ArrayLike,
    mde: npt.ArrayLike,
    control_units: npt.ArrayLike,
    treatment_units: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    treatment_std: npt.ArrayLike | None = None,
) -> FloatArray:
    """Probability that the two-sided test rejects when the true difference is ``mde``."""
    _check(alpha)
    sd_c, sd_t, delta, n_c, n_t = broadcast(
        std, std if treatment_std is None else treatment_std, mde, control_units, treatment_units
    )
    _positive("std", sd_c)
    _positive("control_units", n_c)
    _positive("treatment_units", n_t)
    return _two_sided_power(delta / np.sqrt(sd_c**2 / n_c + sd_t**2 / n_t), alpha)


def detectable_effect(
    standard_error: npt.ArrayLike, *, alpha: float = 0.05, power: float = 0.8
) -> FloatArray:
    """The absolute difference detectable with this standard error of the estimate."""
    (se,) = broadcast(standard_error)
    return z_multiplier(alpha, power) * se


def detectable_effect_means(
    std: npt.ArrayLike,
    control_units: npt.ArrayLike,
    treatment_units: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_std: npt.ArrayLike | None = None,
) -> FloatArray:
    """Absolute difference in means detectable with the given units per arm."""
    sd_c, sd_t, n_c, n_t = broadcast(
        std, std if treatment_std is None else treatment_std, control_units, treatment_units
    )
    _positive("std", sd_c)
    _positive("control_units", n_c)
    _positive("treatment_units", n_t)
    return detectable_effect(np.sqrt(sd_c**2 / n_c + sd_t**2 / n_t), alpha=alpha, power=power)


def cohens_h(control_rate: npt.ArrayLike, treatment_rate: npt.ArrayLike) -> FloatArray:
    """2 asin √p_t - 2 asin √p_c (statsmodels ``proportion_effectsize(p_t, p_c)``)."""
    p_c, p_t = broadcast(control_rate, treatment_rate)
    return 2.0 * np.arcsin(np.sqrt(p_t)) - 2.0 * np.arcsin(np.sqrt(p_c))


def _check_rate(name: str, rate: FloatArray) -> None:
    if np.any(~((rate > 0) & (rate < 1))):
        raise ValueError(f"{name}: a conversion rate must be strictly between 0 and 1")


def sample_size_proportions(
    base_rate: npt.ArrayLike,
    mde: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """(control units, treatment units) to detect base_rate -> base_rate + ``mde``."""
    _check(alpha, power, ratio)
    p_c, delta = broadcast(base_rate, mde)
    _check_rate("base_rate", p_c)
    _check_rate("base_rate + mde", p_c + delta)
    _positive("mde", np.abs(delta))
    h = cohens_h(p_c, p_c + delta)
    control = z_multiplier(alpha, power) ** 2 * (1.0 + 1.0 / ratio) / h**2
    return np.ceil(control), np.ceil(control * ratio)


def power_proportions(
    base_rate: npt.ArrayLike,
    mde: npt.ArrayLike,
    control_units: npt.ArrayLike,
    treatment_units: npt.ArrayLike,
    *,
    alpha: float = 0.05,
) -> FloatArray:
    """Probability that the two-sided test rejects when the rate moves by ``mde``."""
    _check(alpha)
    p_c, delta, n_c, n_t = broadcast(base_rate, mde, control_units, treatment_units)
    _check_rate("base_rate", p_c)
    _check_rate("base_rate + mde", p_c + delta)
    _positive("control_units", n_c)
    _positive("treatment_units", n_t)
    return _two_sided_power(cohens_h(p_c, p_c + delta) / np.sqrt(1.0 / n_c + 1.0 / n_t), alpha)


def detectable_effect_proportions(
    base_rate: npt.ArrayLike,
    control_units: npt.ArrayLike,
    treatment_units: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> FloatArray:
    """Smallest absolute rise in the rate detectable with the given units per arm.

    Capped where even a rate of 1 is not detectable: the result is then 1 - base_rate.
    """
    p_c, n_c, n_t = broadcast(base_rate, control_units, treatment_units)
    _check_rate("base_rate", p_c)
    _positive("control_units", n_c)
    _positive("treatment_units", n_t)
    h = z_multiplier(alpha, power) * np.sqrt(1.0 / n_c + 1.0 / n_t)
    angle = np.minimum(np.arcsin(np.sqrt(p_c)) + h / 2.0, np.pi / 2.0)
    return np.sin(angle) ** 2 - p_c
