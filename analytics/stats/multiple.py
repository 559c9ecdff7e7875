"""Corrections for many comparisons (several treatments and metrics in one experiment).

One experiment's comparisons form one family. ``bonferroni`` and ``holm`` control the
family-wise error rate (the chance of any false positive; Holm rejects everything
Bonferroni does, and more); ``benjamini_hochberg`` controls the false discovery rate
(the expected share of false positives among the discoveries); ``none`` leaves p-values
as they are. Comparisons without a p-value are left out of the family.

``interval_alpha`` gives the level of each comparison's adjusted interval, so that
interval and adjusted p agree: Bonferroni intervals (alpha / m) for ``bonferroni`` and
``holm`` (an interval that excludes 0 implies Holm rejects; Holm has no exact interval
of its own), and Benjamini and Yekutieli's (2005) false-coverage-rate intervals
(alpha R / m, R the number of discoveries, alpha / m when there are none) for
``benjamini_hochberg``: a comparison's interval excludes 0 exactly when BH selects it.

The adjustment is the one of statsmodels' ``multipletests`` (``bonferroni``, ``holm``,
``fdr_bh``; the tests check agreement), computed here for all families in one
vectorised pass: sort by (family, p), scale by rank, then a running max (Holm) or
reversed running min (BH) within each family, exactly: a family's figures never depend
on the others. Calling ``multipletests`` per family is not an option at scale: its Holm branch calls
``gc.collect()`` on every call (statsmodels 0.15; see statsmodels PR #8671), about
0.1 s each in a process of this size.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from analytics.stats.cells import FloatArray

Correction = Literal["holm", "bonferroni", "benjamini_hochberg", "none"]
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
    if correction == "bonferroni":
        result = np.minimum(m * p_sorted, 1.0)
    elif correction == "holm":
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


def interval_alpha(
    adjusted_p_values: npt.ArrayLike | np.ma.MaskedArray,
    correction: Correction,
    alpha: float,
    *,
    families: npt.ArrayLike | None = None,
) -> np.ma.MaskedArray:
    """Per comparison, the alpha of its adjusted (simultaneous) interval.

    ``adjusted_p_values`` are ``adjust_p_values``' answer for the same families; masked
    entries are not in any family and stay masked. m counts a family's p-values.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction: '{correction}' is not one of {list(CORRECTIONS)}")
    values = np.ma.masked_invalid(np.ma.asarray(adjusted_p_values, dtype=np.float64)).ravel()
    missing = np.ma.getmaskarray(values)
    result = np.full(values.size, float(alpha))
    if correction != "none" and not missing.all():
        labels = (
            np.zeros(values.size, dtype=np.int64)
            if families is None
            else np.asarray(families).ravel()
        )
        present = np.flatnonzero(~missing)
        _, family = np.unique(labels[present], return_inverse=True)
        size = np.bincount(family).astype(np.float64)
        level = np.full(size.size, 1.0)
        if correction == "benjamini_hochberg":
            discoveries = np.bincount(
                family, weights=(np.ma.getdata(values)[present] <= alpha).astype(np.float64)
            )
            level = np.maximum(discoveries, 1.0)
        result[present] = alpha * level[family] / size[family]
    shape = np.shape(np.ma.getdata(adjusted_p_values))
    return np.ma.MaskedArray(result.reshape(shape), mask=missing.reshape(shape))
