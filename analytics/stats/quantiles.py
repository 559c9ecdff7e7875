"""Student's t quantile for many cells, quick where the degrees of freedom are large.

``scipy.special.stdtrit`` inverts the t distribution numerically, ~0.3 µs a cell, and a
scorecard needs it three times per cell (the interval, the relative interval, the
corrected interval). At dof >= ``EXPANSION_DOF`` the Cornish-Fisher expansion in 1/dof
(Abramowitz and Stegun 26.7.5, terms to 1/dof⁴) equals it to a relative 1e-11 for
every probability from 0.5 to 1 - 1e-9 (tested against ``stdtrit``), at the cost of one
``ndtri``; below that, ``stdtrit`` itself.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.cells import FloatArray, broadcast

EXPANSION_DOF = 1000.0


def t_quantile(dof: npt.ArrayLike, probability: npt.ArrayLike) -> FloatArray:
    """The ``probability`` quantile of Student's t with ``dof`` degrees of freedom."""
    nu, p = broadcast(dof, probability)
    large = nu >= EXPANSION_DOF
    if not large.any():
        return np.asarray(special.stdtrit(nu, p), dtype=np.float64)
    z = special.ndtri(p)
    z2 = z * z
    with np.errstate(all="ignore"):
        g1 = (z2 + 1) * z / 4
        g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
        g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
        g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
        quantile = z + (g1 + (g2 + (g3 + g4 / nu) / nu) / nu) / nu
    small = ~large
    if small.any():
        quantile[small] = special.stdtrit(nu[small], p[small])
    return quantile
