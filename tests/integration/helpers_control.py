"""Helpers for tests that run the control service against the real broker.

- ``ControlService``: ``python -m services.control --port 0 --db PATH`` as a subprocess
  with the given environment; ``start`` waits until it prints its URL and answers
  ``/healthz``; ``stop`` sends SIGTERM (then SIGKILL) and returns the exit code.
- ``create_tenant``: write a tenant and one key per role straight to the control topic
  (what ``liftstream bootstrap-tenant`` does), returning role -> key.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from liftstream.api_keys import generate_key
from schemas.control import ApiKeyIssued, ApiKeyRevoked, ControlEvent, TenantCreated
from tests.integration.helpers_results import produce

REPO_ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"control service ready at (http://\S+)")


class ControlService:
    def __init__(self, db_path: Path, env: dict[str, str] | None = None) -> None:
        self.db_path = db_path
        self.log_path = db_path.with_name(f"{db_path.stem}-control.log")
        self.env = env
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ControlService:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.control", "--port", "0", "--db", str(self.db_path)],
            cwd=REPO_ROOT,
            env={**(self.env or os.environ), "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self.url:
            if self.process.poll() is not None:
                raise RuntimeError(f"control service exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"control service did not start:\n{self.log_tail()}")
            with self.log_path.open("rb") as log:
                log.seek(offset)
                match = _READY.search(log.read().decode(errors="replace"))
            if match:
                self.url = match.group(1)
            else:
                time.sleep(0.1)
        while httpx.get(f"{self.url}/healthz").status_code != httpx.codes.OK:
            if time.monotonic() > deadline:
                raise TimeoutError(f"control service is not healthy:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def request(
        self, method: str, path: str, key: str | None = None, json: Any = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.request(method, f"{self.url}{path}", json=json, headers=headers, timeout=20)

    def ok(self, method: str, path: str, key: str, json: Any = None) -> Any:
        response = self.request(method, path, key, json)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.url = ""
        return self.process.returncode

    def __enter__(self) -> ControlService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
