"""Pure, vectorised statistics of sufficient statistics (per arm: n, Σx, Σx²).

Every function takes numpy arrays (one entry per cell: experiment x metric x treatment)
and never raises or returns NaN for a degenerate cell: the cell's figures are masked and
its ``reason`` says why.
"""

from analytics.stats.comparison import Comparison, ComparisonCell
from analytics.stats.proportions import two_proportion_z_test
from analytics.stats.srm import SampleRatioResult, sample_ratio_mismatch
from analytics.stats.welch import welch_t_test

__all__ = [
    "Comparison",
    "ComparisonCell",
    "SampleRatioResult",
    "sample_ratio_mismatch",
    "two_proportion_z_test",
    "welch_t_test",
]
