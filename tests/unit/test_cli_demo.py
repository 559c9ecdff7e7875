"""The demo's design: its effect is found at the default size; it waits for every offset.

The simulation is run here without Kafka and judged by statsmodels and scipy, so the
claim the demo makes (p < 0.01, no sample-ratio mismatch at 20,000 users) is checked
independently of the results service.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare
from statsmodels.stats.proportion import proportions_ztest

from liftstream.assignment import assign
from liftstream_cli.control import load_experiment_file
from liftstream_cli.demo import (
    DEMO_EXPERIMENT_FILE,
    CatchUpTarget,
    behind,
    demo_unit_id,
    simulated_behaviour,
)
from liftstream_cli.main import DEFAULT_DEMO_UNITS
from schemas.results import LoadProgress

SRM_ALARM = 0.001


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_default_demo_detects_its_conversion_effect_without_srm(seed: int) -> None:
    experiment = load_experiment_file(DEMO_EXPERIMENT_FILE)
    rng = np.random.default_rng(seed)
    units = {"control": 0, "treatment": 0}
    buyers = {"control": 0, "treatment": 0}
    views = {"control": 0, "treatment": 0}
    for index in range(DEFAULT_DEMO_UNITS):
        variant = assign(experiment, demo_unit_id(seed, index))
        assert variant is not None
        behaviour = simulated_behaviour(rng, variant)
        units[variant] += 1
        buyers[variant] += behaviour.purchase is not None
        views[variant] += behaviour.page_views
    _z, p_value = proportions_ztest(
        [buyers["treatment"], buyers["control"]], [units["treatment"], units["control"]]
    )
    assert p_value < 0.01
    assert buyers["treatment"] / units["treatment"] > buyers["control"] / units["control"]
    assert chisquare([units["control"], units["treatment"]]).pvalue > SRM_ALARM
    # No page-view effect was built in: views per user agree within a few percent.
    per_user = [views[v] / units[v] for v in ("control", "treatment")]
    assert abs(per_user[0] - per_user[1]) < 0.05 * per_user[0]


TARGET = CatchUpTarget(
    stream={"ns.exposures": {0: 10, 1: 0}, "ns.outcomes": {0: 7, 1: 3}},
    loaded={"ns.exposures": {0: 10, 1: 0}, "ns.outcomes": {0: 7, 1: 3}, "ns.control": {0: 1}},
)


def _progress(stream: dict[str, dict[str, int]], loaded: dict[str, dict[str, int]]) -> LoadProgress:
    return LoadProgress(stream=stream, loaded=loaded, rejected={})


def test_nothing_processed_means_every_message_is_behind() -> None:
    assert behind(_progress({}, {}), TARGET) == TARGET.total == 2 * 20 + 1


def test_caught_up_only_when_both_the_stream_and_the_loader_reached_the_ends() -> None:
    stream = {"ns.exposures": {"0": 10}, "ns.outcomes": {"0": 7, "1": 3}}
    loaded = {"ns.exposures": {"0": 10}, "ns.outcomes": {"0": 7, "1": 3}, "ns.control": {"0": 1}}
    assert behind(_progress(stream, loaded), TARGET) == 0
    assert behind(_progress(stream, {**loaded, "ns.control": {"0": 0}}), TARGET) == 1
    lagging_stream = {**stream, "ns.outcomes": {"0": 5, "1": 3}}
    assert behind(_progress(lagging_stream, loaded), TARGET) == 2


def test_offsets_beyond_the_target_do_not_count_as_progress_elsewhere() -> None:
    stream = {"ns.exposures": {"0": 50}, "ns.outcomes": {"0": 7, "1": 3}}
    loaded = {"ns.exposures": {"0": 10}, "ns.outcomes": {"0": 7}, "ns.control": {"0": 1}}
    assert behind(_progress(stream, loaded), TARGET) == 3
