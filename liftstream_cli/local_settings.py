"""The CLI's settings: the environment first, then the platform ``liftstream up`` runs.

The CLI reads the variables of ``liftstream.settings`` and, for each of the bootstrap,
namespace, service URLs and API key that is unset, the value recorded in
``$LIFTSTREAM_HOME/platform.json`` by ``liftstream up`` (its API key is the local ``demo``
tenant's admin key). Only the CLI reads that file: the SDK and the services take their
settings from the environment alone. ``LIFTSTREAM_TENANT`` is the tenant the CLI acts for
by default (``demo``). CLI modules take ``Settings`` from here too (an import-linter
contract keeps them off ``liftstream.settings``, whose ``load_settings`` skips platform.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from liftstream.settings import (
    DEFAULT_NAMESPACE,
    DEFAULT_PARTITIONS,
    Settings,
    home_dir,
    replication_from_env,
)

__all__ = [
    "DEFAULT_TENANT",
    "Settings",
    "default_tenant",
    "load_settings",
    "platform_state_file",
    "read_platform_state",
]

DEFAULT_TENANT = "demo"


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


def load_settings() -> Settings:
    """The environment's settings, with platform.json filling what it leaves unset."""
    state = read_platform_state()

    def value(variable: str, key: str, default: str = "") -> str:
        return os.environ.get(variable) or str(state.get(key) or default)

    return Settings(
        bootstrap=value("LIFTSTREAM_BOOTSTRAP", "bootstrap"),
        namespace=value("LIFTSTREAM_NAMESPACE", "namespace", DEFAULT_NAMESPACE),
        partitions=int(os.environ.get("LIFTSTREAM_PARTITIONS", DEFAULT_PARTITIONS)),
        home=home_dir(),
        results_url=value("LIFTSTREAM_RESULTS_URL", "results_url").rstrip("/"),
        control_url=value("LIFTSTREAM_CONTROL_URL", "control_url").rstrip("/"),
        api_key=value("LIFTSTREAM_API_KEY", "api_key"),
        collector_url=value("LIFTSTREAM_COLLECTOR_URL", "collector_url").rstrip("/"),
        **replication_from_env(),
    )
