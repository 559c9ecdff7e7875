"""The quick t quantile equals scipy's stdtrit: exactly below the expansion's threshold,
to a relative 1e-11 above it, over probabilities from the median to 1 - 1e-9."""

from __future__ import annotations

import numpy as np
from scipy import special

from analytics.stats.quantiles import EXPANSION_DOF, t_quantile


def test_t_quantile_equals_stdtrit() -> None:
    dof = np.array([1.0, 2.5, 5.3, 30.0, 999.0, EXPANSION_DOF, 1500.0, 1e4, 1e6, np.inf])
    probability = np.array([0.5, 0.6, 0.9, 0.975, 0.995, 0.9995, 1 - 1e-5, 1 - 1e-7, 1 - 1e-9])
    nu, p = np.meshgrid(dof, probability)
    ours, scipy_ = t_quantile(nu, p), special.stdtrit(nu, p)
    np.testing.assert_allclose(ours, scipy_, rtol=1e-11, atol=1e-300)
    below = nu < EXPANSION_DOF
    np.testing.assert_array_equal(ours[below], scipy_[below])
    # The lower tail by symmetry, and per-cell probabilities broadcast.
    np.testing.assert_allclose(
        t_quantile(2000.0, 0.025), special.stdtrit(2000.0, 0.025), rtol=1e-11
    )
