"""Sequential testing: the mixture likelihood ratio matches a numerical integral, the
tuning follows gbstats (about Howard et al.'s optimum), and in seeded A/A simulations with 20
interim looks the always-valid test keeps the false-positive rate at or below alpha while the
peeked-at fixed-horizon test exceeds it; confidence sequences cover uniformly over looks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import integrate, optimize, special, stats

from analytics.stats import (
    always_valid_test,
    mixing_variance_for,
    running_minimum,
    two_proportion_z_test,
    welch_t_test,
)
from analytics.stats.sequential import mixing_factor

ALPHA = 0.05
EXPERIMENTS, LOOKS, BATCH = 4000, 20, 100  # units per arm added between looks

Sums = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _cumulative_means(rng: np.random.Generator, shift: float = 0.0) -> tuple[Sums, Sums]:
    """Per arm, (n, Σx, Σx²) after each look, shape (experiments, looks)."""

    def arm(mean: float) -> Sums:
        x = rng.normal(mean, 2.0, (EXPERIMENTS, LOOKS, BATCH))
        n = np.broadcast_to(BATCH * np.arange(1, LOOKS + 1), (EXPERIMENTS, LOOKS)).astype(float)
        return n, x.sum(-1).cumsum(1), (x * x).sum(-1).cumsum(1)

    return arm(5.0), arm(5.0 + shift)


def _cumulative_conversions(rng: np.random.Generator) -> tuple[Sums, Sums]:
    def arm() -> Sums:
        converted = rng.binomial(BATCH, 0.1, (EXPERIMENTS, LOOKS)).astype(float).cumsum(1)
        n = np.broadcast_to(BATCH * np.arange(1, LOOKS + 1), (EXPERIMENTS, LOOKS)).astype(float)
        return n, converted, converted

    return arm(), arm()


def _sequential_p(
    estimate: np.ma.MaskedArray,
    standard_error: np.ma.MaskedArray,
    units: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    variance = np.ma.getdata(standard_error) ** 2
    tau2 = mixing_variance_for(variance, units, planned_units=2 * BATCH * LOOKS, alpha=ALPHA)
    result = always_valid_test(np.ma.getdata(estimate), variance, tau2, alpha=ALPHA)
    return np.ma.filled(result.p_value, 1.0)


def test_always_valid_p_value_is_the_inverse_of_the_integrated_likelihood_ratio() -> None:
    cases = [(0.3, 0.01, 0.05), (-1.2, 0.4, 2.0), (0.0, 1.0, 1.0), (0.05, 1e-4, 1e-3)]
    estimate, variance, tau2 = (np.array(column) for column in zip(*cases, strict=True))

    result = always_valid_test(estimate, variance, tau2)

    for i, (theta_hat, v, t2) in enumerate(cases):
        sd = np.sqrt(v)

        def integrand(
            theta: float, theta_hat: float = theta_hat, t2: float = t2, sd: float = sd
        ) -> float:
            return stats.norm.pdf(theta_hat, theta, sd) * stats.norm.pdf(theta, 0, np.sqrt(t2))

        width = 12 * np.sqrt(t2 + v)
        mixture, _ = integrate.quad(integrand, -width, width, epsabs=0, epsrel=1e-12, limit=200)
        ratio = mixture / stats.norm.pdf(theta_hat, 0, sd)
        assert float(result.p_value[i]) == pytest.approx(min(1.0, 1.0 / ratio), rel=1e-8)


def test_confidence_sequence_bounds_are_where_the_test_starts_rejecting() -> None:
    result = always_valid_test([0.4, -2.0], [0.02, 0.5], [0.1, 3.0], alpha=0.1)
    for bound in (result.ci_low, result.ci_high):
        at_bound = always_valid_test(
            [0.4, -2.0], [0.02, 0.5], [0.1, 3.0], alpha=0.1, null_value=np.ma.getdata(bound)
        )
        np.testing.assert_allclose(at_bound.p_value, 0.1, rtol=1e-10)


def test_tuning_makes_the_sequence_tightest_at_the_planned_sample() -> None:
    variance_then = 0.004

    def half_width(tau2: float) -> float:
        result = always_valid_test(0.0, variance_then, tau2, alpha=ALPHA)
        return float(result.ci_high[0])

    best = optimize.minimize_scalar(
        lambda log_tau2: half_width(np.exp(log_tau2)),
        bounds=(-12, 2),
        method="bounded",
        options={"xatol": 1e-10},
    )
    # variance now 0.01 with 400 units -> 0.004 with 1000 planned units.
    tau2 = mixing_variance_for(0.01, 400, planned_units=1000, alpha=ALPHA)
    # gbstats' tuning (Waudby-Smith et al. eq. 161) approximates Howard et al.'s optimum,
    # τ² = V* (-W₋₁(-alpha²/e) - 1): the factors differ, the half-widths barely do.
    howard = -special.lambertw(-(ALPHA**2) / np.e, k=-1).real - 1.0
    assert np.exp(best.x) == pytest.approx(variance_then * howard, rel=1e-4)
    assert mixing_factor(ALPHA) == pytest.approx(7.9362, abs=1e-4)
    assert float(tau2[0]) == pytest.approx(variance_then * mixing_factor(ALPHA), rel=1e-12)
    assert half_width(float(tau2[0])) == pytest.approx(best.fun, rel=1e-4)


def test_p_value_and_sequence_equal_gbstats_sequential_t_test() -> None:
    """gbstats' SequentialTwoSidedTTest (eqs. 9, 155, 161 of Waudby-Smith et al.), in
    closed form: N units, point estimate d with variance V, tuning parameter n*."""
    d, v, n, n_star = 0.12, 0.0025, 1800.0, 5000.0
    rho2 = (-2 * np.log(ALPHA) + np.log(-2 * np.log(ALPHA) + 1)) / n_star
    s2 = v * n
    width = np.sqrt(s2) * np.sqrt(
        2 * (n * rho2 + 1) * np.log(np.sqrt(n * rho2 + 1) / ALPHA) / (n * n * rho2)
    )
    st2 = d * d * n / v
    tr2p1 = n * rho2 + 1
    gb_p = min(1.0, 1.0 / (np.exp(rho2 * st2 / (2 * tr2p1)) / np.sqrt(tr2p1)))

    tau2 = mixing_variance_for(v, n, planned_units=n_star, alpha=ALPHA)
    result = always_valid_test(d, v, tau2, alpha=ALPHA)

    assert float(result.p_value[0]) == pytest.approx(gb_p, rel=1e-10)
    assert float(result.ci_low[0]) == pytest.approx(d - width, rel=1e-10)
    assert float(result.ci_high[0]) == pytest.approx(d + width, rel=1e-10)


@pytest.mark.parametrize("metric", ["mean", "conversion"])
def test_peeking_inflates_fixed_horizon_errors_but_not_sequential_ones(metric: str) -> None:
    rng = np.random.default_rng(2017 if metric == "mean" else 2021)
    if metric == "mean":
        control, treatment = _cumulative_means(rng)
        result = welch_t_test(*control, *treatment, alpha=ALPHA)
    else:
        control, treatment = _cumulative_conversions(rng)
        result = two_proportion_z_test(
            control[0], control[1], treatment[0], treatment[1], alpha=ALPHA
        )
    fixed_p = np.ma.filled(result.p_value, 1.0)
    sequential_p = _sequential_p(result.difference, result.standard_error, 2 * control[0])

    final_look_fpr = (fixed_p[:, -1] < ALPHA).mean()
    peeking_fpr = (fixed_p < ALPHA).any(axis=1).mean()
    sequential_fpr = (running_minimum(sequential_p, axis=1)[:, -1] <= ALPHA).mean()

    assert 0.04 <= final_look_fpr <= 0.06  # one look: nominal
    assert peeking_fpr > 0.15  # 20 looks at a fixed-horizon p: about 0.25 (sd 0.007)
    assert sequential_fpr <= ALPHA


def test_sequential_test_still_finds_a_real_effect_and_covers_it_at_every_look() -> None:
    rng = np.random.default_rng(99)
    shift = 0.3  # about 3.4 standard errors at the last look
    control, treatment = _cumulative_means(rng, shift=shift)
    result = welch_t_test(*control, *treatment, alpha=ALPHA)
    variance = np.ma.getdata(result.standard_error) ** 2
    tau2 = mixing_variance_for(variance, 2 * control[0], planned_units=2 * BATCH * LOOKS)
    sequential = always_valid_test(np.ma.getdata(result.difference), variance, tau2)

    stopped = running_minimum(np.ma.filled(sequential.p_value, 1.0), axis=1)[:, -1] <= ALPHA
    missed = (sequential.ci_low > shift) | (sequential.ci_high < shift)

    assert stopped.mean() > 0.6
    assert np.ma.filled(missed, False).any(axis=1).mean() <= ALPHA
    assert sequential.may_stop[:, -1].mean() > 0.5
