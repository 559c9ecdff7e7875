"""Correcting many experiments in one call: each family's adjusted p-values are exactly
those of correcting it alone, however many families there are and however small the
p-values (adding a per-family offset, as a running max across families might, would
round them away)."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from analytics.stats import adjust_p_values


@pytest.mark.parametrize(
    ("correction", "method"), [("holm", "holm"), ("benjamini_hochberg", "fdr_bh")]
)
def test_tiny_p_values_in_the_last_of_thousands_of_families_are_exact(
    correction: str, method: str
) -> None:
    families = np.repeat(np.arange(3000), 2)
    p_values = np.tile([1e-14, 0.3], 3000)

    adjusted = adjust_p_values(p_values, correction, families=families)  # type: ignore[arg-type]

    alone = multipletests([1e-14, 0.3], method=method)[1]
    assert adjusted[-2:].tolist() == pytest.approx(alone.tolist(), rel=1e-12, abs=0)
    assert adjusted[-2] > 0


@pytest.mark.parametrize("correction", ["holm", "benjamini_hochberg"])
def test_families_of_different_sizes_equal_one_call_per_family_bit_for_bit(
    correction: str,
) -> None:
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 9, 400)
    families = np.repeat(np.arange(sizes.size), sizes)
    p_values = rng.beta(0.3, 1.0, families.size) ** 3
    order = rng.permutation(families.size)  # families need not be contiguous
    families, p_values = families[order], p_values[order]

    together = adjust_p_values(p_values, correction, families=families)  # type: ignore[arg-type]

    for family in np.unique(families):
        members = families == family
        alone = adjust_p_values(p_values[members], correction)  # type: ignore[arg-type]
        assert together[members].tolist() == alone.tolist()
