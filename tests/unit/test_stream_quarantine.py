"""The stream compiles and applies each tenant's metric definitions apart: one that fails,
for any exception, is quarantined with its reason and the others stay live."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from analytics.unit_metrics import Part, UnitMetric
from schemas.aggregates import DefinitionError, parse_aggregate
from schemas.control import ExperimentDefined
from schemas.experiment import Aggregation, Experiment, MetricDefinition
from schemas.topics import TopicCatalog
from services.control_domain.control_state import ControlState
from services.stream.attribution import LiveMetric, LiveMetrics, UnitState, add_exposure
from services.stream.definitions import MetricDefinitions, compile_live
from services.stream.processor import StreamProcessor

NOW = datetime(2026, 3, 1, tzinfo=UTC)
GOOD = {"name": "aov", "event": "purchase", "type": "mean"}


def _experiment(metric: MetricDefinition | dict[str, Any]) -> Experiment:
    experiment = Experiment.model_validate(
        {
            "key": "checkout",
            "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
            "metrics": [GOOD],
        }
    )
    extra = metric if isinstance(metric, MetricDefinition) else MetricDefinition(**metric)
    # model_copy skips validation: the poison a writer bypassing the API could log
    return experiment.model_copy(update={"metrics": [*experiment.metrics, extra]})


def _state(poison: MetricDefinition) -> ControlState:
    state = ControlState()
    for offset, (tenant, experiment) in enumerate(
        [("alice", _experiment(GOOD | {"name": "aov2"})), ("mallory", _experiment(poison))]
    ):
        event = ExperimentDefined(
            tenant_id=tenant, author="operator", occurred_at=NOW, experiment=experiment
        )
        state.apply(offset, event)
    return state


def _poison(**fields: Any) -> MetricDefinition:
    return MetricDefinition.model_construct(
        name="poison", event="purchase", type=Aggregation.MEAN, **fields
    )


def test_an_overflowing_window_is_quarantined_and_the_other_tenant_stays_live() -> None:
    for fields in ({"window_hours": 1e300}, {"cuped_lookback_days": float("inf")}):
        poison = _poison(
            **{"window_hours": None, "cuped_lookback_days": None, "cap": None, **fields}
        )
        live, failed = compile_live(_state(poison))
        assert sorted(live) == [("alice", "checkout"), ("mallory", "checkout")]
        assert [m.metric.name for m in live[("alice", "checkout")]] == ["aov", "aov2"]
        assert [m.metric.name for m in live[("mallory", "checkout")]] == ["aov"]
        [(subject, reason)] = failed
        assert subject[:3] == ("mallory", "checkout", "poison")
        assert "OverflowError" in reason and "poison" in reason


class _Definitions(MetricDefinitions):
    """Definitions whose live set is given (no control topic)."""

    def __init__(self, live: LiveMetrics) -> None:
        super().__init__("unused:9092", "unused", "test")
        self._given = live

    def changed(self) -> LiveMetrics | None:
        given, self._given = self._given, None  # type: ignore[assignment]
        return given


def _processor() -> StreamProcessor:
    processor = StreamProcessor(TopicCatalog(namespace="ns", event_partitions=1))
    units: dict[bytes, UnitState] = {}
    for tenant in ("alice", "mallory"):
        state = units[f"{tenant}:u1".encode()] = UnitState(tenant, 0)
        sums: dict[Any, list[float]] = {}
        add_exposure(sums, set(), state, uuid.uuid4().int, "checkout", "control", 0, {})
    processor.assign(0, units, {})
    return processor


def test_a_definition_failing_on_units_is_quarantined_and_the_rest_rebuilt() -> None:
    good = LiveMetric(UnitMetric("aov", Part("purchase", "sum"), None, None, None, None, None), "g")
    # passes compilation (built by hand) but raises on every unit it is applied to
    bad_metric = UnitMetric("poison", Part("purchase", "sum"), None, "x", None, None, None)  # type: ignore[arg-type]
    bad = LiveMetric(bad_metric, "b")
    definitions = _Definitions(
        {("alice", "checkout"): (good,), ("mallory", "checkout"): (good, bad)}
    )
    processor = _processor()

    kept = definitions.apply(processor)

    assert kept == {("alice", "checkout"): (good,), ("mallory", "checkout"): (good,)}
    assert processor.live == kept
    sums_keys = {key for key in processor.partials.totals(0) if len(key) == 5 and key[3] == "aov"}
    assert {key[0] for key in sums_keys} == {"alice", "mallory"}
    [record] = definitions.take_errors()
    assert (record.tenant_id, record.experiment_key, record.metric) == (
        "mallory",
        "checkout",
        "poison",
    )
    assert "TypeError" in record.reason
    assert definitions.take_errors() == []  # reported once


def test_quarantine_records_are_published_once_and_read_back_by_the_loader_contract() -> None:
    definitions = _Definitions({})
    definitions.quarantine([(("mallory", "checkout", "poison", "h"), "metric 'poison': boom")])
    sent: list[tuple[bytes, bytes]] = []

    async def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
        sent.append((key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    assert asyncio.run(definitions.publish_errors(send)) == 1
    assert asyncio.run(definitions.publish_errors(send)) == 0
    [(key, value)] = sent
    record = parse_aggregate(value)
    assert isinstance(record, DefinitionError)
    assert key == b"error|mallory|checkout|poison" and record.reason == "metric 'poison': boom"


def test_records_not_enqueued_are_kept_for_the_next_tick() -> None:
    definitions = _Definitions({})
    definitions.quarantine([(("mallory", "checkout", "poison", "h"), "boom")])

    async def failing(key: bytes, value: bytes) -> asyncio.Future[Any]:
        raise ConnectionError("broker gone")

    assert asyncio.run(definitions.publish_errors(failing)) == 0
    assert [r.metric for r in definitions.take_errors()] == ["poison"]


def test_a_partition_taken_whose_units_fail_a_live_metric_is_still_taken() -> None:
    good = LiveMetric(UnitMetric("aov", Part("purchase", "sum"), None, None, None, None, None), "g")
    bad_metric = UnitMetric("poison", Part("purchase", "sum"), None, "x", None, None, None)  # type: ignore[arg-type]
    bad = LiveMetric(bad_metric, "b")
    processor = StreamProcessor(TopicCatalog(namespace="ns", event_partitions=2))
    processor.assign(0, {}, {})
    # kept live while no owned unit of mallory's experiment showed the failure
    processor.set_live({("alice", "checkout"): (good,), ("mallory", "checkout"): (good, bad)})
    restored = _processor().units[0]  # alice's and mallory's units of another partition
    definitions = _Definitions({})

    definitions.assign(processor, 1, restored, {"ns.exposures": 7})

    assert processor.owned() == [0, 1]
    assert processor.partials.next_offsets(1) == {"ns.exposures": 7}
    assert processor.live == {("alice", "checkout"): (good,), ("mallory", "checkout"): (good,)}
    units = {key[0] for key in processor.partials.totals(1) if len(key) == 3}
    assert units == {"alice", "mallory"}
    assert [r.metric for r in definitions.take_errors()] == ["poison"]
