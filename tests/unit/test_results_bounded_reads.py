"""The results API's reads are bounded: a query past its time budget is interrupted and
only that request is answered 503 with Retry-After; bad parameters are 422 naming them
(NaN included, which JSON cannot even echo); platform-wide progress needs an admin key;
quarantined definitions and unreadable control events show on their experiment, with
the health counters (in process, on a real DuckDB file)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analytics.load_batch import LoadBatch
from analytics.store import AnalyticsStore, QueryBudgetExceeded
from schemas.aggregates import DefinitionError, VariantUnits
from schemas.control import ExperimentDefined
from schemas.deadletter import DeadLetter
from schemas.errors import FieldError
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment
from services.control_domain.api_keys import KeyRecord
from services.results import api as results_api
from services.results import daily_api, replay_jobs
from services.results.api import create_app

NOW = datetime.now(UTC).replace(microsecond=0)
KEYS = {
    "read-alice": KeyRecord("k1", "alice", "read", revoked=False, label=""),
    "admin-alice": KeyRecord("k2", "alice", "admin", revoked=False, label=""),
    "read-mallory": KeyRecord("k3", "mallory", "read", revoked=False, label=""),
    "ingest-alice": KeyRecord("k4", "alice", "ingest", revoked=False, label=""),
}
EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [
            {"name": "purchased", "event": "purchase", "type": "conversion"},
            {"name": "aov", "event": "purchase", "type": "mean"},
        ],
    }
)


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AnalyticsStore]:
    store = AnalyticsStore(tmp_path / "r.duckdb")
    batch = LoadBatch()
    for offset, tenant in enumerate(("alice", "mallory")):
        event = ExperimentDefined(
            tenant_id=tenant, author="operator", occurred_at=NOW, experiment=EXPERIMENT
        )
        batch.add_control("ns.control", 0, offset, event)
    same_id = uuid.uuid4()
    for offset in range(3):
        exposure = ExposureEvent(
            event_id=same_id,
            tenant_id="alice",
            unit_id="u1",
            timestamp=NOW - timedelta(days=2),
            received_at=NOW,  # late: received two days after its timestamp
            experiment_key="checkout",
            variant_key="control",
        )
        batch.add_exposure("ns.exposures", 0, offset, exposure)  # twice a duplicate
    batch.add_outcome(
        "ns.outcomes",
        0,
        0,
        OutcomeEvent(tenant_id="alice", unit_id="u1", timestamp=NOW, event="purchase"),
    )
    batch.add_aggregate(
        "ns.aggregates",
        0,
        0,
        VariantUnits(
            source_partition=0,
            updated_at=NOW,
            tenant_id="alice",
            experiment_key="checkout",
            variant_key="control",
            units=1,
            excluded_units=1,
        ),
    )
    aov = EXPERIMENT.metrics[1]
    batch.add_aggregate(
        "ns.aggregates",
        0,
        1,
        DefinitionError(
            updated_at=NOW,
            tenant_id="mallory",
            experiment_key="checkout",
            metric="aov",
            definition_hash=aov.definition_hash,
            reason="metric 'aov' cannot be kept live and is quarantined: OverflowError: big",
        ),
    )
    letter = DeadLetter(
        stage="collector",
        source_topic="http",
        reason="event 0 of the batch: timestamp: not a time",
        errors=[FieldError(field="timestamp", reason="not a time")],
        payload="{}",
    )
    for offset in range(2):
        batch.add_deadletter("ns.deadletter", 0, offset, letter, "alice")
    # a change to mallory's experiment the loader could not read (after its definition)
    batch.add_rejection(
        *("ns.control", 0, 5, "experiment.metrics.1.window_hours: too large", "{}"),
        *("mallory", "checkout"),
    )
    store.load(batch)
    yield store
    store.close()


def _client(store: AnalyticsStore, budget_s: float = 5.0) -> TestClient:
    return TestClient(create_app(store, KEYS.get, query_budget_s=budget_s))


def test_a_query_over_its_budget_is_interrupted() -> None:
    store = AnalyticsStore(":memory:")
    started = time.monotonic()
    with (
        pytest.raises(QueryBudgetExceeded, match=r"budget of 0\.2s"),
        store.cursor(budget_s=0.2) as cursor,
    ):
        cursor.execute("SELECT count(*) FROM range(100000000000)").fetchall()
    assert time.monotonic() - started < 3
    with store.cursor(budget_s=0.2) as cursor:  # the next request's cursor is unharmed
        assert cursor.execute("SELECT 42").fetchall() == [(42,)]


def test_only_the_request_over_budget_gets_503(
    store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def endless(cursor: Any, *args: Any, **kwargs: Any) -> list[Any]:
        cursor.execute("SELECT count(*) FROM range(100000000000)").fetchall()
        return []

    monkeypatch.setattr(daily_api, "daily_figures", endless)
    client = _client(store, budget_s=0.5)
    answers: dict[str, Any] = {}

    def slow() -> None:
        answers["daily"] = client.get(
            "/v1/tenants/mallory/experiments/checkout/daily", headers=_headers("read-mallory")
        )

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    alice = client.get(
        "/v1/tenants/alice/experiments/checkout/results", headers=_headers("read-alice")
    )
    alice_s = time.monotonic() - started
    thread.join(10)

    assert alice.status_code == 200 and alice_s < 0.5
    daily = answers["daily"]
    assert daily.status_code == 503, daily.text
    assert daily.headers["Retry-After"] == "5"
    assert "budget of 0.5s" in daily.json()["detail"]


def test_bad_query_values_are_422_naming_the_parameter(store: AnalyticsStore) -> None:
    client = _client(store)
    path = "/v1/tenants/alice/experiments/checkout/daily"
    for query in ("since=NaN", "through=Infinity", "since=2026-13-01", "through=9" * 30):
        answer = client.get(f"{path}?{query}", headers=_headers("read-alice"))
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [query.split("=")[0]]
    replay = client.post(
        "/v1/tenants/alice/replays",
        content=b'{"metric": "aov", "since": NaN}',
        headers={**_headers("admin-alice"), "Content-Type": "application/json"},
    )
    assert replay.status_code == 422, replay.text
    assert [e["field"] for e in replay.json()["errors"]] == ["since"]


def test_progress_needs_an_admin_key(store: AnalyticsStore) -> None:
    client = _client(store)
    for key in ("read-alice", "ingest-alice"):
        assert client.get("/v1/progress", headers=_headers(key)).status_code == 403
    assert client.get("/v1/progress", headers=_headers("admin-alice")).status_code == 200


def test_quarantined_definitions_show_on_their_experiment_only(store: AnalyticsStore) -> None:
    client = _client(store)
    scorecard = client.get(
        "/v1/tenants/mallory/experiments/checkout/results", headers=_headers("read-mallory")
    ).json()
    stages = [(e["stage"], e["subject"]) for e in scorecard["errors"]]
    assert stages == [("stream", "metric aov"), ("loader", "control event at offset 5")]
    assert "OverflowError" in scorecard["errors"][0]["reason"]
    assert "window_hours" in scorecard["errors"][1]["reason"]
    view = client.get(
        "/v1/tenants/mallory/experiments/checkout", headers=_headers("read-mallory")
    ).json()
    assert view["errors"] == scorecard["errors"]
    alice = client.get(
        "/v1/tenants/alice/experiments/checkout/results", headers=_headers("read-alice")
    ).json()
    assert alice["errors"] == []


def test_health_counts_what_the_pipeline_saw(store: AnalyticsStore) -> None:
    client = _client(store)
    health = client.get(
        "/v1/tenants/alice/experiments/checkout/health", headers=_headers("read-alice")
    )
    assert health.status_code == 200, health.text
    body = health.json()
    assert {
        name: body[name]
        for name in (
            "exposures",
            "duplicate_exposures",
            "late_exposures",
            "units",
            "units_in_several_variants",
            "tenant_outcomes",
            "tenant_duplicate_outcomes",
            "tenant_late_outcomes",
            "tenant_rejected",
            "empty_raw_log",
        )
    } == {
        "exposures": 1,
        "duplicate_exposures": 2,
        "late_exposures": 1,
        "units": 1,
        "units_in_several_variants": 1,
        "tenant_outcomes": 1,
        "tenant_duplicate_outcomes": 0,
        "tenant_late_outcomes": 0,
        "tenant_rejected": 2,
        "empty_raw_log": False,
    }
    assert body["rejected_by_reason"] == [
        {
            "stage": "collector",
            "field": "timestamp",
            "count": 2,
            "example": "event 0 of the batch: timestamp: not a time",
        }
    ]
    mallory = client.get(
        "/v1/tenants/mallory/experiments/checkout/health", headers=_headers("read-mallory")
    ).json()
    assert mallory["empty_raw_log"] is True and mallory["tenant_rejected"] == 1
    assert len(mallory["errors"]) == 2
    other = client.get(
        "/v1/tenants/alice/experiments/checkout/health", headers=_headers("read-mallory")
    )
    assert other.status_code == 403


def test_api_module_names_its_budget() -> None:
    assert results_api.QUERY_BUDGET_S > 0


def test_one_heavy_read_at_a_time_per_tenant(
    store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    running = threading.Event()

    def held(cursor: Any, *args: Any, **kwargs: Any) -> list[Any]:
        running.set()
        release.wait(10)
        return []

    monkeypatch.setattr(daily_api, "daily_figures", held)
    client = _client(store)
    first: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first.update(
            answer=client.get(
                "/v1/tenants/mallory/experiments/checkout/daily", headers=_headers("read-mallory")
            )
        )
    )
    thread.start()
    assert running.wait(10)
    try:
        again = client.get(
            "/v1/tenants/mallory/experiments/checkout/health", headers=_headers("read-mallory")
        )
        assert again.status_code == 429, again.text
        assert again.headers["Retry-After"] == "5" and "mallory" in again.json()["detail"]
        alice = client.get(
            "/v1/tenants/alice/experiments/checkout/health", headers=_headers("read-alice")
        )
        assert alice.status_code == 200, alice.text
    finally:
        release.set()
        thread.join(10)
    assert first["answer"].status_code == 200
    after = client.get(
        "/v1/tenants/mallory/experiments/checkout/health", headers=_headers("read-mallory")
    )
    assert after.status_code == 200  # the slot was given back


def test_one_replay_at_a_time_per_tenant(
    store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = replay_jobs.replay_metric

    def held(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(replay_jobs, "replay_metric", held)
    client = _client(store)
    alice_admin = _headers("admin-alice")
    body = {"metric": "aov", "experiment": "checkout"}
    try:
        first = client.post("/v1/tenants/alice/replays", json=body, headers=alice_admin)
        assert first.status_code == 202, first.text
        again = client.post("/v1/tenants/alice/replays", json=body, headers=alice_admin)
        assert again.status_code == 429, again.text
        assert first.json()["job_id"] in again.json()["detail"]
    finally:
        release.set()

    def ended(job: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while job["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
            path = f"/v1/tenants/alice/replays/{job['job_id']}"
            job = client.get(path, headers=alice_admin).json()
        return job

    assert ended(first.json())["status"] == "done"
    after = client.post("/v1/tenants/alice/replays", json=body, headers=alice_admin)
    assert after.status_code == 202, after.text
    assert ended(after.json())["status"] == "done"
