"""Metric definitions through the control API: versions, refusals naming the field, history.

The API runs on an in-memory backend (each event applied to the projection as it is
published), so every answer is checked without Kafka; the log it kept is then replayed
into a fresh projection, which must hold the same metrics and history.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.control import ApiKeyIssued, TenantCreated
from schemas.limits import CONTROL_WRITE_BURST
from services.control.api import create_app
from services.control_domain.api_keys import generate_key
from services.control_domain.control_state import ControlState
from tests.unit.control_memory import MemoryBackend, call

PURCHASED = {"name": "purchased", "event": "purchase", "type": "conversion"}
BASE = "/v1/tenants/acme/metrics"


def test_a_metric_is_created_updated_as_new_versions_listed_and_its_history_shown(
    control_api: tuple[MemoryBackend, TestClient, dict[str, str]],
) -> None:
    backend, client, headers = control_api
    created = call(client, headers, "POST", BASE, {"metric": PURCHASED, "reason": "new"})
    assert created.status_code == 201, created.text
    assert created.json()["metric"]["version"] == 1

    same = call(client, headers, "PUT", f"{BASE}/purchased", {"metric": PURCHASED})
    assert same.status_code == 200 and same.json()["changed"] is False

    guardrail = {**PURCHASED, "role": "guardrail", "direction": "decrease"}
    updated = call(
        client, headers, "PUT", f"{BASE}/purchased", {"metric": guardrail, "reason": "g"}
    )
    assert updated.json()["changed"] is True
    assert updated.json()["metric"]["version"] == 2
    assert updated.json()["metric"]["versions"] == [1, 2]

    listed = client.get(BASE, headers={"Authorization": headers["read"]}).json()
    assert [(m["name"], m["version"], m["metric"]["role"]) for m in listed] == [
        ("purchased", 2, "guardrail")
    ]
    history = client.get(f"{BASE}/purchased/history", headers={"Authorization": headers["read"]})
    entries = history.json()
    assert [(e["version"], e["reason"]) for e in entries] == [(1, "new"), (2, "g")]
    assert {"field": "role", "before": "primary", "after": "guardrail"} in entries[1]["diff"]

    # The metric's events, replayed into a fresh projection, give the same state.
    replayed = ControlState()
    for offset, event in enumerate(backend.events):
        replayed.apply(offset, event)
    assert replayed.tenants["acme"].metrics == backend.state.tenants["acme"].metrics
    assert replayed.tenants["acme"].metric_history == backend.state.tenants["acme"].metric_history
    # Metrics are not served to SDKs: defining one leaves the config revision alone.
    assert backend.state.tenants["acme"].revision == -1


def test_a_metric_shares_no_history_with_an_experiment_of_the_same_name(
    control_api: tuple[MemoryBackend, TestClient, dict[str, str]],
) -> None:
    _, client, headers = control_api
    experiment = {
        "key": "purchased",
        "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        "metrics": [PURCHASED],
    }
    assert (
        call(
            client, headers, "POST", "/v1/tenants/acme/experiments", {"experiment": experiment}
        ).status_code
        == 201
    )
    call(client, headers, "POST", BASE, {"metric": PURCHASED})
    history = call(client, headers, "GET", f"{BASE}/purchased/history").json()
    assert [e["type"] for e in history] == ["metric_defined"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field", "reason"),
    [
        ("POST", BASE, {"metric": PURCHASED}, 409, "name", "already exists"),
        ("POST", BASE, {"metric": {**PURCHASED, "type": "median"}}, 422, "metric.type", ""),
        ("POST", BASE, {"metric": {**PURCHASED, "event": ""}}, 422, "metric.event", ""),
        ("PUT", f"{BASE}/other", {"metric": PURCHASED}, 422, "metric.name", "differs"),
        ("GET", f"{BASE}/missing", None, 404, "name", "no metric 'missing'"),
        ("GET", f"{BASE}/missing/history", None, 404, "name", "no metric 'missing'"),
    ],
)
def test_a_bad_metric_request_is_refused_naming_the_field_and_reason(
    control_api: tuple[MemoryBackend, TestClient, dict[str, str]],
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str,
    reason: str,
) -> None:
    backend, client, headers = control_api
    call(client, headers, "POST", BASE, {"metric": PURCHASED})
    events_before = len(backend.events)
    response = call(client, headers, method, path, body)
    assert response.status_code == status, response.text
    [problem] = response.json()["errors"]
    assert problem["field"] == field and reason in problem["reason"]
    assert len(backend.events) == events_before
    # The good definition beside the refused request is intact.
    assert call(client, headers, "GET", f"{BASE}/purchased").json()["metric"] == {
        **PURCHASED,
        "role": "primary",
        "direction": "increase",
        **dict.fromkeys(("numerator", "denominator", "cap", "window_hours", "cuped_lookback_days")),
    }


def test_a_read_key_cannot_define_metrics(
    control_api: tuple[MemoryBackend, TestClient, dict[str, str]],
) -> None:
    backend, client, headers = control_api
    response = client.post(
        BASE, json={"metric": PURCHASED}, headers={"Authorization": headers["read"]}
    )
    assert response.status_code == 403
    assert "purchased" not in backend.state.tenants["acme"].metrics


def test_a_tenant_over_its_write_quota_gets_429_and_no_one_else_does(
    control_api: tuple[MemoryBackend, TestClient, dict[str, str]],
) -> None:
    backend, _client, headers = control_api
    now = [0.0]
    client = TestClient(create_app(backend, clock=lambda: now[0]))
    other = generate_key()
    backend.publish(TenantCreated(tenant_id="globex", author="operator"))
    backend.publish(
        ApiKeyIssued(
            tenant_id="globex",
            author="operator",
            key_id=other.key_id,
            key_hash=other.key_hash,
            role="admin",
        )
    )
    path = "/v1/tenants/acme/holdout"
    statuses = [
        call(client, headers, "PUT", path, {"percent": n % 7}).status_code
        for n in range(CONTROL_WRITE_BURST + 1)
    ]
    assert statuses == [200] * CONTROL_WRITE_BURST + [429]
    refused = call(client, headers, "PUT", path, {"percent": 3})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "over its quota" in refused.json()["detail"]
    globex = client.put(
        "/v1/tenants/globex/holdout",
        json={"percent": 1},
        headers={"Authorization": f"Bearer {other.secret_key}"},
    )
    assert globex.status_code == 200, globex.text
    now[0] += 1.0  # two changes' worth of tokens back
    assert call(client, headers, "PUT", path, {"percent": 4}).status_code == 200
    # Reads are not writes: never throttled.
    assert (
        client.get("/v1/tenants/acme", headers={"Authorization": headers["read"]}).status_code
        == 200
    )
