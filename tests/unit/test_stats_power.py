"""Power and sample size agree with statsmodels' NormalIndPower (and proportion effect
sizes), reproduce the published rule of thumb n = 16 σ²/δ², achieve the power they
promise in simulation, and refuse bad planning input by name."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from analytics.stats import two_proportion_z_test
from analytics.stats.power import (
    detectable_effect_means,
    detectable_effect_proportions,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
)

RTOL = 1e-8


@pytest.mark.parametrize(("alpha", "ratio"), [(0.05, 1.0), (0.01, 2.0), (0.1, 0.5)])
def test_power_of_means_matches_statsmodels(alpha: float, ratio: float) -> None:
    std, mde, n = 3.0, 0.4, 800
    ours = power_means(std, mde, n, n * ratio, alpha=alpha)
    reference = NormalIndPower().power(mde / std, nobs1=n, alpha=alpha, ratio=ratio)
    assert float(ours[0]) == pytest.approx(reference, rel=RTOL)


def test_power_of_proportions_matches_statsmodels() -> None:
    ours = power_proportions(0.10, 0.012, 9000, 9000)
    h = proportion_effectsize(0.112, 0.10)
    assert float(ours[0]) == pytest.approx(
        NormalIndPower().power(h, nobs1=9000, alpha=0.05), rel=RTOL
    )


def test_sample_sizes_match_statsmodels_solve_power() -> None:
    n_c, n_t = sample_size_means(2.0, 0.1, alpha=0.05, power=0.8, ratio=1.5)
    solved = NormalIndPower().solve_power(0.1 / 2.0, alpha=0.05, power=0.8, ratio=1.5)
    # Closed form ignores the opposite tail (about 1e-6 of power): ceil matches.
    assert float(n_c[0]) == np.ceil(solved) and float(n_t[0]) == np.ceil(1.5 * solved)

    n_c, _ = sample_size_proportions(0.05, 0.005, alpha=0.05, power=0.9)
    h = proportion_effectsize(0.055, 0.05)
    assert float(n_c[0]) == np.ceil(NormalIndPower().solve_power(h, alpha=0.05, power=0.9))


def test_published_rule_of_thumb_sixteen_sigma_squared_over_delta_squared() -> None:
    # van Belle G (2008) Statistical Rules of Thumb, 2nd ed., rule 2.3, and Kohavi, Tang,
    # Xu (2020) Trustworthy Online Controlled Experiments, eq. (17.1): at alpha 0.05 and
    # power 0.8, n per arm ≈ 16 σ² / δ² (exactly 2 · (1.96 + 0.8416)² = 15.70).
    std, mde = 10.0, 1.0
    n_c, _ = sample_size_means(std, mde)
    assert float(n_c[0]) == pytest.approx(16 * std**2 / mde**2, rel=0.02)
    assert float(n_c[0]) == np.ceil(2 * (1.959964 + 0.841621) ** 2 * std**2 / mde**2)


def test_the_planned_sample_achieves_the_planned_power_in_simulation() -> None:
    base, mde = 0.2, 0.03
    n_c, n_t = sample_size_proportions(base, mde, power=0.8)
    rng = np.random.default_rng(3)
    experiments = 4000
    x_c = rng.binomial(int(n_c[0]), base, experiments)
    x_t = rng.binomial(int(n_t[0]), base + mde, experiments)
    rejected = two_proportion_z_test(n_c[0], x_c, n_t[0], x_t).significant.mean()
    assert 0.77 <= rejected <= 0.83  # 0.8 ± 4.7 sd


def test_detectable_effects_invert_the_sample_size() -> None:
    n_c, n_t = sample_size_means(4.0, 0.25, ratio=2.0)
    assert float(detectable_effect_means(4.0, n_c, n_t)[0]) == pytest.approx(0.25, rel=1e-3)
    n_c, n_t = sample_size_proportions(0.3, 0.02)
    assert float(detectable_effect_proportions(0.3, n_c, n_t)[0]) == pytest.approx(0.02, rel=1e-3)
    assert float(detectable_effect_proportions(0.99, 5, 5)[0]) == pytest.approx(0.01)  # capped


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: sample_size_means(0.0, 1.0), "std"),
        (lambda: sample_size_means(1.0, 0.0), "mde"),
        (lambda: sample_size_means(1.0, 1.0, alpha=1.5), "alpha"),
        (lambda: sample_size_means(1.0, 1.0, power=1.0), "power"),
        (lambda: sample_size_proportions(0.0, 0.1), "base_rate"),
        (lambda: sample_size_proportions(0.95, 0.1), "base_rate \\+ mde"),
        (lambda: sample_size_means(1.0, 1.0, ratio=0.0), "ratio"),
    ],
)
def test_bad_planning_input_names_the_field(call: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        call()  # type: ignore[operator]
