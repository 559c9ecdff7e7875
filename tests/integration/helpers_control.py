"""Helpers for tests that run the control service against the real broker.

- ``ControlService``: ``python -m services.control --port 0 --db PATH`` as a subprocess
  with the given environment; ``start`` waits until it prints its URL and answers
  ``/healthz``; ``stop`` sends SIGTERM (then SIGKILL) and returns the exit code.
- ``create_tenant``: write a tenant and one key per role straight to the control topic
  (what ``liftstream bootstrap-tenant`` does), returning role -> key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from schemas.control import ApiKeyIssued, ApiKeyRevoked, ControlEvent, TenantCreated
from services.control_domain.api_keys import generate_key
from tests.integration.helpers_results import produce
from tests.integration.helpers_services import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


class ControlService(ServiceProcess):
    def __init__(self, db_path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(
            "services.control",
            "control service",
            ["--db", str(db_path)],
            db_path.with_name(f"{db_path.stem}-control.log"),
            env,
        )
        self.db_path = db_path

    def request(
        self, method: str, path: str, key: str | None = None, json: Any = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.request(method, f"{self.url}{path}", json=json, headers=headers, timeout=20)

    def ok(self, method: str, path: str, key: str, json: Any = None) -> Any:
        response = self.request(method, path, key, json)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


def create_tenant(
    bootstrap: str, control_topic: str, tenant: str, revoked_too: bool = False
) -> dict[str, str]:
    """Create ``tenant`` with an admin, ingest and read key (and a revoked admin key)."""
    keys: dict[str, str] = {}
    events: list[ControlEvent] = [TenantCreated(tenant_id=tenant, author="operator")]
    for role in ("admin", "ingest", "read", *(("revoked",) if revoked_too else ())):
        key = generate_key()
        keys[role] = key.secret_key
        events.append(
            ApiKeyIssued(
                tenant_id=tenant,
                author="operator",
                key_id=key.key_id,
                key_hash=key.key_hash,
                role="admin" if role == "revoked" else role,  # type: ignore[arg-type]
            )
        )
        if role == "revoked":
            events.append(ApiKeyRevoked(tenant_id=tenant, author="operator", key_id=key.key_id))
    produce(
        bootstrap, control_topic, [(e.partition_key, e.model_dump_json().encode()) for e in events]
    )
    return keys
