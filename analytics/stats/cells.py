"""Array plumbing shared by the statistical tests: input coercion, per-cell reasons, masks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ReasonArray = npt.NDArray[np.object_]

#: Σx² - (Σx)²/n below this share of Σx² is rounding, not spread: the variance is 0.
ZERO_VARIANCE_TOLERANCE = 1e-9


def broadcast(*arrays: npt.ArrayLike) -> list[FloatArray]:
    """The inputs as float64 arrays of one common shape (at least one dimension)."""
    floats = [np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in arrays]
    return [np.array(a) for a in np.broadcast_arrays(*floats)]


def first_reasons(shape: tuple[int, ...], rules: Sequence[tuple[BoolArray, str]]) -> ReasonArray:
    """Per cell, the message of the first rule whose mask is true there, else None."""
    reasons = np.full(shape, None, dtype=object)
    unset = np.ones(shape, dtype=bool)
    for mask, message in rules:
        hit = np.broadcast_to(mask, shape) & unset
        reasons[hit] = message
        unset &= ~hit
    return reasons


def masked(values: FloatArray, invalid: BoolArray) -> np.ma.MaskedArray:
    """``values`` with invalid or non-finite cells masked; masked data is 0, never NaN."""
    mask = np.asarray(invalid | ~np.isfinite(values))
    return np.ma.MaskedArray(np.where(mask, 0.0, values), mask=mask)


def unit_count_rules(control_n: FloatArray, treatment_n: FloatArray) -> list[tuple[BoolArray, str]]:
    """Reasons a comparison cannot use the arms' unit counts, most basic first."""
    rules: list[tuple[BoolArray, str]] = []
    for arm, n in (("control", control_n), ("treatment", treatment_n)):
        rules.append(
            (
                ~np.isfinite(n) | (n < 0) | (n != np.round(n)),
                f"{arm} units must be a whole number >= 0",
            )
        )
    for arm, n in (("control", control_n), ("treatment", treatment_n)):
        rules.append((n == 0, f"{arm} arm has no units yet"))
    for arm, n in (("control", control_n), ("treatment", treatment_n)):
        rules.append((n == 1, f"{arm} arm has 1 unit; at least 2 are needed"))
    return rules
