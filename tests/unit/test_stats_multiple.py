"""Holm and Benjamini-Hochberg corrections: statsmodels' numbers, one family per
experiment, cells without a p-value left out, and bad input refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from analytics.stats import adjust_p_values

P_VALUES = np.array([0.001, 0.04, 0.03, 0.2, 0.012, 0.5])


@pytest.mark.parametrize(
    ("correction", "method"), [("holm", "holm"), ("benjamini_hochberg", "fdr_bh")]
)
def test_matches_multipletests(correction: str, method: str) -> None:
    adjusted = adjust_p_values(P_VALUES, correction)  # type: ignore[arg-type]
    np.testing.assert_allclose(adjusted, multipletests(P_VALUES, method=method)[1], rtol=1e-12)


def test_holm_is_stricter_than_bh_which_is_stricter_than_none() -> None:
    holm = adjust_p_values(P_VALUES, "holm")
    bh = adjust_p_values(P_VALUES, "benjamini_hochberg")
    assert np.all(holm >= bh) and np.all(bh >= P_VALUES)
    # By hand, sorted 0.001, 0.012, 0.03, 0.04, ...: Holm keeps 0.001·6 only (0.012·5 =
    # 0.06); BH keeps the two smallest (0.012·6/2 = 0.036, 0.03·6/3 = 0.06).
    assert (P_VALUES < 0.05).sum() == 4
    assert (holm < 0.05).sum() == 1 and (bh < 0.05).sum() == 2
    np.testing.assert_array_equal(adjust_p_values(P_VALUES, "none"), P_VALUES)


def test_each_experiment_is_its_own_family_and_missing_p_values_are_skipped() -> None:
    p_values = np.ma.MaskedArray(
        [0.01, 0.02, 0.0, 0.04, 0.01], mask=[False, False, True, False, False]
    )
    families = ["a", "a", "a", "b", "b"]

    adjusted = adjust_p_values(p_values, "holm", families=families)

    np.testing.assert_allclose(adjusted[:2], multipletests([0.01, 0.02], method="holm")[1])
    np.testing.assert_allclose(adjusted[3:], multipletests([0.04, 0.01], method="holm")[1])
    assert np.ma.getmaskarray(adjusted).tolist() == [False, False, True, False, False]


def test_bad_input_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="correction"):
        adjust_p_values(P_VALUES, "bonferonni")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p_values"):
        adjust_p_values([0.5, 1.5], "holm")
    with pytest.raises(ValueError, match="families"):
        adjust_p_values([0.5, 0.1], "holm", families=["a"])


@pytest.mark.parametrize("correction", ["holm", "benjamini_hochberg"])
def test_many_families_in_one_call_match_multipletests_per_family(correction: str) -> None:
    rng = np.random.default_rng(6)
    families = rng.integers(0, 20, 200)
    p_values = np.round(rng.beta(0.5, 2.0, 200), 3)  # rounding makes ties
    adjusted = adjust_p_values(p_values, correction, families=families)  # type: ignore[arg-type]
    method = "holm" if correction == "holm" else "fdr_bh"
    for family in np.unique(families):
        members = families == family
        expected = multipletests(p_values[members], method=method)[1]
        np.testing.assert_allclose(adjusted[members], expected, rtol=1e-10, atol=1e-15)
