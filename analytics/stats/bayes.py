"""Bayesian summaries: probability that the treatment beats the control, expected loss.

Model (normal approximation, arms independent): the posterior of the difference
Δ = treatment - control is normal.

- ``normal_chance_to_win`` (means, any metric with an estimate and its variance): the
  prior on Δ is N(``prior_mean``, ``prior_variance``); the default ``prior_variance`` of
  infinity is the flat (improper) prior, under which the posterior is N(θ̂, V) and the
  chance to win equals 1 - the one-sided p-value.
- ``beta_chance_to_win`` (conversions): each arm's rate has a Beta(a, b) prior, Beta(1, 1)
  (uniform) by default, so its posterior is Beta(a + x, b + n - x); Δ's posterior is
  approximated by the normal with the same mean and variance.

With Δ ~ N(m, s²): chance to win P(Δ > 0) = Φ(m / s); the expected loss of shipping the
treatment is E[max(0, -Δ)] = s φ(m / s) - m Φ(-m / s) and of keeping the control
E[max(0, Δ)] = s φ(m / s) + m Φ(m / s), both in the metric's units. "Win" means higher;
for metrics where lower is better, the caller swaps the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.cells import broadcast, masked

FLAT_PRIOR = "flat (improper uniform) prior on the difference"


@dataclass(frozen=True)
class BayesianResult:
    """Per cell; masked where the posterior is undefined (no variance, no units)."""

    chance_to_win: np.ma.MaskedArray
    expected_loss_treatment: np.ma.MaskedArray
    expected_loss_control: np.ma.MaskedArray
    posterior_mean: np.ma.MaskedArray
    posterior_sd: np.ma.MaskedArray
    prior: str


def _summarise(mean: np.ndarray, sd: np.ndarray, invalid: np.ndarray, prior: str) -> BayesianResult:
    with np.errstate(all="ignore"):
        z = mean / sd
        density = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        loss_treatment = sd * density - mean * special.ndtr(-z)
        loss_control = sd * density + mean * special.ndtr(z)
        chance = special.ndtr(z)
    invalid = invalid | ~np.isfinite(z)
    return BayesianResult(
        chance_to_win=masked(chance, invalid),
        expected_loss_treatment=masked(np.maximum(loss_treatment, 0.0), invalid),
        expected_loss_control=masked(np.maximum(loss_control, 0.0), invalid),
        posterior_mean=masked(mean, invalid),
        posterior_sd=masked(sd, invalid),
        prior=prior,
    )


def normal_chance_to_win(
    estimate: npt.ArrayLike,
    variance: npt.ArrayLike,
    *,
    prior_mean: float = 0.0,
    prior_variance: float = np.inf,
) -> BayesianResult:
    """Posterior summaries of Δ from its estimate and the estimate's variance."""
    if not prior_variance > 0:
        raise ValueError("prior_variance: must be positive (infinity for a flat prior)")
    theta, v = broadcast(estimate, variance)
    invalid = ~np.isfinite(theta) | ~(v > 0)
    with np.errstate(all="ignore"):
        if np.isinf(prior_variance):
            mean, var = theta, v
            prior = FLAT_PRIOR
        else:
            var = 1.0 / (1.0 / v + 1.0 / prior_variance)
            mean = var * (theta / v + prior_mean / prior_variance)
            prior = (
                f"normal prior on the difference: mean {prior_mean:g}, variance {prior_variance:g}"
            )
    return _summarise(mean, np.sqrt(var), invalid, prior)


def beta_chance_to_win(
    control_n: npt.ArrayLike,
    control_conversions: npt.ArrayLike,
    treatment_n: npt.ArrayLike,
    treatment_conversions: npt.ArrayLike,
    *,
    prior_a: float = 1.0,
    prior_b: float = 1.0,
) -> BayesianResult:
    """Posterior summaries of the difference in conversion rates under Beta priors."""
    if not (prior_a > 0 and prior_b > 0):
        raise ValueError("prior_a, prior_b: Beta prior parameters must be positive")
    n_c, x_c, n_t, x_t = broadcast(
        control_n, control_conversions, treatment_n, treatment_conversions
    )
    invalid = (
        ~np.isfinite(n_c + x_c + n_t + x_t) | (x_c < 0) | (x_t < 0) | (x_c > n_c) | (x_t > n_t)
    )
    with np.errstate(all="ignore"):
        a_c, b_c = prior_a + x_c, prior_b + n_c - x_c
        a_t, b_t = prior_a + x_t, prior_b + n_t - x_t
        mean_c, mean_t = a_c / (a_c + b_c), a_t / (a_t + b_t)
        var_c = a_c * b_c / ((a_c + b_c) ** 2 * (a_c + b_c + 1.0))
        var_t = a_t * b_t / ((a_t + b_t) ** 2 * (a_t + b_t + 1.0))
    prior = f"Beta({prior_a:g}, {prior_b:g}) prior on each arm's conversion rate"
    return _summarise(mean_t - mean_c, np.sqrt(var_c + var_t), invalid, prior)
