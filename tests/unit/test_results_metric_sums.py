"""The stream's live metric sums in the analytics store (a real DuckDB file): the latest
``MetricSums`` partial of each source partition is kept however often it is delivered,
the partials of all partitions are summed, sums computed for an older definition are
ignored, and the scorecard prefers live sums to a stored replay, saying per metric where
its figures came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, astuple
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics import queries
from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore
from analytics.unit_metrics import UnitValue, VariantSums
from schemas.aggregates import MetricSums, VariantUnits
from schemas.control import ExperimentDefined
from schemas.experiment import Experiment, MetricDefinition
from services.results.decoding import TopicRole, add_message

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
RATIO = {
    "name": "revenue_per_session",
    "type": "ratio",
    "numerator": {"event": "purchase", "type": "sum"},
    "denominator": {"event": "session_start", "type": "count"},
}
BASKET = {"name": "basket", "event": "purchase", "type": "mean"}


def _experiment(version: int = 1, ratio: dict[str, Any] = RATIO) -> Experiment:
    return Experiment.model_validate(
        {
            "key": "checkout",
            "version": version,
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [
                {"name": "buyers", "event": "purchase", "type": "conversion"},
                ratio,
                BASKET,
            ],
        }
    )


def _hash(experiment: Experiment, name: str) -> str:
    (metric,) = [metric for metric in experiment.metrics if metric.name == name]
    return metric.definition_hash


def _unit_sums(seed: int, units: int, lift: float = 1.0) -> VariantSums:
    rng = np.random.default_rng(seed)
    sums = VariantSums()
    for sessions in 1 + rng.poisson(2.0, units):
        sums.add(UnitValue(float(rng.gamma(sessions, 3.0 * lift)), float(sessions), None))
    return sums


def _record(
    variant: str, partition: int, sums: VariantSums, definition_hash: str, metric: str
) -> MetricSums:
    return MetricSums(
        source_partition=partition,
        updated_at=NOW,
        tenant_id="acme",
        experiment_key="checkout",
        variant_key=variant,
        metric=metric,
        definition_hash=definition_hash,
        n=sums.n,
        sum_x=sums.sum_x,
        sum_xx=sums.sum_xx,
        sum_y=sums.sum_y,
        sum_yy=sums.sum_yy,
        sum_xy=sums.sum_xy,
    )


class Log:
    """Messages on the aggregates and control topics, loaded as the results loader does:
    each parsed from its JSON by ``add_message``, one ``LoadBatch`` per ``load``."""

    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self.offset = 0

    def load(self, *records: MetricSums | VariantUnits | ExperimentDefined) -> None:
        batch = LoadBatch()
        for record in records:
            role = (
                TopicRole.CONTROL if isinstance(record, ExperimentDefined) else TopicRole.AGGREGATES
            )
            value = record.model_dump_json().encode()
            add_message(batch, role, f"ns.{role.value}", 0, self.offset, value)
            self.offset += 1
        assert not batch.rejections.rows
        self.store.load(batch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AnalyticsStore]:
    store = AnalyticsStore(tmp_path / "sums.duckdb")
    yield store
    store.close()


def _live(store: AnalyticsStore, experiment: Experiment) -> dict[tuple[str, str], VariantSums]:
    with store.cursor() as cursor:
        return dict(queries.live_sums(cursor, "acme", experiment))


def _added(*parts: VariantSums) -> VariantSums:
    return VariantSums(*(sum(column) for column in zip(*map(astuple, parts), strict=True)))


def test_a_partial_delivered_twice_counts_once_and_partitions_add_up(
    store: AnalyticsStore,
) -> None:
    experiment = _experiment()
    current = _hash(experiment, "revenue_per_session")
    control_0, control_1, treatment_0 = _unit_sums(1, 40), _unit_sums(2, 30), _unit_sums(3, 50)
    log = Log(store)
    first = _record("control", 0, control_0, current, "revenue_per_session")
    log.load(first, first, _record("control", 1, control_1, current, "revenue_per_session"))
    # Re-published after a stream restart, then again in a later batch: still one partial.
    log.load(first, _record("treatment", 0, treatment_0, current, "revenue_per_session"))
    log.load(first)

    live = _live(store, experiment)
    assert set(live) == {("control", "revenue_per_session"), ("treatment", "revenue_per_session")}
    expected = _added(control_0, control_1)
    assert live["control", "revenue_per_session"].n == expected.n == 70
    assert astuple(live["control", "revenue_per_session"]) == pytest.approx(astuple(expected))
    assert astuple(live["treatment", "revenue_per_session"]) == pytest.approx(astuple(treatment_0))

    # A newer partial of partition 0 replaces the older one, it does not add to it.
    grown = _added(control_0, _unit_sums(4, 5))
    log.load(_record("control", 0, grown, current, "revenue_per_session"))
    assert _live(store, experiment)["control", "revenue_per_session"].n == 45 + 30
    with store.cursor() as cursor:
        assert cursor.execute("SELECT count(*) FROM metric_sums").fetchone() == (3,)


def test_sums_of_another_definition_are_ignored(store: AnalyticsStore) -> None:
    old = _experiment(1)
    new = _experiment(2, {**RATIO, "window_hours": 24})
    log = Log(store)
    log.load(
        # Partition 1 has not seen the new definition yet; partition 0 has.
        _record("control", 1, _unit_sums(1, 40), _hash(old, "revenue_per_session"), RATIO["name"]),
        _record("control", 0, _unit_sums(2, 7), _hash(new, "revenue_per_session"), RATIO["name"]),
    )

    live = _live(store, new)
    assert live["control", "revenue_per_session"].n == 7
    # No treatment unit counted yet under the new definition: zero sums, not a gap.
    assert live["treatment", "revenue_per_session"] == VariantSums()
    assert _live(store, old)["control", "revenue_per_session"].n == 40
    # A metric the stream cannot keep (percentile cap) never takes live sums, even ones
    # whose hash matches.
    capped = _experiment(3, {**RATIO, "cap": {"percentile": 95}})
    log.load(
        _record("control", 0, _unit_sums(5, 9), _hash(capped, "revenue_per_session"), RATIO["name"])
    )
    assert _live(store, capped) == {}


def _replay(store: AnalyticsStore, metric: MetricDefinition, sums: dict[str, VariantSums]) -> None:
    store.save_replay(
        [
            {
                "tenant_id": "acme",
                "experiment_key": "checkout",
                "variant_key": variant,
                "metric": metric.name,
                "definition": metric.model_dump_json(),
                **asdict(variant_sums),
                "excluded_units": 0,
                "cap_value": None,
                "since": None,
                "replayed_at": NOW,
            }
            for variant, variant_sums in sums.items()
        ]
    )


def test_the_scorecard_prefers_live_sums_to_a_replay_and_says_which_it_used(
    store: AnalyticsStore,
) -> None:
    experiment = _experiment()
    ratio, basket = experiment.metrics[1], experiment.metrics[2]
    log = Log(store)
    units = [
        VariantUnits(
            source_partition=0,
            updated_at=NOW,
            tenant_id="acme",
            experiment_key="checkout",
            variant_key=variant,
            units=400,
        )
        for variant in ("control", "treatment")
    ]
    log.load(ExperimentDefined(tenant_id="acme", author="ana", experiment=experiment), *units)
    replayed = {"control": _unit_sums(10, 300), "treatment": _unit_sums(11, 300, 1.1)}
    _replay(store, ratio, replayed)
    _replay(store, basket, replayed)
    log.load(
        _record("control", 0, _unit_sums(12, 400), ratio.definition_hash, ratio.name),
        _record("treatment", 1, _unit_sums(13, 400, 1.1), ratio.definition_hash, ratio.name),
    )

    with store.cursor() as cursor:
        scorecard = queries.scorecard(cursor, "acme", "checkout")
    assert scorecard is not None
    by_name = {comparison.metric: comparison for comparison in scorecard.metrics}
    live = by_name["revenue_per_session"]
    assert live.source == "stream" and live.test == "ratio_delta"
    assert (live.control.units, live.treatment.units) == (400, 400)
    assert live.p_value is not None
    from_replay = by_name["basket"]
    assert from_replay.source == "replay"
    assert (from_replay.control.units, from_replay.treatment.units) == (300, 300)
    assert by_name["buyers"].source == "stream"

    # A new definition of the ratio: neither the live sums nor the replay are for it.
    changed = _experiment(2, {**RATIO, "window_hours": 24})
    log.load(ExperimentDefined(tenant_id="acme", author="ana", experiment=changed))
    with store.cursor() as cursor:
        stale = queries.scorecard(cursor, "acme", "checkout")
    assert stale is not None
    ratio_now = {comparison.metric: comparison for comparison in stale.metrics}[RATIO["name"]]
    assert ratio_now.source is None and ratio_now.p_value is None
    assert "liftstream replay --metric revenue_per_session" in (ratio_now.reason or "")
