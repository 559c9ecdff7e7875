"""The stream worker's web server against the real broker: liveness, readiness, and
Prometheus figures that follow the events it applies (the default engine, Faust; the
fallback engine serves the same routes when ``LIFTSTREAM_STREAM_ENGINE=aiokafka``)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from liftstream.settings import Settings
from tests.integration.helpers_stream import (
    StreamWorker,
    event_messages,
    produce,
    synthetic_events,
)

pytestmark = pytest.mark.integration

TOKEN = "operator-token-for-the-test"


@pytest.fixture
def worker(
    platform_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StreamWorker]:
    monkeypatch.setenv("LIFTSTREAM_METRICS_TOKEN", TOKEN)
    with StreamWorker(tmp_path / "worker.log", publish_interval=0.2) as started:
        yield started


def wait_for(condition: Callable[[], object], what: str, worker: StreamWorker) -> object:
    deadline = time.monotonic() + 60
    while not (result := condition()):
        assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"{what} within 60 s:\n{worker.log_tail()}"
        time.sleep(0.2)
    return result


def announced_url(worker: StreamWorker) -> str | None:
    found = re.search(r"^stream worker ready at (http://\S+)$", worker.log_path.read_text(), re.M)
    return found.group(1) if found else None


def figures(http: httpx.Client) -> dict[str, float]:
    """Every sample of ``/metrics``, by name and labels."""
    answer = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_the_worker_answers_health_readiness_and_metrics_that_follow_its_events(
    platform_settings: Settings, worker: StreamWorker
) -> None:
    url = wait_for(lambda: announced_url(worker), "the web server announced", worker)
    with httpx.Client(base_url=str(url), timeout=5.0) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = wait_for(lambda: http.get("/readyz").status_code == 200, "ready", worker)
        assert ready
        assert http.get("/readyz").json() == {"ready": True, "partitions": [0, 1, 2, 3]}
        # /metrics is the operator's, as on every service.
        assert http.get("/metrics").status_code == 401
        wrong = http.get("/metrics", headers={"Authorization": "Bearer someone-else"})
        assert wrong.status_code == 401
        before = figures(http)
        assert before["liftstream_stream_events_total"] == 0
        assert before["liftstream_stream_rebalances_total"] == 1
        assert before["liftstream_stream_partitions"] == 4
        assert before["liftstream_stream_ready"] == 1
        # Faust's own pages are not served: only the worker's endpoints.
        assert http.get("/router/").status_code == 404

        events = synthetic_events(seed=3, units_per_tenant=50)
        messages = event_messages(platform_settings, events)
        bad = (platform_settings.topics.outcomes, b"acme:user-0001", b'{"type": "outcome"')
        produce(platform_settings, [*messages, bad])

        def applied() -> dict[str, float] | None:
            now = figures(http)
            lags = [v for k, v in now.items() if k.startswith("liftstream_stream_lag{")]
            done = now["liftstream_stream_events_total"] == len(events) + 1 and not any(lags)
            return now if done and now["liftstream_stream_publications_total"] > 0 else None

        after = wait_for(applied, "every event applied and published", worker)
        assert isinstance(after, dict)
        assert after["liftstream_stream_dead_letters_total"] == 1
        units = {(e.tenant_id, e.unit_id) for e in events}
        assert after["liftstream_stream_units"] == len(units)
        assert after["liftstream_stream_published_records_total"] > 0
        lag_keys = [k for k in after if k.startswith("liftstream_stream_lag{")]
        assert len(lag_keys) == 8  # each owned partition of both event topics
        assert 0 <= after["liftstream_stream_snapshot_age_seconds"] < 120
        assert json.loads(http.get("/healthz").text) == {"status": "ok"}
