"""The collector's HTTP answers, with a fake sink and fake keys (the broker is in integration)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from schemas.deadletter import DeadLetter
from schemas.topics import TopicCatalog
from services.collector.api import create_app
from services.collector.config import CollectorConfig, Quota
from services.collector.sink import Record, RecordsRefused, SinkUnavailable, one_per_event
from services.control_domain.api_keys import KeyRecord
from services.http_auth import until_caught_up

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOPICS = TopicCatalog(namespace="unit")
KEYS = {
    "ingest-acme": KeyRecord("k1", "acme", "ingest", revoked=False, label=""),
    "admin-acme": KeyRecord("k2", "acme", "admin", revoked=False, label=""),
    "read-acme": KeyRecord("k3", "acme", "read", revoked=False, label=""),
    "revoked-acme": KeyRecord("k4", "acme", "ingest", revoked=True, label=""),
    "ingest-globex": KeyRecord("k5", "globex", "ingest", revoked=False, label=""),
}


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.down = False
        self.refuse = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_all(self, records: list[Record], timeout_s: float) -> None:
        if self.down:
            raise SinkUnavailable("the event store (Kafka) did not acknowledge this batch in time")
        if self.refuse:
            raise RecordsRefused(
                "the event store refused this batch's records (MSG_SIZE_TOO_LARGE)"
            )
        self.sent.extend(one_per_event(records))  # an event per record, however sent

    async def ready(self, timeout_s: float) -> str | None:
        return "down" if self.down else None

    def on(self, topic: str) -> list[Record]:
        return [record for record in self.sent if record[0] == topic]


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


METRICS_TOKEN = "operator-secret"


@pytest.fixture
def client(
    sink: FakeSink, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("LIFTSTREAM_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.setenv("LIFTSTREAM_METRICS_TENANT_LABELS", "1")
    config = CollectorConfig(
        max_body_bytes=20_000,
        max_events=5,
        max_event_bytes=2_000,
        tenant_quotas={"globex": Quota(rate_per_s=1, burst=3)},
    )
    app = create_app(
        config,
        KEYS.get,
        sink,
        TOPICS,
        variants_of=lambda tenant, key: {"control", "treatment"} if key == "checkout" else None,
        monotonic=clock,
        wall_clock=lambda: NOW,
    )
    with TestClient(app) as test_client:
        yield test_client


def scrape(client: TestClient) -> Any:
    return client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})


def post(client: TestClient, body: Any, key: str = "ingest-acme", **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, bytes):
        return client.post("/v1/events", content=body, headers=headers, **kwargs)
    return client.post("/v1/events", json=body, headers=headers, **kwargs)


def outcome(unit: str = "u1", **overrides: Any) -> dict[str, Any]:
    return {
        "type": "outcome",
        "unit_id": unit,
        "timestamp": NOW.isoformat(),
        "event": "purchase",
        **overrides,
    }


def exposure(experiment: str = "checkout", variant: str = "treatment") -> dict[str, Any]:
    return {
        "type": "exposure",
        "unit_id": "u1",
        "timestamp": NOW.isoformat(),
        "experiment_key": experiment,
        "variant_key": variant,
    }


def test_an_all_valid_batch_is_202_and_every_event_is_on_its_topic(
    client: TestClient, sink: FakeSink
) -> None:
    answer = post(client, {"events": [outcome(), exposure()]})
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 2, "rejected": 0, "errors": [], "flags": []}
    assert len(sink.on(TOPICS.outcomes)) == 1
    assert [key for _, key, _ in sink.on(TOPICS.exposures)] == [b"acme:u1"]


def test_a_partial_batch_is_207_with_per_event_errors_and_dead_letters(
    client: TestClient, sink: FakeSink
) -> None:
    answer = post(client, [outcome(), outcome(value="x"), "junk", outcome(tenant_id="globex")])
    assert answer.status_code == 207
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (1, 3)
    assert sorted({e["index"] for e in body["errors"]}) == [1, 2, 3]
    assert all(e["reason"] for e in body["errors"])
    letters = [DeadLetter.model_validate_json(value) for _, _, value in sink.on(TOPICS.deadletter)]
    assert len(letters) == 3
    assert {letter.stage for letter in letters} == {"collector"}
    assert any(e.field == "tenant_id" for letter in letters for e in letter.errors)
    assert {letter.tenant_id for letter in letters} == {"acme"}
    assert len(sink.on(TOPICS.outcomes)) == 1


def test_an_all_invalid_batch_is_422_and_everything_is_dead_lettered(
    client: TestClient, sink: FakeSink
) -> None:
    answer = post(client, [outcome(value="x")])
    assert answer.status_code == 422
    assert answer.json()["accepted"] == 0
    assert len(sink.on(TOPICS.deadletter)) == 1
    assert not sink.on(TOPICS.outcomes)


def test_unknown_experiments_and_variants_are_accepted_and_flagged(client: TestClient) -> None:
    answer = post(client, [exposure("nope"), exposure("checkout", "ghost"), exposure()])
    assert answer.status_code == 202
    flags = answer.json()["flags"]
    assert [(f["index"], f["field"]) for f in flags] == [(0, "experiment_key"), (1, "variant_key")]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"\xc3\x28", 400),
        (b"{", 400),
        (b'{"events": 1}', 400),
        (b"[]", 400),
        ([outcome(unit=f"u{i}") for i in range(6)], 413),
        (b"[" + b" " * 20_001 + b"]", 413),
    ],
)
def test_bodies_refused_whole_say_why(
    client: TestClient, sink: FakeSink, body: Any, status: int
) -> None:
    answer = post(client, body)
    assert answer.status_code == status
    assert answer.json()["detail"]
    assert sink.sent == []


@pytest.mark.parametrize(
    ("key", "status"),
    [("", 401), ("nobody", 401), ("revoked-acme", 401), ("read-acme", 403)],
)
def test_keys_without_ingest_rights_are_refused(client: TestClient, key: str, status: int) -> None:
    assert post(client, [outcome()], key=key).status_code == status


def test_an_admin_key_may_ingest(client: TestClient) -> None:
    assert post(client, [outcome()], key="admin-acme").status_code == 202


def test_the_ingest_route_is_documented_although_its_key_is_checked_without_dependencies(
    client: TestClient,
) -> None:
    documented = client.get("/openapi.json").json()["paths"]["/v1/events"]["post"]
    assert "202" in documented["responses"]
    assert client.get("/openapi.json").json()["paths"]["/v1/tenants/{tenant}/import"]


def test_a_tenant_over_quota_gets_429_with_retry_after_while_others_are_served(
    client: TestClient, clock: FakeClock, sink: FakeSink
) -> None:
    assert post(client, [outcome()] * 3, key="ingest-globex").status_code == 202
    throttled = post(client, [outcome()] * 2, key="ingest-globex")
    assert throttled.status_code == 429
    # The bucket is empty: refused before the body is read, told when one event passes.
    assert throttled.headers["Retry-After"] == "1"
    assert "quota" in throttled.json()["detail"]
    assert post(client, [outcome()] * 5).status_code == 202  # acme has its own bucket
    clock.now += 1
    still = post(client, [outcome()] * 2, key="ingest-globex")
    assert (still.status_code, still.headers["Retry-After"]) == (429, "1")
    clock.now += 1
    assert post(client, [outcome()] * 2, key="ingest-globex").status_code == 202
    assert len(sink.on(TOPICS.outcomes)) == 3 + 5 + 2
    metrics = scrape(client).text
    assert 'liftstream_collector_requests_throttled_total{tenant="globex"} 2.0' in metrics


def test_broker_down_is_503_and_nothing_is_acknowledged(client: TestClient, sink: FakeSink) -> None:
    sink.down = True
    answer = post(client, [outcome()])
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "retry" in answer.json()["detail"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    assert "liftstream_collector_events_accepted_total{" not in scrape(client).text
    sink.down = False
    assert client.get("/readyz").status_code == 200


def test_metrics_count_accepted_and_rejected_by_reason(client: TestClient) -> None:
    post(client, [outcome(), outcome(value="x"), outcome(tenant_id="globex")])
    post(client, b"{")
    metrics = scrape(client).text
    assert 'liftstream_collector_events_accepted_total{tenant="acme"} 1.0' in metrics
    assert 'liftstream_collector_events_rejected_total{reason="invalid"} 1.0' in metrics
    assert 'liftstream_collector_events_rejected_total{reason="tenant_mismatch"} 1.0' in metrics
    assert 'liftstream_collector_events_rejected_total{reason="body_not_json"} 1.0' in metrics
    assert "liftstream_collector_produce_seconds_count 1.0" in metrics


def test_a_batch_answered_503_takes_no_quota_so_its_retry_passes(
    client: TestClient, sink: FakeSink
) -> None:
    sink.down = True
    for _ in range(3):  # globex's burst is 3 events: without the refund the 2nd would be 429
        assert post(client, [outcome()] * 3, key="ingest-globex").status_code == 503
    sink.down = False
    assert post(client, [outcome()] * 3, key="ingest-globex").status_code == 202
    assert post(client, [outcome()], key="ingest-globex").status_code == 429


def test_a_tenant_with_an_empty_bucket_is_refused_before_its_body_is_read(
    client: TestClient, sink: FakeSink
) -> None:
    assert post(client, [outcome()] * 3, key="ingest-globex").status_code == 202
    # Not even JSON: a 400 if it were read, a 429 since it is not.
    throttled = post(client, b"not json at all", key="ingest-globex")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert len(sink.sent) == 3


def test_a_batch_larger_than_what_is_left_is_refused_after_counting_its_events(
    client: TestClient, clock: FakeClock
) -> None:
    assert post(client, [outcome()] * 2, key="ingest-globex").status_code == 202
    refused = post(client, [outcome()] * 3, key="ingest-globex")  # 1 token left, 3 needed
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "2")
    assert post(client, [outcome()], key="ingest-globex").status_code == 202  # took nothing


def test_unknown_key_is_a_retry_until_the_keys_are_read() -> None:
    """After a restart a valid key is only unknown because the control topic is not read
    to its end yet: 503 with Retry-After (which the SDK retries), then 401 once read."""
    caught_up = False
    lookup = until_caught_up(lambda secret: None, lambda: caught_up)
    with pytest.raises(HTTPException) as pending:
        lookup("lsk_anything")
    assert pending.value.status_code == 503
    assert pending.value.headers == {"Retry-After": "1"}
    caught_up = True
    assert lookup("lsk_anything") is None  # now a plain unknown key: KeyChecks says 401


def test_records_the_broker_refuses_for_their_content_are_that_requests_422_not_an_outage(
    client: TestClient, sink: FakeSink
) -> None:
    sink.refuse = True
    answer = post(client, [outcome()])
    assert answer.status_code == 422
    assert "MSG_SIZE_TOO_LARGE" in answer.json()["detail"]
    assert "Retry-After" not in answer.headers
    sink.refuse = False
    assert post(client, [outcome()]).status_code == 202
    assert 'reason="refused_by_broker"} 1.0' in scrape(client).text


def test_a_body_nested_10000_deep_is_a_400_and_a_deep_property_a_per_event_422(
    client: TestClient, sink: FakeSink
) -> None:
    assert post(client, b"[" * 10_000 + b"]" * 10_000).status_code == 400
    deep = "[" * 300 + "]" * 300
    body = f'[{{"type": "outcome", "unit_id": "u", "timestamp": "{NOW.isoformat()}", '
    body += f'"event": "e", "properties": {{"k": {deep}}}}}]'
    answer = post(client, body.encode())
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["properties"]
    assert len(sink.on(TOPICS.deadletter)) == 1


def test_an_import_takes_old_events_from_an_admin_key_and_says_what_it_took(
    client: TestClient, sink: FakeSink
) -> None:
    old = outcome(timestamp="2020-01-01T00:00:00+00:00")
    batch = [old, old, outcome(value="x"), outcome(tenant_id="globex")]
    assert post(client, [old]).json()["errors"][0]["field"] == "timestamp"  # live: too old
    headers = {"Authorization": "Bearer admin-acme"}
    answer = client.post("/v1/tenants/acme/import", json={"events": batch}, headers=headers)
    assert answer.status_code == 207
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert body["event_ids"][0] == body["event_ids"][1]  # the same event, the same id
    assert body["rejected_by_reason"] == {"invalid": 1, "tenant_mismatch": 1}
    assert len(sink.on(TOPICS.outcomes)) == 2 and len(sink.on(TOPICS.deadletter)) == 3
    for key, status in [("ingest-acme", 403), ("read-acme", 403), ("", 401)]:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        refused = client.post("/v1/tenants/acme/import", json=[old], headers=auth)
        assert refused.status_code == status
    other = client.post("/v1/tenants/globex/import", json=[old], headers=headers)
    assert other.status_code == 403
