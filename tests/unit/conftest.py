"""Fixtures shared by the unit tests: the control API on an in-memory backend, and a
canned results service for the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from schemas.control import ApiKeyIssued, TenantCreated
from services.control.api import create_app
from services.control_domain.api_keys import generate_key
from tests.unit.canned_results import ABSOLUTE, DAILY, SCORECARD, CannedResults
from tests.unit.control_memory import MemoryBackend


@pytest.fixture
def control_api() -> tuple[MemoryBackend, TestClient, dict[str, str]]:
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
        headers[role] = f"Bearer {key.secret_key}"
    return backend, TestClient(create_app(backend)), headers


@pytest.fixture
def results_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    CannedResults.routes = {
        "/v1/tenants/acme/experiments/checkout-button/results?scale=relative": (
            200,
            SCORECARD.model_dump(mode="json"),
        ),
        "/v1/tenants/acme/experiments/checkout-button/results?scale=absolute": (
            200,
            ABSOLUTE.model_dump(mode="json"),
        ),
        "/v1/tenants/acme/experiments/checkout-button/daily": (
            200,
            DAILY.model_dump(mode="json"),
        ),
        "/v1/tenants/acme/experiments/broken/results?scale=relative": (
            500,
            {"detail": "database is locked"},
        ),
        "/v1/tenants/acme/experiments/unknown/results?scale=relative": (
            404,
            {"detail": "experiment not found"},
        ),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), CannedResults)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("LIFTSTREAM_RESULTS_URL", url)
    monkeypatch.setenv("LIFTSTREAM_TENANT", "acme")
    yield url
    server.shutdown()
    server.server_close()
    thread.join()
