"""Shadow-test statistics: mismatch, noise floor, beyond-noise, latency ratios, the gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from analytics.shadow import (
    gate_from_results,
    latency_ratios,
    promotion_gate,
    read_observations,
    shadow_gate,
    shadow_results,
)
from analytics.store import AnalyticsStore
from schemas.shadow import SHADOW_EVENT, ShadowObservation


def observations(
    seed: int, runs: int, candidate_rate: float, noise_rate: float, slowdown: float = 1.0
) -> list[ShadowObservation]:
    """``runs`` candidate and ``runs`` secondary comparisons with the given mismatch rates;
    the candidate's time is the primary's times ``slowdown``, the secondary's the same."""
    rng = np.random.default_rng(seed)
    made = []
    for run, rate in (("candidate", candidate_rate), ("secondary", noise_rate)):
        mismatches = rng.random(runs) < rate
        primary = rng.lognormal(1.0, 0.5, runs)
        other = primary * (slowdown if run == "candidate" else 1.0) * rng.lognormal(0, 0.05, runs)
        made += [
            ShadowObservation(
                shadow="pricing", run=run, match=not bool(m), primary_ms=p, other_ms=o
            )
            for m, p, o in zip(mismatches, primary, other, strict=True)
        ]
    return made


def test_mismatch_beyond_a_noise_floor_of_0_2_percent_contains_0_3_percent() -> None:
    """The acceptance case, unit form: a candidate differing on 0.5% of runs (noise
    included), the primary disagreeing with itself on 0.2%."""
    results = shadow_results("acme", "pricing", observations(2024, 20_000, 0.005, 0.002))
    beyond = results.beyond_noise
    assert beyond.low is not None and beyond.high is not None
    assert beyond.low < 0.003 < beyond.high
    assert beyond.low > 0  # the candidate really differs beyond the noise
    assert results.mismatch.n == results.noise.n == 20_000


def test_rates_and_intervals_agree_with_statsmodels() -> None:
    made = observations(7, 3000, 0.02, 0.005)
    results = shadow_results("acme", "pricing", made, confidence=0.9)
    mismatch, noise = results.mismatch, results.noise
    low, high = proportion_confint(mismatch.count, mismatch.n, alpha=0.1, method="wilson")
    assert (mismatch.low, mismatch.high) == pytest.approx((low, high), rel=1e-12)
    low, high = confint_proportions_2indep(
        mismatch.count,
        mismatch.n,
        noise.count,
        noise.n,
        method="newcomb",
        compare="diff",
        alpha=0.1,
    )
    assert (results.beyond_noise.low, results.beyond_noise.high) == pytest.approx(
        (low, high), rel=1e-9
    )
    assert results.beyond_noise.estimate == pytest.approx(
        mismatch.count / mismatch.n - noise.count / noise.n
    )


def test_newcombe_reproduces_the_published_example() -> None:
    """Newcombe (1998), table II, example (a): 56/70 vs 48/80 gives 0.0524 to 0.3339."""
    gate = promotion_gate("x", 56, 70, 48, 80, max_beyond_noise=0.5, confidence=0.975)
    assert gate.upper == pytest.approx(0.3339, abs=5e-5)


def test_errors_timeouts_and_undecided_runs_are_counted_apart() -> None:
    made = [
        ShadowObservation(shadow="s", run="candidate", match=True, primary_ms=1, other_ms=1),
        ShadowObservation(
            shadow="s",
            run="candidate",
            match=False,
            primary_ms=1,
            other_ms=2,
            other_error="ValueError",
        ),
        ShadowObservation(shadow="s", run="candidate", match=None, primary_ms=1, timed_out=True),
        ShadowObservation(
            shadow="s",
            run="secondary",
            match=True,
            primary_ms=1,
            other_ms=1,
            primary_error="KeyError",
            other_error="KeyError",
        ),
    ]
    results = shadow_results("acme", "s", made)
    assert (results.mismatch.count, results.mismatch.n) == (1, 2)
    assert (results.candidate_errors.count, results.candidate_errors.n) == (1, 2)
    assert (results.candidate_timeouts.count, results.candidate_timeouts.n) == (1, 3)
    assert (results.primary_errors.count, results.primary_errors.n) == (1, 4)
    assert results.latency[0].reason is not None  # 1 clean pair: no median interval
    assert results.beyond_noise.estimate == pytest.approx(0.5)


