"""Where the platform is: broker, namespace, data home and service URLs, from the environment.

The SDK reads these variables (the services read theirs through ``services.settings``, the
CLI through ``liftstream_cli.local_settings``, which also reads ``platform.json``):

- ``LIFTSTREAM_BOOTSTRAP``: Kafka bootstrap servers (``host:port``).
- ``LIFTSTREAM_NAMESPACE``: prefix of every topic and consumer group (``liftstream``).
- ``LIFTSTREAM_PARTITIONS``: partitions of the event topics when created (4; ``liftstream
  up --brokers 3`` makes 12).
- ``LIFTSTREAM_REPLICATION_FACTOR``: replicas of every topic when created (1; ``liftstream
  up --brokers 3`` makes 3).
- ``LIFTSTREAM_MIN_INSYNC_REPLICAS``: the topics' ``min.insync.replicas`` (0, the default:
  a majority of the replicas, 2 of 3).
- ``LIFTSTREAM_HOME``: data home (broker data, DuckDB file, state); ``~/.liftstream``.
- ``LIFTSTREAM_RESULTS_URL``: base URL of the results service.
- ``LIFTSTREAM_CONTROL_URL``: base URL of the control service.
- ``LIFTSTREAM_COLLECTOR_URL``: base URL of the HTTP collector (the SDK's ``delivery="http"``).
- ``LIFTSTREAM_API_KEY``: the API key sent to the services (``Authorization: Bearer``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemas.topics import TopicCatalog

DEFAULT_NAMESPACE = "liftstream"
DEFAULT_PARTITIONS = 4


def home_dir() -> Path:
    return Path(os.environ.get("LIFTSTREAM_HOME", Path.home() / ".liftstream")).expanduser()


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
    replication_factor: int = 1
    #: 0: a majority of the replicas.
    min_insync_replicas: int = 0

    @property
    def topics(self) -> TopicCatalog:
        return TopicCatalog(
            namespace=self.namespace,
            event_partitions=self.partitions,
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
        )

    @property
    def duckdb_path(self) -> Path:
        return self.home / f"{self.namespace}.duckdb"


def load_settings() -> Settings:
    """The settings in the environment (unset URLs and key are empty)."""
    env = os.environ
    return Settings(
        bootstrap=env.get("LIFTSTREAM_BOOTSTRAP", ""),
        namespace=env.get("LIFTSTREAM_NAMESPACE") or DEFAULT_NAMESPACE,
        partitions=int(env.get("LIFTSTREAM_PARTITIONS", DEFAULT_PARTITIONS)),
        home=home_dir(),
        results_url=env.get("LIFTSTREAM_RESULTS_URL", "").rstrip("/"),
        control_url=env.get("LIFTSTREAM_CONTROL_URL", "").rstrip("/"),
        api_key=env.get("LIFTSTREAM_API_KEY", ""),
        collector_url=env.get("LIFTSTREAM_COLLECTOR_URL", "").rstrip("/"),
        **replication_from_env(),
    )


def replication_from_env() -> dict[str, int]:
    """``replication_factor`` and ``min_insync_replicas`` from the environment."""
    return {
        "replication_factor": _whole_number("LIFTSTREAM_REPLICATION_FACTOR", 1),
        "min_insync_replicas": _whole_number("LIFTSTREAM_MIN_INSYNC_REPLICAS", 0),
    }


def _whole_number(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"{variable}: must be a whole number, got {raw!r}")
    return int(raw)
