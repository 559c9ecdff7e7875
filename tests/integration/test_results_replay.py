"""Replay through the real results service: events are sent and loaded, metrics are
defined afterwards (in a new experiment version and as a tenant metric), and
``liftstream replay`` / ``POST .../replays`` back-fill them from the raw log. The stored
per-variant sums equal a direct computation over the events sent, and the scorecard then
compares the ratio metric by the delta method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from liftstream.settings import Settings
from schemas.control import MetricDefined
from schemas.experiment import MetricDefinition
from services.broker.topics import end_offsets
from tests.integration.helpers_cli import LiftstreamProcess
from tests.integration.helpers_control import create_tenant
from tests.integration.helpers_metrics import (
    ORDERS_24H,
    RATIO,
    direct_sums,
    experiment_defined,
    metric_events,
)
from tests.integration.helpers_results import ResultsService, produce
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def _assert_sums(results: list[dict[str, Any]], expected: dict[str, tuple[float, ...]]) -> None:
    got = {
        row["variant_key"]: (row["n"], row["sum_x"], row["sum_xx"], row["sum_y"], row["sum_xy"])
        for row in results
    }
    assert got.keys() == expected.keys()
    for variant, sums in expected.items():
        assert got[variant] == pytest.approx(sums, rel=1e-9)


def _topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.exposures, t.outcomes, t.control]


def test_a_metric_defined_after_its_events_is_replayed_from_the_raw_log(
    platform_settings: Settings, tmp_path: Path
) -> None:
    settings, topics = platform_settings, platform_settings.topics
    keys = create_tenant(settings.bootstrap, topics.control, "acme")
    sent = metric_events()
    exposures, outcomes = sent
    produce(
        settings.bootstrap,
        topics.control,
        [(e.partition_key, e.model_dump_json().encode()) for e in [experiment_defined(1)]],
    )
    produce(
        settings.bootstrap,
        topics.exposures,
        [(e.partition_key, e.to_json()) for e in exposures]
        + [(exposures[0].partition_key, exposures[0].to_json())],
    )
    produce(
        settings.bootstrap,
        topics.outcomes,
        [(o.partition_key, o.to_json()) for o in outcomes]
        + [(outcomes[0].partition_key, outcomes[0].to_json())],
    )

    with ResultsService(
        tmp_path / "results.duckdb", api_key=keys["read"], admin_key=keys["admin"]
    ) as service:
        service.wait_until_loaded(end_offsets(settings.bootstrap, _topics(settings)))
        # Defined after the events were sent and loaded.
        tenant_metric = MetricDefined(
            tenant_id="acme",
            author="ana",
            version=1,
            metric=MetricDefinition.model_validate(ORDERS_24H),
        )
        produce(
            settings.bootstrap,
            topics.control,
            [
                (e.partition_key, e.model_dump_json().encode())
                for e in [experiment_defined(2, RATIO), tenant_metric]
            ],
        )
        service.wait_until_loaded(end_offsets(settings.bootstrap, _topics(settings)))
        before = service.json("/v1/tenants/acme/experiments/checkout/results")
        assert "liftstream replay --metric revenue_per_session" in before["metrics"][1]["reason"]

        # The CLI: progress on stderr, the job with its sums as JSON on stdout.
        cli = LiftstreamProcess(
            [
                "replay",
                "--metric",
                "revenue_per_session",
                "--experiment",
                "checkout",
                "--tenant",
                "acme",
                "--json",
            ],
            tmp_path / "cli",
            env={"LIFTSTREAM_RESULTS_URL": service.url, "LIFTSTREAM_API_KEY": keys["admin"]},
        )
        assert cli.wait(timeout=60) == 0, cli.stderr
        job = json.loads(cli.stdout)
        assert job["status"] == "done" and job["done_units"] == job["total_units"] == 76
        assert "replaying revenue_per_session" in cli.stderr
        _assert_sums(job["results"], direct_sums(sent, MetricDefinition.model_validate(RATIO)))

        scorecard = service.json("/v1/tenants/acme/experiments/checkout/results")
        ratio = scorecard["metrics"][1]
        assert ratio["test"] == "ratio_delta" and ratio["p_value"] is not None
        assert ratio["control"]["units"] + ratio["treatment"]["units"] == 76

        # The tenant's metric over HTTP: an admin key starts it, a read key may not.
        path = "/v1/tenants/acme/replays"
        body = {"metric": "orders_24h"}
        refused = httpx.post(
            f"{service.url}{path}", json=body, headers={"Authorization": f"Bearer {keys['read']}"}
        )
        assert refused.status_code == 403
        started = httpx.post(
            f"{service.url}{path}", json=body, headers={"Authorization": f"Bearer {keys['admin']}"}
        )
        assert started.status_code == 202, started.text
        job = started.json()
        job = wait_until(
            lambda: (
                (done := service.json(f"{path}/{job['job_id']}"))["status"] != "running" and done
            ),
            timeout=60,
            what="the replay job never finished",
            interval=0.1,
        )
        assert job["status"] == "done", job
        expected = direct_sums(sent, MetricDefinition.model_validate(ORDERS_24H))
        _assert_sums(job["results"], expected)
        _assert_sums(service.json("/v1/tenants/acme/metrics/orders_24h/replayed"), expected)
        unknown = httpx.post(
            f"{service.url}{path}",
            json={"metric": "nope"},
            headers={"Authorization": f"Bearer {keys['admin']}"},
        )
        assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]
