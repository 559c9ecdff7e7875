"""Corrections for many comparisons (several treatments and metrics in one experiment).

One experiment's comparisons form one family. ``holm`` controls the family-wise error
rate (the chance of any false positive); ``benjamini_hochberg`` controls the false
discovery rate (the expected share of false positives among the discoveries); ``none``
leaves p-values as they are. Comparisons without a p-value are left out of the family.

The adjustment is the one of statsmodels' ``multipletests`` (``holm``, ``fdr_bh``; the
tests check agreement), computed here for all families in one vectorised pass: sort by
(family, p), scale by rank, then a running max (Holm) or reversed running min (BH)
within each family, exactly: a family's figures never depend on the others. Calling
``multipletests`` per family is not an option at scale: its Holm branch calls
``gc.collect()`` on every call (statsmodels 0.15; see statsmodels PR #8671), about
0.1 s each in a process of this size.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from analytics.stats.cells import FloatArray

Correction = Literal["holm", "benjamini_hochberg", "none"]
CORRECTIONS: tuple[str, ...] = get_args(Correction)


def adjust_p_values(
    p_values: npt.ArrayLike | np.ma.MaskedArray,
    correction: Correction,
    *,
    families: npt.ArrayLike | None = None,
) -> np.ma.MaskedArray:
    """Adjusted p-values, masked where the input is masked or not finite.

    ``families`` labels each p-value's family (for instance the experiment); each family
    is corrected on its own. Without it, all p-values are one family.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction: '{correction}' is not one of {list(CORRECTIONS)}")
    values = np.ma.masked_invalid(np.ma.asarray(p_values, dtype=np.float64)).ravel()
    missing = np.ma.getmaskarray(values)
    data = np.ma.getdata(values)
    if np.any(~missing & ((data < 0) | (data > 1))):
        raise ValueError("p_values: every p-value must be between 0 and 1")
    adjusted: FloatArray = np.where(missing, 0.0, data)
    if correction != "none":
        labels = (
            np.zeros(values.size, dtype=np.int64)
            if families is None
            else np.asarray(families).ravel()
        )
        if labels.size != values.size:
            raise ValueError("families: needs one label per p-value")
        present = np.flatnonzero(~missing)
        _, family = np.unique(labels[present], return_inverse=True)
        adjusted[present] = _adjust(data[present], family.astype(np.int64), correction)
    shape = np.shape(np.ma.getdata(p_values))
    return np.ma.MaskedArray(adjusted.reshape(shape), mask=missing.reshape(shape))


def _adjust(p: FloatArray, family: npt.NDArray[np.int64], correction: Correction) -> FloatArray:
    """Adjusted p-values of ``p``, each family (0, 1, ... codes) corrected on its own."""
    order = np.lexsort((p, family))
    p_sorted, family_sorted = p[order], family[order]
    size = np.bincount(family_sorted)
    start = np.cumsum(size) - size
    rank = np.arange(p.size) - start[family_sorted]  # 0-based rank within the family
    m = size[family_sorted]
    if correction == "holm":
        scaled = np.minimum((m - rank) * p_sorted, 1.0)
        result = _accumulate_within(scaled, start, size, np.maximum, reverse=False)
    else:
        scaled = np.minimum(p_sorted * m / (rank + 1.0), 1.0)
        result = np.minimum(_accumulate_within(scaled, start, size, np.minimum, reverse=True), 1.0)
    adjusted = np.empty_like(p)
    adjusted[order] = result
    return adjusted


def _accumulate_within(
    values: FloatArray,
    start: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
    ufunc: np.ufunc,
    *,
    reverse: bool,
) -> FloatArray:
    """Running ``ufunc`` (max or min) within each family of ``values`` (sorted by family).

    Families of one size form a 2-D block accumulated along its rows, so the loop runs
    once per distinct family size, and the result is exactly what one family alone
    gives (no arithmetic mixes families).
    """
    result = np.empty_like(values)
    for length in np.unique(size):
        rows = start[size == length][:, np.newaxis] + np.arange(length)
        block = values[rows][:, ::-1] if reverse else values[rows]
        block = ufunc.accumulate(block, axis=1)
        result[rows] = block[:, ::-1] if reverse else block
    return result
