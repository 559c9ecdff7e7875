"""Tenant isolation over every endpoint of the control and results services.

Two tenants share one platform (real broker, both services as processes). For every
tenant-scoped endpoint: a key of the other tenant gets 403 or 404; no key, a malformed
or unknown key and a revoked key get 401; a ``read`` key cannot change anything; and an
``ingest`` key gets its own tenant's config snapshot and nothing of the other tenant.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.topics import TopicCatalog
from services.broker.topics import end_offsets, ensure_topics
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_results import ResultsService
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

EXPERIMENT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
}
FLAG = {"key": "new-nav", "ramp": 10}
METRIC = {"name": "purchased", "event": "purchase", "type": "conversion"}
#: A rollout plan driving the experiment.
PLAN = {
    "key": "new-checkout",
    "target": {"experiment": "checkout", "variant": "treatment"},
    "steps": [{"percent": 1}, {"percent": 5, "approval": True}],
    "guardrails": [{"metric": "purchased", "direction": "increase"}],
}


@dataclass(frozen=True)
class Platform:
    control: ControlService
    results: ResultsService
    keys: dict[str, dict[str, str]]  # tenant -> role -> key


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("isolation")
    topics = TopicCatalog(namespace=namespace, event_partitions=2)
    ensure_topics(kafka_bootstrap, topics)
    keys = {
        tenant: create_tenant(kafka_bootstrap, topics.control, tenant, revoked_too=True)
        for tenant in ("alpha", "beta")
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LIFTSTREAM_BOOTSTRAP", kafka_bootstrap)
        env.setenv("LIFTSTREAM_NAMESPACE", namespace)
        env.setenv("LIFTSTREAM_PARTITIONS", "2")
        env.setenv("LIFTSTREAM_HOME", str(home))
        control = ControlService(home / "control.duckdb", dict(os.environ))
        results = ResultsService(
            home / "results.duckdb", api_key=keys["beta"]["read"], admin_key=keys["beta"]["admin"]
        )
        with control, results:
            for tenant in ("alpha", "beta"):
                admin = keys[tenant]["admin"]
                control.ok(
                    "POST", f"/v1/tenants/{tenant}/experiments", admin, {"experiment": EXPERIMENT}
                )
                control.ok("POST", f"/v1/tenants/{tenant}/flags", admin, {"flag": FLAG})
                control.ok("POST", f"/v1/tenants/{tenant}/metrics", admin, {"metric": METRIC})
                control.ok(
                    "PUT", f"/v1/tenants/{tenant}/rollouts/new-checkout", admin, {"plan": PLAN}
                )
            _wait_until_results_know(results, keys["beta"]["admin"])
            results.wait_until_loaded(end_offsets(kafka_bootstrap, [topics.control]))
            yield Platform(control, results, keys)


def _wait_until_results_know(results: ResultsService, key: str) -> None:
    wait_until(
        lambda: (
            httpx.get(
                f"{results.url}/v1/progress", headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 200
        ),
        timeout=30,
        what="the results service never learnt the keys",
    )


@dataclass(frozen=True)
class Endpoint:
    service: str  # "control" or "results"
    method: str
    path: str  # with {tenant}
    body: dict[str, Any] | None = None

    @property
    def changes(self) -> bool:
        return self.method != "GET"

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


_E = "/v1/tenants/{tenant}/experiments"
_F = "/v1/tenants/{tenant}/flags"
_M = "/v1/tenants/{tenant}/metrics"
_R = "/v1/tenants/{tenant}/rollouts"
ENDPOINTS = [
    Endpoint("control", "GET", "/v1/tenants/{tenant}"),
    Endpoint("control", "GET", "/v1/tenants/{tenant}/config"),
    Endpoint("control", "PUT", "/v1/tenants/{tenant}/holdout", {"percent": 5}),
    Endpoint("control", "GET", "/v1/tenants/{tenant}/keys"),
    Endpoint("control", "POST", "/v1/tenants/{tenant}/keys", {"role": "read"}),
    Endpoint("control", "POST", "/v1/tenants/{tenant}/keys/000000000000/revoke", {}),
    Endpoint("control", "GET", _E),
    Endpoint("control", "POST", _E, {"experiment": {**EXPERIMENT, "key": "other"}}),
    Endpoint("control", "GET", f"{_E}/checkout"),
    Endpoint("control", "PUT", f"{_E}/checkout", {"experiment": {**EXPERIMENT, "version": 2}}),
    Endpoint("control", "POST", f"{_E}/checkout/start", {}),
    Endpoint("control", "POST", f"{_E}/checkout/pause", {}),
    Endpoint("control", "POST", f"{_E}/checkout/conclude", {}),
    Endpoint("control", "POST", f"{_E}/checkout/ramp", {"traffic": 50}),
    Endpoint("control", "POST", f"{_E}/checkout/rollback", {"to_version": 1}),
    Endpoint("control", "POST", f"{_E}/checkout/kill", {}),
    Endpoint("control", "GET", f"{_E}/checkout/history"),
    Endpoint("control", "GET", _F),
    Endpoint("control", "POST", _F, {"flag": {**FLAG, "key": "other-flag"}}),
    Endpoint("control", "GET", f"{_F}/new-nav"),
    Endpoint("control", "PUT", f"{_F}/new-nav", {"flag": {**FLAG, "version": 2}}),
    Endpoint("control", "POST", f"{_F}/new-nav/ramp", {"ramp": 50}),
    Endpoint("control", "POST", f"{_F}/new-nav/kill", {}),
    Endpoint("control", "GET", f"{_F}/new-nav/history"),
    Endpoint("control", "GET", _M),
    Endpoint("control", "POST", _M, {"metric": {**METRIC, "name": "other-metric"}}),
    Endpoint("control", "GET", f"{_M}/purchased"),
    Endpoint("control", "PUT", f"{_M}/purchased", {"metric": {**METRIC, "role": "guardrail"}}),
    Endpoint("control", "GET", f"{_M}/purchased/history"),
    Endpoint("control", "GET", _R),
    Endpoint("control", "GET", f"{_R}/webhook-secret"),
    Endpoint("control", "PUT", f"{_R}/new-checkout", {"plan": {**PLAN, "version": 2}}),
    Endpoint("control", "GET", f"{_R}/new-checkout"),
    Endpoint("control", "GET", f"{_R}/new-checkout/decisions"),
    Endpoint("control", "POST", f"{_R}/new-checkout/approve", {}),
    Endpoint("control", "POST", f"{_R}/new-checkout/pause", {}),
    Endpoint("control", "POST", f"{_R}/new-checkout/resume", {}),
    Endpoint("control", "POST", f"{_R}/new-checkout/abort", {}),
    Endpoint("results", "GET", _E),
    Endpoint("results", "GET", f"{_E}/checkout"),
    Endpoint("results", "GET", f"{_E}/checkout/results"),
]


def _call(platform: Platform, endpoint: Endpoint, tenant: str, key: str | None) -> httpx.Response:
    base = platform.control.url if endpoint.service == "control" else platform.results.url
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.request(
        endpoint.method,
        base + endpoint.path.format(tenant=tenant),
        json=endpoint.body,
        headers=headers,
        timeout=20,
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("role", ["admin", "read", "ingest"])
def test_a_key_of_another_tenant_is_refused(
    platform: Platform, endpoint: Endpoint, role: str
) -> None:
    response = _call(platform, endpoint, "beta", platform.keys["alpha"][role])
    assert response.status_code in (403, 404), response.text
    assert "variants" not in response.text and "key_id" not in response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("case", ["no key", "malformed key", "unknown key", "revoked key"])
def test_no_wrong_or_revoked_key_gets_401(
    platform: Platform, endpoint: Endpoint, case: str
) -> None:
    key = {
        "no key": None,
        "malformed key": "let-me-in",
        "unknown key": "lsk_0123456789ab_notarealsecretatallnotarealsecret",
        "revoked key": platform.keys["beta"]["revoked"],
    }[case]
    response = _call(platform, endpoint, "beta", key)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.changes], ids=str)
def test_a_read_key_cannot_change_anything(platform: Platform, endpoint: Endpoint) -> None:
    before = platform.control.ok("GET", "/v1/config", platform.keys["beta"]["read"])
    response = _call(platform, endpoint, "beta", platform.keys["beta"]["read"])
    assert response.status_code == 403, response.text
    assert "role read" in response.json()["detail"]
    assert platform.control.ok("GET", "/v1/config", platform.keys["beta"]["read"]) == before


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if not e.changes], ids=str)
def test_a_read_key_reads_its_own_tenant(platform: Platform, endpoint: Endpoint) -> None:
    response = _call(platform, endpoint, "beta", platform.keys["beta"]["read"])
    if endpoint.path.endswith(("/keys", "/webhook-secret")):
        assert response.status_code == 403  # listing keys, a signing secret: for admins
    else:
        assert response.status_code == 200, response.text


def test_an_ingest_key_gets_only_its_own_tenants_config(platform: Platform) -> None:
    alpha = platform.control.request("GET", "/v1/config", platform.keys["alpha"]["ingest"])
    assert alpha.status_code == 200
    snapshot = alpha.json()
    assert snapshot["tenant_id"] == "alpha"
    assert [e["experiment"]["key"] for e in snapshot["experiments"]] == ["checkout"]
    assert "beta" not in alpha.text
    # An ingest key reads no experiment or result directly.
    for endpoint in (ENDPOINTS[6], ENDPOINTS[-1]):
        assert (
            _call(platform, endpoint, "alpha", platform.keys["alpha"]["ingest"]).status_code == 403
        )


def test_the_openapi_documents_are_served(platform: Platform) -> None:
    assert httpx.get(f"{platform.control.url}/openapi.json").json()["info"]["title"] == (
        "liftstream control"
    )
    assert Path(platform.control.db_path).exists()


def test_the_matrix_covers_every_tenant_scoped_control_endpoint(platform: Platform) -> None:
    documented = httpx.get(f"{platform.control.url}/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in documented.items()
        if path.startswith("/v1/tenants/{tenant}")
        for method in operations
    }
    covered = {
        (
            e.method,
            e.path.replace("new-checkout", "{key}")
            .replace("checkout", "{key}")
            .replace("new-nav", "{key}"),
        )
        for e in ENDPOINTS
        if e.service == "control"
    }
    covered = {
        (method, path.replace("/purchased", "/{name}").replace("/000000000000/", "/{key_id}/"))
        for method, path in covered
    }
    assert routes - covered == set()
