"""The whole pipe: SDK -> Kafka -> stream worker -> results service -> DuckDB -> scorecard.

A known event set (with re-sent duplicates, outcomes before exposure, a unit that saw
both variants, and malformed messages) goes through the real broker and real processes.
The statistics in the DuckDB file must equal those computed here directly from the raw
events (counts and sums exactly, sums of squares to 1e-9 relative), and the scorecard's
p-values must equal statsmodels' on the same unit-level data.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from kafka import KafkaProducer
from statsmodels.stats.proportion import proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analytics import queries
from liftstream.client import LiftstreamClient
from liftstream.settings import Settings
from schemas import Experiment, ExperimentDefined, ExposureEvent, OutcomeEvent
from services.broker.topics import end_offsets
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_results import ResultsService, produce
from tests.integration.helpers_stream import StreamWorker

pytestmark = pytest.mark.integration

TENANT = "acme"
UNITS = 1200
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EXPERIMENT = Experiment.model_validate(
    {
        "key": "pricing-page",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [
            {"name": "conversion", "event": "purchase", "type": "conversion"},
            {"name": "revenue", "event": "purchase", "type": "sum"},
            {"name": "page_views", "event": "page_view", "type": "count"},
        ],
    }
)
Events = list[ExposureEvent | OutcomeEvent]


def _send_scenario(client: LiftstreamClient, rng: random.Random) -> Events:
    """Exposures and outcomes of UNITS units, as the SDK sends them; returns what was sent
    (as the contract's models)."""
    sent: Events = []
    for index in range(UNITS):
        unit = f"user-{index}"
        exposed_at = START + timedelta(minutes=rng.randrange(600))
        exposure = client.expose(EXPERIMENT, unit, timestamp=exposed_at)
        assert exposure is not None
        sent.append(exposure.to_model())
        if index == 7:  # saw the other variant too: excluded from the experiment
            other = next(v for v in ("control", "treatment") if v != exposure.variant_key)
            again = client.expose(EXPERIMENT, unit, variant=other, timestamp=exposed_at)
            assert again is not None
            sent.append(again.to_model())
        lift = 0.05 if exposure.variant_key == "treatment" else 0.0
        for _ in range(rng.randrange(4)):
            minutes = rng.randrange(-30, 120)  # some happen before the exposure: not attributed
            viewed_at = exposed_at + timedelta(minutes=minutes)
            sent.append(client.track(unit, "page_view", timestamp=viewed_at).to_model())
        if rng.random() < 0.2 + lift:
            value = round(rng.lognormvariate(3.0, 0.8), 2)
            bought_at = exposed_at + timedelta(hours=1)
            sent.append(client.track(unit, "purchase", value, timestamp=bought_at).to_model())
    client.flush()
    return sent


def _resend_and_corrupt(settings: Settings, sent: Events, rng: random.Random) -> None:
    """Re-send 50 events as they were (same event_id) and 3 malformed messages."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    topics = settings.topics
    for event in rng.sample(sent, 50):
        topic = topics.exposures if isinstance(event, ExposureEvent) else topics.outcomes
        producer.send(topic, event.to_json(), key=event.partition_key)
    producer.send(topics.outcomes, b"{not json", key=b"acme:user-1")
    producer.send(topics.outcomes, b'{"type": "outcome", "tenant_id": "acme"}', key=b"acme:user-2")
    producer.send(topics.exposures, b'{"type": "exposure", "unit_id": 5}', key=b"acme:user-3")
    producer.flush()
    producer.close()


def _unit_values(sent: Events) -> dict[str, dict[str, list[float]]]:
    """variant -> metric name -> unit-level values, straight from the distinct raw events."""
    events = {event.event_id: event for event in sent}.values()
    variants: dict[str, set[str]] = defaultdict(set)
    first_seen: dict[str, datetime] = {}
    for event in events:
        if isinstance(event, ExposureEvent):
            variants[event.unit_id].add(event.variant_key)
            first_seen[event.unit_id] = min(
                first_seen.get(event.unit_id, event.timestamp), event.timestamp
            )
    per_unit: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        if isinstance(event, OutcomeEvent) and event.timestamp >= first_seen[event.unit_id]:
            per_unit[event.unit_id][event.event].append(event.value)
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for unit, seen in variants.items():
        if len(seen) > 1:
            continue
        (variant,) = seen
        outcomes = per_unit[unit]
        values[variant]["conversion"].append(1.0 if outcomes["purchase"] else 0.0)
        values[variant]["revenue"].append(math.fsum(outcomes["purchase"]))
        values[variant]["page_views"].append(float(len(outcomes["page_view"])))
    return values


def test_statistics_in_duckdb_equal_the_raw_events_and_statsmodels(
    platform_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(2026)
    topics = platform_settings.topics
    keys = create_tenant(platform_settings.bootstrap, topics.control, TENANT)
    defined = ExperimentDefined(tenant_id=TENANT, author="e2e-test", experiment=EXPERIMENT)
    produce(
        platform_settings.bootstrap,
        topics.control,
        [(defined.partition_key, defined.model_dump_json().encode())],
    )
    with LiftstreamClient(TENANT) as client:
        sent = _send_scenario(client, rng)
    _resend_and_corrupt(platform_settings, sent, rng)
    ends = end_offsets(platform_settings.bootstrap, [topics.exposures, topics.outcomes])

    db_path = tmp_path / "results.duckdb"
    with (
        StreamWorker(tmp_path / "stream.log") as worker,
        ResultsService(db_path, api_key=keys["read"], admin_key=keys["admin"]) as results,
    ):
        progress = _wait_for_stream_and_loader(results, ends)
        assert worker.alive(), "malformed messages must not stop the worker"
        scorecard = results.json(
            f"/v1/tenants/{TENANT}/experiments/{EXPERIMENT.key}/results?scale=absolute"
        )
    assert progress["stream"], progress

    truth = _unit_values(sent)
    with duckdb.connect(str(db_path), read_only=True) as connection:
        cursor = connection.cursor()
        units = queries.variant_units(cursor, TENANT, EXPERIMENT.key)
        stats = queries.metric_stats(cursor, TENANT, EXPERIMENT.key)
        stored_events = cursor.execute(
            "SELECT (SELECT count(*) FROM exposures) + (SELECT count(*) FROM outcomes)"
        ).fetchone()
        excluded = queries.excluded_units(cursor, TENANT, EXPERIMENT.key)
    assert stored_events == (len({e.event_id for e in sent}),), "each raw event stored once"
    assert excluded == 1
    for variant, by_metric in truth.items():
        assert units[variant] == len(by_metric["conversion"])
        for metric in EXPERIMENT.metrics:
            expected = np.array(by_metric[metric.name])
            got_sum, got_sum_sq = stats.get((variant, metric.event, metric.type), (0.0, 0.0))
            assert got_sum == pytest.approx(expected.sum(), rel=1e-12, abs=1e-9)
            assert got_sum_sq == pytest.approx((expected**2).sum(), rel=1e-9, abs=1e-9)

    by_metric = {m["metric"]: m for m in scorecard["metrics"]}
    control, treatment = truth["control"], truth["treatment"]
    for name in ("revenue", "page_views"):
        compare = CompareMeans(DescrStatsW(treatment[name]), DescrStatsW(control[name]))
        _, p_value, _ = compare.ttest_ind(usevar="unequal")
        assert by_metric[name]["p_value"] == pytest.approx(p_value, rel=1e-8)
    conversions = [sum(treatment["conversion"]), sum(control["conversion"])]
    _, p_value = proportions_ztest(
        conversions, [len(treatment["conversion"]), len(control["conversion"])]
    )
    assert by_metric["conversion"]["p_value"] == pytest.approx(p_value, rel=1e-8)
    assert scorecard["sample_ratio"]["observed_units"] == {
        v: len(truth[v]["conversion"]) for v in truth
    }


def _wait_for_stream_and_loader(
    results: ResultsService, ends: dict[str, dict[int, int]], timeout: float = 180.0
) -> dict[str, object]:
    """Wait until the stream has aggregated the event topics to ``ends`` and the loader has
    loaded both the raw events and the aggregates covering them."""
    deadline = time.monotonic() + timeout
    while True:
        progress = results.wait_until_loaded(ends, timeout=timeout)
        stream = progress["stream"]
        if all(
            stream.get(topic, {}).get(str(partition), 0) >= offset
            for topic, partitions in ends.items()
            for partition, offset in partitions.items()
        ):
            return progress
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream progress {stream} has not reached {ends}")
        time.sleep(0.3)
