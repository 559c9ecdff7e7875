"""Where the platform is: broker, namespace, data home and service URLs, from the environment.

Every process (SDK, CLI, services, tests) reads the same variables:

- ``LIFTSTREAM_BOOTSTRAP``: Kafka bootstrap servers (``host:port``).
- ``LIFTSTREAM_NAMESPACE``: prefix of every topic and consumer group (``liftstream``).
- ``LIFTSTREAM_PARTITIONS``: partitions of the event topics when created (4).
- ``LIFTSTREAM_HOME``: data home (broker data, DuckDB file, state); ``~/.liftstream``.
- ``LIFTSTREAM_RESULTS_URL``: base URL of the results service.
- ``LIFTSTREAM_CONTROL_URL``: base URL of the control service.
- ``LIFTSTREAM_COLLECTOR_URL``: base URL of the HTTP collector (the SDK's ``delivery="http"``).
- ``LIFTSTREAM_API_KEY``: the API key the CLI sends (``Authorization: Bearer``).
- ``LIFTSTREAM_TENANT``: the tenant the CLI acts for by default (``demo``).
- ``LIFTSTREAM_METRICS_TOKEN``: the operator's token for the services' ``/metrics``
  (``liftstream up`` makes one when unset and records it in platform.json).

When the bootstrap, namespace, URL or API key variable is unset, the value of the platform
``liftstream up`` runs is read from ``$LIFTSTREAM_HOME/platform.json`` (its API key is
the local ``demo`` tenant's admin key).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from schemas.topics import TopicCatalog

DEFAULT_NAMESPACE = "liftstream"
DEFAULT_PARTITIONS = 4
DEFAULT_TENANT = "demo"
#: The operator's token for every service's ``/metrics`` (``services.operator_metrics``).
METRICS_TOKEN_ENV = "LIFTSTREAM_METRICS_TOKEN"


def home_dir() -> Path:
    return Path(os.environ.get("LIFTSTREAM_HOME", Path.home() / ".liftstream")).expanduser()


def default_tenant() -> str:
    return os.environ.get("LIFTSTREAM_TENANT") or DEFAULT_TENANT


def platform_state_file() -> Path:
    return home_dir() / "platform.json"


def read_platform_state() -> dict[str, object]:
    """The running platform's ports and pids as ``liftstream up`` recorded them, or {}."""
    try:
        state = json.loads(platform_state_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


@dataclass(frozen=True)
class Settings:
    bootstrap: str
    namespace: str
    partitions: int
    home: Path
    results_url: str
    control_url: str = ""
    api_key: str = ""
    collector_url: str = ""

    @property
    def topics(self) -> TopicCatalog:
        return TopicCatalog(namespace=self.namespace, event_partitions=self.partitions)

    @property
    def duckdb_path(self) -> Path:
        return self.home / f"{self.namespace}.duckdb"


def load_settings() -> Settings:
    state = read_platform_state()
    return Settings(
        bootstrap=os.environ.get("LIFTSTREAM_BOOTSTRAP") or str(state.get("bootstrap", "")),
        namespace=(
            os.environ.get("LIFTSTREAM_NAMESPACE")
            or str(state.get("namespace") or DEFAULT_NAMESPACE)
        ),
        partitions=int(os.environ.get("LIFTSTREAM_PARTITIONS", DEFAULT_PARTITIONS)),
        home=home_dir(),
        results_url=(
            os.environ.get("LIFTSTREAM_RESULTS_URL") or str(state.get("results_url", ""))
        ).rstrip("/"),
        control_url=(
            os.environ.get("LIFTSTREAM_CONTROL_URL") or str(state.get("control_url", ""))
        ).rstrip("/"),
        api_key=os.environ.get("LIFTSTREAM_API_KEY") or str(state.get("api_key", "")),
        collector_url=(
            os.environ.get("LIFTSTREAM_COLLECTOR_URL") or str(state.get("collector_url", ""))
        ).rstrip("/"),
    )
