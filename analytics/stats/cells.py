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

#: Stable codes for why a cell's figures are missing (``schemas.results.ReasonCode``);
#: each rule's message (which may name the arm) maps to one of them.
REASON_CODES: dict[str, str] = {}


def rule(mask: BoolArray, message: str, code: str) -> tuple[BoolArray, str]:
    """A reason rule: where ``mask`` holds, the cell gets ``message`` (and its ``code``)."""
    REASON_CODES[message] = code
    return mask, message


def reason_codes(reasons: ReasonArray) -> ReasonArray:
    """The code of each cell's reason message (None where there is none)."""
    codes = np.full(reasons.shape, None, dtype=object)
    present = reasons != None  # noqa: E711 (elementwise on an object array)
    if present.any():
        messages = reasons[present].tolist()
        codes[present] = [REASON_CODES.get(message, "not_computable") for message in messages]
    return codes


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
            rule(
                ~np.isfinite(n) | (n < 0) | (n != np.round(n)),
                f"{arm} units must be a whole number >= 0",
                "invalid_units",
            )
        )
    for arm, n in (("control", control_n), ("treatment", treatment_n)):
        rules.append(rule(n == 0, f"{arm} arm has no units yet", "no_units"))
    for arm, n in (("control", control_n), ("treatment", treatment_n)):
        rules.append(rule(n == 1, f"{arm} arm has 1 unit; at least 2 are needed", "too_few_units"))
    return rules
