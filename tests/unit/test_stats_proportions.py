"""The two-proportion z test agrees with statsmodels (pooled z test, unpooled Wald
interval, Newcombe's interval when counts are small), and degenerate cells get a reason
instead of NaN."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from analytics.stats import two_proportion_z_test

RTOL = 1e-8  # relative agreement with statsmodels on the same counts


def _unit_level_cases() -> list[tuple[int, int, int, int]]:
    """(control n, conversions, treatment n, conversions) drawn from unit-level 0/1 data."""
    rng = np.random.default_rng(99)
    cases = []
    for n_c, n_t, rate_c, rate_t in [
        (1000, 1200, 0.10, 0.13),
        (20000, 19500, 0.031, 0.030),
        (37, 41, 0.5, 0.6),
        (5000, 5000, 0.9, 0.92),
    ]:
        control = rng.random(n_c) < rate_c
        treatment = rng.random(n_t) < rate_t
        cases.append((n_c, int(control.sum()), n_t, int(treatment.sum())))
    cases.append((400, 0, 380, 7))  # no conversion yet in control
    return cases


def test_matches_statsmodels_in_one_vectorised_call() -> None:
    cases = _unit_level_cases()
    n_c, x_c, n_t, x_t = (np.array(column) for column in zip(*cases, strict=True))

    result = two_proportion_z_test(n_c, x_c, n_t, x_t)

    for index, (nc, xc, nt, xt) in enumerate(cases):
        z, p_value = proportions_ztest([xt, xc], [nt, nc])
        small = min(xc, nc - xc, xt, nt - xt) < 10
        method = "newcomb" if small else "wald"
        ci = confint_proportions_2indep(xt, nt, xc, nc, method=method, compare="diff")
        cell = result.cell(index)
        assert cell.interval_method == ("newcombe" if small else "wald")
        assert cell.test == "two_proportion_z"
        assert cell.statistic == pytest.approx(z, rel=RTOL)
        assert cell.p_value == pytest.approx(p_value, rel=RTOL)
        assert cell.difference_ci == pytest.approx(ci, rel=RTOL, abs=1e-15)
        assert cell.control_mean == pytest.approx(xc / nc, rel=RTOL)
        assert cell.treatment_mean == pytest.approx(xt / nt, rel=RTOL)


def test_significance_follows_the_p_value() -> None:
    result = two_proportion_z_test([10000, 10000], [1000, 1000], [10000, 10000], [1150, 1010])
    assert result.significant.tolist() == [True, False]
    assert result.cell(0).relative == pytest.approx(0.15)


def test_degenerate_cells_get_a_reason_and_never_nan() -> None:
    cells = [
        ((0, 0), (100, 3), "control arm has no units yet"),
        ((500, 0), (400, 0), "no conversions in either arm"),
        ((500, 500), (400, 400), "every unit converted in both arms"),
        ((100, 120), (100, 10), "control conversions must be between 0 and its units"),
        ((100, 10), (1, 1), "treatment arm has 1 unit"),
        ((1000, 100), (1000, 130), None),
    ]
    n_c, x_c = np.array([c for c, _, _ in cells], dtype=float).T
    n_t, x_t = np.array([t for _, t, _ in cells], dtype=float).T

    result = two_proportion_z_test(n_c, x_c, n_t, x_t)

    for index, (_, _, expected_reason) in enumerate(cells):
        cell = result.cell(index)
        if expected_reason is None:
            assert cell.reason is None and cell.p_value is not None
        else:
            assert cell.reason is not None and expected_reason in cell.reason
            assert cell.p_value is None and cell.difference is None and cell.relative is None
    for field in ("difference", "difference_ci_high", "p_value", "relative_ci_low"):
        assert np.isfinite(np.ma.getdata(getattr(result, field))).all()


def test_relative_effect_is_undefined_when_the_control_never_converts() -> None:
    cell = two_proportion_z_test(400, 0, 380, 7).cell(0)
    assert cell.p_value is not None and cell.difference == pytest.approx(7 / 380)
    assert cell.relative is None
    assert cell.reason is not None and "relative effect is undefined" in cell.reason
