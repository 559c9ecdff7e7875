"""The running platform as ``liftstream up`` recorded it, and the operator's holds.

``PlatformState`` is what platform.json holds; ``running_platform`` reads it back if the
platform still runs and answers. ``webhook_secret`` is the operator's webhook signing
secret; ``hold_part``/``release_part``/``held_parts`` are the parts an operator asked the
supervisor to leave down (``liftstream hold``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftstream_cli.local_settings import read_platform_state
from liftstream_cli.results_api import ResultsApi
from services.settings import WEBHOOK_SECRET_ENV


@dataclass(frozen=True)
class PlatformState:
    """Where a running platform is; what platform.json holds."""

    bootstrap: str
    results_url: str
    namespace: str
    pids: dict[str, int]
    logs: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    control_url: str = ""
    #: The local tenant's admin key, for this machine's CLI.
    api_key: str = ""
    tenant: str = ""
    collector_url: str = ""
    #: Restarts per part since ``up`` started, and where the supervisor serves Prometheus.
    restarts: dict[str, int] = field(default_factory=dict)
    metrics_url: str = ""
    #: The operator's token for the services' ``/metrics`` (``LIFTSTREAM_METRICS_TOKEN``).
    metrics_token: str = ""
    #: The rollout controller (``services.controller``).
    controller_url: str = ""
    #: The web dashboard (``services.dashboard``).
    dashboard_url: str = ""
    #: Local brokers ``up`` runs (0: the one ``LIFTSTREAM_BOOTSTRAP`` names), stream
    #: workers, and the event topics' partitions and replicas.
    brokers: int = 0
    workers: int = 1
    partitions: int = 0
    replication_factor: int = 1
    #: Each stream worker's ``/healthz``, ``/readyz`` and ``/metrics``, by part name.
    stream_urls: dict[str, str] = field(default_factory=dict)


def webhook_secret(home: Path) -> str:
    """The operator's webhook signing secret: ``LIFTSTREAM_WEBHOOK_SECRET``, else one made
    once and kept in ``home/webhook.secret`` (mode 0600), so tenants' secrets stay the same
    across restarts of the platform."""
    given = os.environ.get(WEBHOOK_SECRET_ENV)
    if given:
        return given
    path = home / "webhook.secret"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def running_platform() -> PlatformState | None:
    """The platform recorded in platform.json if its processes live and it answers."""
    state: dict[str, Any] = read_platform_state()
    try:
        recorded = PlatformState(
            bootstrap=str(state["bootstrap"]),
            results_url=str(state["results_url"]),
            namespace=str(state.get("namespace", "")),
            pids={str(name): int(pid) for name, pid in dict(state["pids"]).items()},
            logs=dict(state.get("logs", {})),
            started_at=str(state.get("started_at", "")),
            control_url=str(state.get("control_url", "")),
            api_key=str(state.get("api_key", "")),
            tenant=str(state.get("tenant", "")),
            collector_url=str(state.get("collector_url", "")),
            restarts={str(k): int(v) for k, v in dict(state.get("restarts", {})).items()},
            metrics_url=str(state.get("metrics_url", "")),
            metrics_token=str(state.get("metrics_token", "")),
            controller_url=str(state.get("controller_url", "")),
            dashboard_url=str(state.get("dashboard_url", "")),
            brokers=int(state.get("brokers", 0)),
            workers=int(state.get("workers", 1)),
            partitions=int(state.get("partitions", 0)),
            replication_factor=int(state.get("replication_factor", 1)),
            stream_urls={str(k): str(v) for k, v in dict(state.get("stream_urls", {})).items()},
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not recorded.results_url or not recorded.pids:
        return None
    # A part may be between two runs while the supervisor heals it: the supervisor's
    # life, and the results service answering, say whether the platform runs.
    supervisor = recorded.pids.get("supervisor")
    watched = [supervisor] if supervisor is not None else list(recorded.pids.values())
    if not all(alive(pid) for pid in watched):
        return None
    with ResultsApi(recorded.results_url, timeout_s=3.0) as api:
        return recorded if api.healthy() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holds_dir(home: Path) -> Path:
    return home / "holds"


def held_parts(home: Path) -> set[str]:
    """The parts an operator asked the supervisor to leave down (``liftstream hold``)."""
    try:
        return {path.name for path in _holds_dir(home).iterdir()}
    except FileNotFoundError:
        return set()


def hold_part(home: Path, part: str) -> None:
    _holds_dir(home).mkdir(parents=True, exist_ok=True)
    (_holds_dir(home) / part).touch()


def release_part(home: Path, part: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (_holds_dir(home) / part).unlink()