def test_latency_ratio_finds_a_20_percent_slower_candidate_and_is_seeded() -> None:
    results = shadow_results("acme", "pricing", observations(3, 2000, 0.0, 0.0, slowdown=1.2))
    median, p99 = results.latency
    assert (median.quantile, p99.quantile) == (0.5, 0.99)
    for row in (median, p99):
        assert row.low is not None and row.high is not None
        assert row.low < 1.2 < row.high
        assert row.low > 1.1
    # the secondary runs as fast as the primary: its ratio's interval holds 1
    noise_median = results.noise_latency[0]
    assert noise_median.low is not None and noise_median.high is not None
    assert noise_median.low < 1.0 < noise_median.high
    again = shadow_results("acme", "pricing", observations(3, 2000, 0.0, 0.0, slowdown=1.2))
    assert again.latency == results.latency


def test_p99_needs_a_thousand_pairs() -> None:
    rng = np.random.default_rng(1)
    primary = rng.lognormal(size=999)
    median, p99 = latency_ratios(primary, primary * 1.1, alpha=0.05)
    assert median.ratio == pytest.approx(1.1)
    assert p99.ratio is None and "1000 pairs" in (p99.reason or "")


def test_bootstrap_intervals_cover_the_true_ratio_about_95_percent_of_the_time() -> None:
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        primary = rng.exponential(10.0, 400)
        other = rng.exponential(13.0, 400)  # true median ratio 1.3
        [median, _] = latency_ratios(primary, other, alpha=0.05, seed=seed)
        assert median.low is not None and median.high is not None
        covered += median.low < 1.3 < median.high
    assert covered >= 34  # 95% of 40 is 38; P(at most 33 | 95%) is about 1.4%


def test_the_gate_allows_a_candidate_only_when_the_upper_bound_is_below_the_threshold() -> None:
    equal = shadow_results("acme", "pricing", observations(11, 10_000, 0.002, 0.002)[::10])
    allowed = gate_from_results(equal, max_beyond_noise=0.02)
    assert allowed.allowed and allowed.upper is not None and allowed.upper < 0.02
    refused = promotion_gate("pricing", 100, 20_000, 40, 20_000, max_beyond_noise=0.002)
    assert not refused.allowed and "not below" in refused.reason
    empty = promotion_gate("pricing", 0, 100, 0, 0, max_beyond_noise=0.01)
    assert not empty.allowed and "secondary" in empty.reason
    with pytest.raises(ValueError):
        promotion_gate("pricing", 0, 100, 0, 100, max_beyond_noise=0.01, confidence=1.5)


def test_observations_are_read_per_tenant_and_name_and_malformed_ones_counted() -> None:
    store = AnalyticsStore(":memory:")
    good = {"shadow": "pricing", "run": "candidate", "match": False, "primary_ms": 1.5}
    rows = [
        ("acme", SHADOW_EVENT, good),
        ("acme", SHADOW_EVENT, {**good, "match": True}),
        ("acme", SHADOW_EVENT, {**good, "primary_ms": -1}),  # malformed
        ("acme", SHADOW_EVENT, {**good, "shadow": "search"}),  # another test
        ("globex", SHADOW_EVENT, good),  # another tenant
        ("acme", "purchase", good),  # not a shadow event
    ]
    with store.cursor() as cursor:
        for index, (tenant, event, properties) in enumerate(rows):
            cursor.execute(
                "INSERT INTO outcomes VALUES (uuid(), ?, 'shadow:pricing:0', now(), NULL, 1, ?,"
                " 0, ?, 0, ?)",
                [tenant, event, json.dumps(properties), index],
            )
        observations, malformed = read_observations(cursor, "acme", "pricing")
        gate = shadow_gate(cursor, "acme", "pricing", max_beyond_noise=0.5)
    assert sorted(o.match for o in observations) == [False, True]
    assert malformed == 1
    assert (gate.candidate_runs, gate.secondary_runs, gate.allowed) == (2, 0, False)
