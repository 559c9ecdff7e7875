"""A metric definition the stream cannot apply is quarantined for its tenant alone, against
the real broker: the worker keeps aggregating every tenant (the failing tenant's other
metrics included), publishes the reason, and the results service shows it on that
experiment only.

The contracts refuse the definitions that once crashed the worker (``window_hours:
1e300``), so the failure is injected into the worker's own compile step, which runs in
this process; everything else is the real path: control topic, stream worker, aggregates
topic, results loader and API.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.unit_metrics import UnitMetric
from liftstream.settings import Settings
from schemas.aggregates import DefinitionError, MetricSums
from schemas.control import ExperimentDefined
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment, MetricDefinition
from services.broker.topics import end_offsets
from services.stream.worker import StreamWorker as ServiceWorker
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_results import ResultsService, produce
from tests.integration.helpers_stream import AggregatesReader
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC) - timedelta(hours=1)
AOV = {"name": "aov", "event": "purchase", "type": "mean"}
POISON = {"name": "poison", "event": "purchase", "type": "mean", "window_hours": 24}


class InProcessWorker:
    """The stream worker on an event loop of its own thread; ``close`` stops it cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.worker = ServiceWorker(settings, publish_interval=0.2)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        async def main() -> None:
            self.stop = asyncio.Event()
            await self.worker.run(self.stop)

        try:
            self.loop.run_until_complete(main())
        except BaseException as error:
            self.error = error

    def close(self) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


@pytest.fixture
def poison_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling the metric named 'poison' raises, as 1e300 hours once did."""
    real = UnitMetric.of.__func__  # type: ignore[attr-defined]

    def of(cls: type[UnitMetric], metric: MetricDefinition) -> UnitMetric:
        if metric.name == "poison":
            raise OverflowError("cannot convert float infinity to integer")
        return real(cls, metric)  # type: ignore[no-any-return]

    monkeypatch.setattr(UnitMetric, "of", classmethod(of))


def _events(tenant: str) -> list[tuple[bytes, bytes]]:
    events: list[ExposureEvent | OutcomeEvent] = []
    for index in range(6):
        unit = f"u{index}"
        events.append(
            ExposureEvent(
                event_id=uuid.uuid4(),
                tenant_id=tenant,
                unit_id=unit,
                timestamp=NOW,
                experiment_key="checkout",
                variant_key="treatment" if index % 2 else "control",
            )
        )
        events.append(
            OutcomeEvent(
                event_id=uuid.uuid4(),
                tenant_id=tenant,
                unit_id=unit,
                timestamp=NOW + timedelta(minutes=5),
                event="purchase",
                value=10.0 + index,
            )
        )
    return [(event.partition_key, event.to_json()) for event in events]


def test_a_failing_definition_is_quarantined_for_its_tenant_alone(
    platform_settings: Settings, tmp_path: Path, reader: AggregatesReader, poison_fails: None
) -> None:
    settings, topics = platform_settings, platform_settings.topics
    keys = {
        tenant: create_tenant(settings.bootstrap, topics.control, tenant)
        for tenant in ("alice", "mallory")
    }
    definitions = []
    for tenant, metrics in (("alice", [AOV]), ("mallory", [AOV, POISON])):
        experiment = Experiment.model_validate(
            {
                "key": "checkout",
                "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
                "metrics": metrics,
            }
        )
        event = ExperimentDefined(tenant_id=tenant, author="operator", experiment=experiment)
        definitions.append((event.partition_key, event.model_dump_json().encode()))
    produce(settings.bootstrap, topics.control, definitions)
    for tenant in ("alice", "mallory"):
        messages = _events(tenant)
        produce(settings.bootstrap, topics.exposures, messages[0::2])
        produce(settings.bootstrap, topics.outcomes, messages[1::2])

    worker = InProcessWorker(settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            reader.poll()
            sums = {
                (r.tenant_id, r.metric)
                for r in reader.latest.values()
                if isinstance(r, MetricSums) and r.n > 0
            }
            errors = [r for r in reader.latest.values() if isinstance(r, DefinitionError)]
            if {("alice", "aov"), ("mallory", "aov")} <= sums and errors:
                break
            assert worker.error is None, worker.error
            assert time.monotonic() < deadline, (sums, errors)
            time.sleep(0.2)
        assert worker.thread.is_alive() and worker.error is None
        assert worker.worker.processor.live.keys() == {
            ("alice", "checkout"),
            ("mallory", "checkout"),
        }
    finally:
        worker.close()
    assert worker.error is None, worker.error
    [error] = errors
    assert (error.tenant_id, error.experiment_key, error.metric) == (
        "mallory",
        "checkout",
        "poison",
    )
    assert "OverflowError" in error.reason
    assert ("mallory", "poison") not in sums

    with ResultsService(
        tmp_path / "results.duckdb",
        api_key=keys["mallory"]["read"],
        admin_key=keys["mallory"]["admin"],
    ) as service:
        service.wait_until_loaded(
            end_offsets(settings.bootstrap, [topics.control, topics.aggregates])
        )
        shown = wait_until(
            lambda: service.json("/v1/tenants/mallory/experiments/checkout/results")["errors"],
            timeout=60,
            what="the quarantine never showed on the scorecard",
            interval=0.3,
        )
        assert [(e["stage"], e["subject"]) for e in shown] == [("stream", "metric poison")]
        alice: dict[str, Any] = service.get(
            "/v1/tenants/alice/experiments/checkout/results", keys["alice"]["read"]
        ).json()
        assert alice["errors"] == []
        aov = [m for m in alice["metrics"] if m["metric"] == "aov"]
        assert aov and aov[0]["source"] == "stream"
