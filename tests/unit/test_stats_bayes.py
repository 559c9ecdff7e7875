"""Bayesian chance to win and expected loss: the closed forms match numerical integrals
of the stated posterior, the Beta-prior conversion version matches the exact Beta
posteriors, a prior shrinks towards its mean, and degenerate cells are masked."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from analytics.stats import beta_chance_to_win, normal_chance_to_win


@pytest.mark.parametrize(("estimate", "variance"), [(0.3, 0.04), (-0.02, 0.0004), (0.0, 1.0)])
def test_normal_summaries_match_integrals_of_the_posterior(
    estimate: float, variance: float
) -> None:
    result = normal_chance_to_win(estimate, variance)
    posterior = stats.norm(estimate, np.sqrt(variance))
    lo, hi = posterior.ppf(1e-14), posterior.ppf(1 - 1e-14)

    loss_treatment, _ = integrate.quad(
        lambda d: max(0.0, -d) * posterior.pdf(d), lo, hi, points=[0]
    )
    loss_control, _ = integrate.quad(lambda d: max(0.0, d) * posterior.pdf(d), lo, hi, points=[0])

    assert float(result.chance_to_win[0]) == pytest.approx(posterior.sf(0.0), rel=1e-8)
    assert float(result.expected_loss_treatment[0]) == pytest.approx(loss_treatment, rel=1e-7)
    assert float(result.expected_loss_control[0]) == pytest.approx(loss_control, rel=1e-7)
    assert result.prior.startswith("flat")


def test_a_normal_prior_shrinks_the_effect_as_the_conjugate_update_says() -> None:
    # Posterior ∝ N(θ̂ | Δ, V) · N(Δ | 0, τ²), integrated numerically.
    estimate, variance, prior_variance = 0.5, 0.09, 0.04
    result = normal_chance_to_win(estimate, variance, prior_variance=prior_variance)

    def unnormalised(delta: float) -> float:
        return float(
            stats.norm.pdf(estimate, delta, np.sqrt(variance))
            * stats.norm.pdf(delta, 0, np.sqrt(prior_variance))
        )

    total, _ = integrate.quad(unnormalised, -5, 5)
    above, _ = integrate.quad(unnormalised, 0, 5)
    mean, _ = integrate.quad(lambda d: d * unnormalised(d), -5, 5)
    assert float(result.chance_to_win[0]) == pytest.approx(above / total, rel=1e-8)
    assert float(result.posterior_mean[0]) == pytest.approx(mean / total, rel=1e-8)
    assert float(result.posterior_mean[0]) < estimate
    assert "variance 0.04" in result.prior


@pytest.mark.parametrize(
    ("control", "treatment"), [((1000, 100), (1000, 120)), ((5000, 400), (5100, 390))]
)
def test_beta_chance_to_win_matches_the_exact_beta_posteriors(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    (n_c, x_c), (n_t, x_t) = control, treatment
    result = beta_chance_to_win(n_c, x_c, n_t, x_t)
    post_c, post_t = stats.beta(1 + x_c, 1 + n_c - x_c), stats.beta(1 + x_t, 1 + n_t - x_t)
    # P(p_t > p_c) = ∫ f_t(p) F_c(p) dp, exactly, over the posterior of p_t.
    exact, _ = integrate.quad(
        lambda p: post_t.pdf(p) * post_c.cdf(p), post_t.ppf(1e-12), post_t.ppf(1 - 1e-12)
    )
    # The normal approximation of the difference: within 0.005 at these counts.
    assert float(result.chance_to_win[0]) == pytest.approx(exact, abs=0.005)
    rng = np.random.default_rng(0)
    draws = post_t.rvs(2_000_000, random_state=rng) - post_c.rvs(2_000_000, random_state=rng)
    assert float(result.expected_loss_treatment[0]) == pytest.approx(
        np.maximum(-draws, 0).mean(), rel=0.03, abs=1e-5
    )
    assert "Beta(1, 1)" in result.prior


def test_degenerate_cells_are_masked_not_nan() -> None:
    result = normal_chance_to_win([0.1, 0.1, np.nan], [0.0, 0.01, 0.01])
    assert np.ma.getmaskarray(result.chance_to_win).tolist() == [True, False, True]
    assert np.isfinite(np.ma.getdata(result.expected_loss_treatment)).all()
    conversions = beta_chance_to_win([0, 10], [0, 12], [10, 10], [1, 1])
    assert np.ma.getmaskarray(conversions.chance_to_win).tolist() == [False, True]
    with pytest.raises(ValueError, match="prior_variance"):
        normal_chance_to_win(0.1, 0.01, prior_variance=0.0)
