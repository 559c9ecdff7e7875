"""Pure, vectorised statistics of sufficient statistics (per arm: n, Σx, Σx², ...).

Every function takes numpy arrays (one entry per cell: experiment x metric x treatment)
and never raises or returns NaN for a degenerate cell: the cell's figures are masked and
its ``reason`` says why. (Planning functions in ``power`` take user input and raise
``ValueError`` naming the bad argument.)
"""

from analytics.stats.bayes import BayesianResult, beta_chance_to_win, normal_chance_to_win
from analytics.stats.comparison import Comparison, ComparisonCell
from analytics.stats.cuped import CupedResult, cuped_test
from analytics.stats.intervals import ProportionInterval, newcombe_interval, wilson_interval
from analytics.stats.multiple import CORRECTIONS, Correction, adjust_p_values
from analytics.stats.planned_sequential import planned_sequential_test
from analytics.stats.proportions import two_proportion_z_test
from analytics.stats.ratio import ratio_test
from analytics.stats.sequential import (
    SequentialResult,
    always_valid_test,
    mixing_variance_for,
    running_minimum,
)
from analytics.stats.srm import SampleRatioResult, sample_ratio_mismatch
from analytics.stats.welch import welch_t_test

__all__ = [
    "CORRECTIONS",
    "BayesianResult",
    "Comparison",
    "ComparisonCell",
    "Correction",
    "CupedResult",
    "ProportionInterval",
    "SampleRatioResult",
    "SequentialResult",
    "adjust_p_values",
    "always_valid_test",
    "beta_chance_to_win",
    "cuped_test",
    "mixing_variance_for",
    "newcombe_interval",
    "normal_chance_to_win",
    "planned_sequential_test",
    "ratio_test",
    "running_minimum",
    "sample_ratio_mismatch",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_interval",
]
