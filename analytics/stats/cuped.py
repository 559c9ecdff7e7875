"""CUPED: variance reduction with a pre-exposure covariate (Deng, Xu, Kohavi, Walker 2013).

Each unit's metric y is replaced by y - θ (x - x̄), x the same unit's value before it was
exposed (so the treatment cannot have moved it) and x̄ the mean of x over both arms. The
difference of the adjusted means estimates the same effect with variance shrunk by about
rho², rho the correlation of x and y.

θ is the within-arm pooled regression slope Σ_arms S_xy / Σ_arms S_xx (S: centred sums),
which makes the effect estimate exactly the treatment coefficient of the regression
y ~ treatment + x (ANCOVA). The adjusted values are then compared with Welch's t test,
treating θ as known (its estimation error is O(1/n)). Per arm the inputs are
``CupedArms``: the metric's sums (``post``: y), the covariate's (``pre``: x) and Σxy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.arms import CupedArms
from analytics.stats.cells import FloatArray, broadcast, masked
from analytics.stats.comparison import Comparison
from analytics.stats.welch import welch_t_test


@dataclass(frozen=True)
class CupedResult:
    """The adjusted comparison, θ, and the share of the difference's variance removed."""

    comparison: Comparison
    theta: FloatArray
    variance_reduction: np.ma.MaskedArray


def _centred(
    n: FloatArray, total_a: FloatArray, total_b: FloatArray, cross: FloatArray
) -> FloatArray:
    with np.errstate(all="ignore"):
        return np.where(n > 0, cross - total_a * total_b / n, 0.0)


def _columns(arm: CupedArms) -> tuple[npt.ArrayLike, ...]:
    """(n, Σy, Σy², Σx, Σx², Σxy) of ``arm``, y the metric and x its covariate."""
    if not isinstance(arm, CupedArms):
        raise TypeError(f"a CUPED arm must be CupedArms, not {type(arm).__name__}")
    y, x = arm.post, arm.pre
    return y.n, y.sum, y.sum_squares, x.sum, x.sum_squares, arm.cross


def cuped_test(control: CupedArms, treatment: CupedArms, *, alpha: float = 0.05) -> CupedResult:
    """CUPED-adjusted treatment minus control (the covariate's units are the arm's)."""
    arrays = broadcast(*_columns(control), *_columns(treatment))
    n_c, sy_c, syy_c, sx_c, sxx_c, sxy_c = arrays[:6]
    n_t, sy_t, syy_t, sx_t, sxx_t, sxy_t = arrays[6:]
    s_xx = _centred(n_c, sx_c, sx_c, sxx_c) + _centred(n_t, sx_t, sx_t, sxx_t)
    s_xy = _centred(n_c, sx_c, sy_c, sxy_c) + _centred(n_t, sx_t, sy_t, sxy_t)
    with np.errstate(all="ignore"):
        theta = np.where(s_xx > 0, s_xy / s_xx, 0.0)
        theta = np.where(np.isfinite(theta), theta, 0.0)
        x_bar = (sx_c + sx_t) / (n_c + n_t)
        x_bar = np.where(np.isfinite(x_bar), x_bar, 0.0)

    def adjusted(
        n: FloatArray,
        sy: FloatArray,
        syy: FloatArray,
        sx: FloatArray,
        sxx: FloatArray,
        sxy: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        # z = y - θ (x - x̄): Σz and Σz² from the sums, no unit-level data needed.
        sum_z = sy - theta * (sx - n * x_bar)
        sum_zz = (
            syy - 2 * theta * (sxy - x_bar * sy) + theta**2 * (sxx - 2 * x_bar * sx + n * x_bar**2)
        )
        return n, sum_z, sum_zz

    comparison = welch_t_test(
        *adjusted(n_c, sy_c, syy_c, sx_c, sxx_c, sxy_c),
        *adjusted(n_t, sy_t, syy_t, sx_t, sxx_t, sxy_t),
        alpha=alpha,
    )
    unadjusted = welch_t_test(n_c, sy_c, syy_c, n_t, sy_t, syy_t, alpha=alpha)
    with np.errstate(all="ignore"):
        reduction = 1.0 - (comparison.standard_error / unadjusted.standard_error) ** 2
    invalid = np.ma.getmaskarray(comparison.standard_error) | np.ma.getmaskarray(
        unadjusted.standard_error
    )
    return CupedResult(
        comparison=comparison,
        theta=theta,
        variance_reduction=masked(np.ma.getdata(reduction), invalid),
    )
