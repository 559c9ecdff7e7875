"""Sample-ratio mismatch: are units split across variants as the weights say?

A chi-square goodness-of-fit test of the observed units per variant against the
designed shares (agrees with ``scipy.stats.chisquare``). A mismatch (p below
``threshold``, 0.001 by default) means assignment or logging is broken, so the
experiment's effects cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analytics.stats.cells import BoolArray, FloatArray, ReasonArray, first_reasons, masked

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SampleRatioResult:
    """Per experiment (leading axes); the last axis of the inputs is the variant."""

    statistic: np.ma.MaskedArray
    p_value: np.ma.MaskedArray
    expected_share: FloatArray
    detected: BoolArray
    threshold: float
    reason: ReasonArray


def sample_ratio_mismatch(
    observed_units: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SampleRatioResult:
    """Chi-square test of ``observed_units[..., k]`` against ``weights[..., k]``.

    Weights are relative (percent or any positive scale). Raises ``ValueError`` only
    for arrays that cannot describe an experiment (fewer than two variants, a weight
    that is not positive); an experiment without units gets a ``reason`` instead.
    """
    observed = np.atleast_1d(np.asarray(observed_units, dtype=np.float64))
    weight = np.broadcast_to(np.asarray(weights, dtype=np.float64), observed.shape)
    if observed.shape[-1] < 2:
        raise ValueError("observed_units: the last axis must hold at least two variants")
    if not np.all(np.isfinite(weight) & (weight > 0)):
        raise ValueError("weights: every variant weight must be a positive number")
    share = weight / weight.sum(axis=-1, keepdims=True)
    total = observed.sum(axis=-1)
    with np.errstate(all="ignore"):
        expected = share * total[..., np.newaxis]
        statistic = np.sum((observed - expected) ** 2 / expected, axis=-1)
        p_value = special.chdtrc(observed.shape[-1] - 1, statistic)
    reason = first_reasons(
        total.shape,
        [
            (
                np.any(~np.isfinite(observed) | (observed < 0), axis=-1),
                "observed units must be numbers >= 0",
            ),
            (total == 0, "no units yet"),
        ],
    )
    invalid = reason != None  # noqa: E711 (elementwise on an object array)
    p_masked = masked(p_value, invalid)
    return SampleRatioResult(
        statistic=masked(statistic, invalid),
        p_value=p_masked,
        expected_share=share,
        detected=np.asarray(np.ma.filled(p_masked < threshold, False), dtype=bool),
        threshold=threshold,
        reason=reason,
    )
