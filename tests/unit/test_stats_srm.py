"""Sample-ratio mismatch: the chi-square test agrees with scipy, flags real mismatches,
rarely flags correct splits, and explains experiments it cannot test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analytics.stats import sample_ratio_mismatch

RTOL = 1e-10


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ([5030, 4970], [50, 50]),
        ([2100, 990, 1010], [50, 25, 25]),
        ([90, 10], [90, 10]),
        ([12, 15, 11, 20], [1, 1, 1, 1]),
    ],
)
def test_matches_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    expected = np.array(weights) / sum(weights) * sum(observed)
    reference = scipy_stats.chisquare(observed, expected)

    result = sample_ratio_mismatch(observed, weights)

    assert float(result.statistic) == pytest.approx(reference.statistic, rel=RTOL)
    assert float(result.p_value) == pytest.approx(reference.pvalue, rel=RTOL)
    assert result.expected_share == pytest.approx(np.array(weights) / sum(weights))


def test_vectorised_over_experiments_flags_only_the_broken_split() -> None:
    observed = np.array([[5000, 5000], [5000, 5400], [5040, 4960]])
    result = sample_ratio_mismatch(observed, [50, 50])
    assert result.detected.tolist() == [False, True, False]
    for row, p_value in zip(observed, result.p_value, strict=True):
        assert float(p_value) == pytest.approx(scipy_stats.chisquare(row).pvalue, rel=RTOL)


def test_correct_splits_are_flagged_about_once_in_a_thousand() -> None:
    rng = np.random.default_rng(11)
    observed = rng.multinomial(10_000, [0.5, 0.3, 0.2], size=20_000)
    detected = sample_ratio_mismatch(observed, [50, 30, 20]).detected
    assert detected.mean() <= 0.003  # 0.001 expected; 0.003 is over 6 sd away


def test_an_experiment_without_units_is_not_flagged_and_says_why() -> None:
    result = sample_ratio_mismatch([[0, 0], [10, 12]], [50, 50])
    assert result.detected.tolist() == [False, False]
    assert result.reason.tolist() == ["no units yet", None]
    assert np.isfinite(np.ma.getdata(result.p_value)).all()


def test_weights_that_cannot_describe_an_experiment_are_refused() -> None:
    with pytest.raises(ValueError, match="weights"):
        sample_ratio_mismatch([10, 10], [50, 0])
    with pytest.raises(ValueError, match="two variants"):
        sample_ratio_mismatch([10], [100])
