"""A hostile tenant against the whole platform: every case stays that tenant's problem.

One platform (real broker; control, collector, results and stream worker as processes)
is shared by two tenants: ``mallory`` sends the hostile input, ``alice`` is the bystander.
Every case reproduces one way a tenant once damaged the platform for everyone, and then
checks, through ``Platform.assert_unharmed``, what the bystander would notice:

- the offending request got a 4xx that names the field (asserted in the case);
- alice's valid batch sent right after gets 2xx and is counted by the stream;
- alice's single bad event gets its own 4xx;
- every service process is still alive;
- no answer of the whole module was a 5xx (``Platform.responses`` records every answer).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.topics import TopicCatalog
from services.broker.topics import delete_namespace_topics, ensure_topics
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_results import ResultsService
from tests.integration.helpers_services import KEY_NOT_KNOWN_YET, ServiceProcess
from tests.integration.helpers_stream import StreamWorker

pytestmark = pytest.mark.integration

HOSTILE = "mallory"
BYSTANDER = "alice"
EXPERIMENT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
}


@dataclass
class Platform:
    """The running platform, the tenants' keys, and every HTTP answer seen."""

    bootstrap: str
    topics: TopicCatalog
    home: Path
    control: ControlService
    collector: ServiceProcess
    results: ResultsService
    worker: StreamWorker
    keys: dict[str, dict[str, str]]  # tenant -> role -> key
    responses: list[tuple[str, str, int]] = field(default_factory=list)

    def call(
        self,
        service: ServiceProcess,
        method: str,
        path: str,
        key: str | None = None,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> httpx.Response:
        """One request to ``service``; its status is recorded for the no-5xx check."""
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        response = httpx.request(
            method,
            f"{service.url}{path}",
            json=json,
            content=content,
            headers=sent,
            timeout=timeout,
        )
        self.responses.append((method, path, response.status_code))
        return response

    def services(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "collector": self.collector,
            "results": self.results,
            "stream": self.worker,
        }

    def assert_all_alive(self) -> None:
        for name, process in self.services().items():
            assert process.alive(), f"{name} died:\n{process.log_tail()}"

    def assert_unharmed(self) -> None:
        """What the bystander notices: its own traffic still works, nothing died."""
        alice = self.keys[BYSTANDER]
        before = self.bystander_units()
        unit = f"u-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC).isoformat()
        good = [
            {
                "type": "exposure",
                "unit_id": unit,
                "timestamp": now,
                "experiment_key": "checkout",
                "variant_key": "treatment",
            },
            {"type": "outcome", "unit_id": unit, "timestamp": now, "event": "purchase"},
        ]
        answer = self.call(
            self.collector, "POST", "/v1/events", alice["ingest"], json={"events": good}
        )
        assert answer.status_code == httpx.codes.ACCEPTED, answer.text
        bad = self.call(
            self.collector,
            "POST",
            "/v1/events",
            alice["ingest"],
            json={"events": [{"type": "outcome", "unit_id": unit, "timestamp": "never"}]},
        )
        assert 400 <= bad.status_code < 500, bad.text
        assert "timestamp" in bad.text
        self.wait_until_units(before + 1)
        self.assert_all_alive()
        self.assert_no_5xx()

    def bystander_units(self) -> int:
        """Units on alice's scorecard now (0 before the first one is counted)."""
        path = f"/v1/tenants/{BYSTANDER}/experiments/checkout/results"
        answer = self.call(self.results, "GET", path, self.keys[BYSTANDER]["read"])
        if answer.status_code != httpx.codes.OK:
            return 0
        return int(answer.json()["total_units"])

    def wait_until_units(self, expected: int, timeout: float = 60.0) -> None:
        """Alice's scorecard reaches ``expected`` units (collector -> Kafka -> stream ->
        results)."""
        deadline = time.monotonic() + timeout
        while (units := self.bystander_units()) < expected:
            assert time.monotonic() < deadline, (
                f"alice has {units} units, not {expected}\n{self.worker.log_tail()}"
            )
            time.sleep(0.3)

    def assert_no_5xx(self) -> None:
        failures = [r for r in self.responses if r[2] >= 500]
        assert not failures, f"5xx answers: {failures}"


def _wait_until_key_known(platform: Platform, service: ServiceProcess, key: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(
            f"{service.url}/healthz", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        probe = httpx.post(
            f"{service.url}/v1/events",
            content=b"",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        if answer.status_code == 200 and probe.status_code not in KEY_NOT_KNOWN_YET:
            return
        assert time.monotonic() < deadline, f"key never known:\n{service.log_tail()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("hostile")
    topics = TopicCatalog(namespace=namespace, event_partitions=2)
    ensure_topics(kafka_bootstrap, topics)
    keys = {
        tenant: create_tenant(kafka_bootstrap, topics.control, tenant)
        for tenant in (HOSTILE, BYSTANDER)
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LIFTSTREAM_BOOTSTRAP", kafka_bootstrap)
        env.setenv("LIFTSTREAM_NAMESPACE", namespace)
        env.setenv("LIFTSTREAM_PARTITIONS", "2")
        env.setenv("LIFTSTREAM_HOME", str(home))
        control = ControlService(home / "control.duckdb", dict(os.environ))
        collector = ServiceProcess(
            "services.collector", "collector", [], home / "collector.log", dict(os.environ)
        )
        results = ResultsService(home / "results.duckdb", api_key=keys[BYSTANDER]["read"])
        worker = StreamWorker(home / "stream.log")
        platform = Platform(
            kafka_bootstrap, topics, home, control, collector, results, worker, keys
        )
        try:
            with control, collector, results:
                for tenant in (HOSTILE, BYSTANDER):
                    control.ok(
                        "POST",
                        f"/v1/tenants/{tenant}/experiments",
                        keys[tenant]["admin"],
                        {"experiment": EXPERIMENT},
                    )
                _wait_until_key_known(platform, collector, keys[BYSTANDER]["ingest"])
                _wait_until_key_known(platform, collector, keys[HOSTILE]["ingest"])
                yield platform
        finally:
            worker.stop()
            with contextlib.suppress(Exception):
                delete_namespace_topics(kafka_bootstrap, namespace)


def test_bystander_traffic_works_before_anything_hostile(platform: Platform) -> None:
    platform.assert_unharmed()


# ---------------------------------------------------------------------------------------
# Collector and dead-letter cases (ingest: sizes, keys, producers, idempotency).
# ---------------------------------------------------------------------------------------


# (collector cases go here)


# ---------------------------------------------------------------------------------------
# Control-plane cases (definitions, flags, keys, bodies, YAML).
# ---------------------------------------------------------------------------------------


# (control cases go here)


# ---------------------------------------------------------------------------------------
# Stream, loader and results cases (quarantine, tenant keying, bounded reads, leaks).
# ---------------------------------------------------------------------------------------


# (stream and results cases go here)


# ---------------------------------------------------------------------------------------
# Last: after every hostile case, the bystander is still served and nothing answered 5xx.
# ---------------------------------------------------------------------------------------


def test_zz_bystander_unharmed_after_everything(platform: Platform) -> None:
    platform.assert_unharmed()
