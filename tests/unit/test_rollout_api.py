"""Rollouts through the control API (in-memory backend): apply, read, the decision trail,
people's commands, refusals naming the field, and the webhook secret."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.control import ApiKeyIssued, TenantCreated
from schemas.rollout import ArmInput, CheckInputs
from services.control.api import create_app
from services.control_domain.api_keys import generate_key
from services.controller.checks import decision_event, due_checks
from services.webhook_signing import SECRET_ENV, tenant_secret
from tests.unit.control_memory import MemoryBackend

EXPERIMENT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "candidate", "weight": 50}],
    "metrics": [{"name": "errors", "event": "request_error", "type": "count"}],
    "status": "draft",
}
PLAN = {
    "key": "new-checkout",
    "target": {
        "experiment": "checkout",
        "variant": "candidate",
        "segment": {"attribute": "region", "op": "eq", "value": "eu"},
    },
    "steps": [{"percent": 1}, {"percent": 5, "approval": True}, {"percent": 25}],
    "guardrails": [{"metric": "errors", "direction": "decrease"}],
    "check_interval_s": 5,
}
BASE = "/v1/tenants/acme/rollouts"


@pytest.fixture
def api() -> tuple[MemoryBackend, TestClient, dict[str, dict[str, str]]]:
    backend = MemoryBackend()
    backend.publish(TenantCreated(tenant_id="acme", author="operator"))
    headers = {}
    for role in ("admin", "read"):
        key = generate_key()
        backend.publish(
            ApiKeyIssued(
                tenant_id="acme",
                author="operator",
                key_id=key.key_id,
                key_hash=key.key_hash,
                role=role,  # type: ignore[arg-type]
            )
        )
        headers[role] = {"Authorization": f"Bearer {key.secret_key}"}
    client = TestClient(create_app(backend))
    created = client.post(
        "/v1/tenants/acme/experiments", json={"experiment": EXPERIMENT}, headers=headers["admin"]
    )
    assert created.status_code == 201, created.text
    return backend, client, headers


def put_plan(client: TestClient, headers: dict[str, str], plan: dict[str, Any]) -> Any:
    return client.put(
        f"{BASE}/{plan['key']}", json={"plan": plan, "reason": "ship"}, headers=headers
    )


def test_a_plan_applied_starts_the_rollout_and_drives_its_experiment(api) -> None:  # type: ignore[no-untyped-def]
    _, client, headers = api
    applied = put_plan(client, headers["admin"], PLAN)
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["changed"] and body["type"] == "rollout_defined"
    assert body["rollout"]["status"] == "running"
    assert (body["rollout"]["step"], body["rollout"]["percent"]) == (1, 1)
    again = put_plan(client, headers["admin"], PLAN)
    assert again.json()["changed"] is False
    listed = client.get(BASE, headers=headers["read"]).json()
    assert [r["key"] for r in listed] == ["new-checkout"]
    experiment = client.get("/v1/tenants/acme/experiments/checkout", headers=headers["read"]).json()
    assert experiment["experiment"]["traffic"] == 1
    assert experiment["experiment"]["status"] == "running"
    assert experiment["experiment"]["targeting"]["value"] == "eu"


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"steps": [{"percent": 5}, {"percent": 1}]}, "plan.steps.1.percent", 422),
        (
            {"guardrails": [{"metric": "latency", "direction": "decrease"}]},
            "guardrails.0.metric",
            422,
        ),
        ({"target": {"experiment": "checkout", "variant": "control"}}, "target.variant", 422),
        ({"check_interval_s": 0.5}, "plan.check_interval_s", 422),
        ({"description": "x" * 5000}, "plan.description", 422),
    ],
)
def test_a_bad_plan_is_refused_naming_the_field(api, change, field, status) -> None:  # type: ignore[no-untyped-def]
    _, client, headers = api
    answer = put_plan(client, headers["admin"], {**PLAN, **change})
    assert answer.status_code == status, answer.text
    fields = [error["field"] for error in answer.json()["errors"]]
    assert any(f.startswith(field) for f in fields), fields


def test_the_path_must_name_the_plan_and_readers_cannot_apply(api) -> None:  # type: ignore[no-untyped-def]
    _, client, headers = api
    wrong = client.put(f"{BASE}/other", json={"plan": PLAN}, headers=headers["admin"])
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "plan.key"
    assert put_plan(client, headers["read"], PLAN).status_code == 403
    assert client.get(f"{BASE}/nope", headers=headers["read"]).status_code == 404


def test_decisions_and_commands_make_the_trail(api) -> None:  # type: ignore[no-untyped-def]
    backend, client, headers = api
    put_plan(client, headers["admin"], PLAN)
    assert client.get(f"{BASE}/new-checkout/decisions", headers=headers["read"]).json() == []
    with backend.lock:
        entry = backend.state.tenants["acme"].rollouts["new-checkout"]
        at = entry.started_at.replace(microsecond=0) + (
            datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC) - datetime(2026, 1, 1, tzinfo=UTC)
        )
        (due,) = due_checks(backend.state, at)
    backend.publish(
        decision_event(due, CheckInputs(as_of=at, control=ArmInput(), treatment=ArmInput()))
    )
    (decision,) = client.get(f"{BASE}/new-checkout/decisions", headers=headers["read"]).json()
    assert decision["decision"] == "hold"
    assert decision["author"] == "controller"
    assert decision["evidence"]["health"][0]["gate"] == "srm"
    approved = client.post(
        f"{BASE}/new-checkout/approve", json={"reason": "QA signed off"}, headers=headers["admin"]
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["rollout"]["approved_steps"] == [2]
    bad_step = client.post(
        f"{BASE}/new-checkout/approve", json={"step": 3}, headers=headers["admin"]
    )
    assert bad_step.status_code == 422 and bad_step.json()["errors"][0]["field"] == "step"
    client.post(f"{BASE}/new-checkout/pause", json={"reason": "freeze"}, headers=headers["admin"])
    assert client.get(f"{BASE}/new-checkout", headers=headers["read"]).json()["status"] == "paused"
    aborted = client.post(
        f"{BASE}/new-checkout/abort", json={"reason": "no"}, headers=headers["admin"]
    )
    state = aborted.json()["rollout"]
    assert state["status"] == "aborted" and state["percent"] == 0
    assert [c["type"] for c in state["changes"]] == [
        "rollout_defined",
        "rollout_approved",
        "rollout_paused",
        "rollout_aborted",
    ]
    assert (
        client.get(f"{BASE}/new-checkout/decisions?limit=0", headers=headers["read"]).status_code
        == 422
    )


def test_the_webhook_secret_is_derived_per_tenant(api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, client, headers = api
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert client.get(f"{BASE}/webhook-secret", headers=headers["admin"]).status_code == 503
    monkeypatch.setenv(SECRET_ENV, "operator-secret")
    answer = client.get(f"{BASE}/webhook-secret", headers=headers["admin"])
    assert answer.json()["secret"] == tenant_secret("operator-secret", "acme")
    assert client.get(f"{BASE}/webhook-secret", headers=headers["read"]).status_code == 403


def test_a_flag_plan_drives_the_flag_the_sdks_are_served(api) -> None:  # type: ignore[no-untyped-def]
    _, client, headers = api
    admin, read = headers["admin"], headers["read"]
    flag = {"key": "new-search"}
    assert client.post("/v1/tenants/acme/flags", json={"flag": flag}, headers=admin).is_success
    metric = {"name": "errors", "event": "request_error", "type": "count"}
    assert client.put(
        "/v1/tenants/acme/metrics/errors", json={"metric": metric}, headers=admin
    ).is_success
    plan = {**PLAN, "key": "new-search-rollout", "target": {"flag": "new-search"}}
    refused = put_plan(client, admin, {**plan, "steps": [{"percent": 1}, {"percent": 75}]})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["plan.steps.1.percent"]
    applied = put_plan(client, admin, plan)
    assert applied.status_code == 200, applied.text
    served = client.get("/v1/config", headers=read).json()["flags"]
    assert [(f["flag"]["ramp"], f["flag"]["holdback"], f["killed"]) for f in served] == [
        (1, 1, False)
    ]
    aborted = client.post(f"{BASE}/new-search-rollout/abort", json={"reason": "no"}, headers=admin)
    assert aborted.json()["rollout"]["status"] == "aborted"
    flag_state = client.get("/v1/tenants/acme/flags/new-search", headers=read).json()
    assert flag_state["killed"] is True
    history = client.get("/v1/tenants/acme/flags/new-search/history", headers=read).json()
    assert [entry["type"] for entry in history][-2:] == ["rollout_defined", "rollout_aborted"]
