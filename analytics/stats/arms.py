"""Named sufficient statistics of one arm, for many cells at once (arrays, one per cell).

In the style of gbstats' ``SampleMeanStatistic`` / ``ProportionStatistic`` /
``RatioStatistic`` / ``RegressionAdjustedStatistic``, but each field is an array over
cells, so one call compares every cell. A test reads its inputs by name: a ratio's
numerator is ``arm.numerator.sum``, never "column 1", so swapping two sums cannot pass
unnoticed as a tuple of the right length would.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy.typing as npt


class ProportionArms(NamedTuple):
    """A conversion metric: units and units that converted."""

    n: npt.ArrayLike
    sum: npt.ArrayLike


class MeanArms(NamedTuple):
    """A per-unit value: units, Σx and Σx²."""

    n: npt.ArrayLike
    sum: npt.ArrayLike
    sum_squares: npt.ArrayLike


class RatioArms(NamedTuple):
    """A ratio of two per-unit values (Σx / Σy): each as ``MeanArms`` (same units), and
    Σxy, the sum over units of numerator times denominator."""

    numerator: MeanArms
    denominator: MeanArms
    cross: npt.ArrayLike


class CupedArms(NamedTuple):
    """A per-unit value after exposure (``post``) with the same unit's value before it
    (``pre``, the covariate), each as ``MeanArms`` (same units), and Σ post·pre."""

    post: MeanArms
    pre: MeanArms
    cross: npt.ArrayLike
