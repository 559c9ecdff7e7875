"""Run the results service: the loader thread and the API (uvicorn) in one process.

``python -m services.results [--host 127.0.0.1] [--port 8790] [--db PATH]``; ``--port 0``
takes a free port. Prints ``results service ready at URL`` once it answers. SIGTERM or
SIGINT stops the API, then the loader, then closes the DuckDB file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from analytics.store import AnalyticsStore
from analytics.store_migrations import StoreVersionError
from services.control_domain.api_keys import KeyRecord
from services.control_domain.control_log import ControlFollower
from services.http_auth import until_caught_up
from services.http_runner import (
    announcing_server,
    bootstrap_configured,
    configure_logging,
    open_owned_file,
    service_arguments,
)
from services.operator_metrics import follower_registry
from services.readiness import add_readiness_route
from services.results.api import create_app
from services.results.loader import Loader
from services.settings import ResultsSettings, load_or_exit

log = logging.getLogger("services.results")

DEFAULT_PORT = 8790


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = service_arguments("python -m services.results", __doc__, DEFAULT_PORT)
    parser.add_argument(
        "--db", type=Path, default=None, help="DuckDB file (default: the settings' duckdb_path)"
    )
    return parser.parse_args(argv)


def _loader_problem(loader: Loader) -> str | None:
    health = loader.health()
    if not health.running:
        return "the loader is not running"
    if health.error is not None:
        return "loading from Kafka fails; retrying"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.log_level)
    settings = load_or_exit(ResultsSettings, "results").platform
    if not bootstrap_configured(settings):
        return 2
    db_path: Path = args.db or settings.duckdb_path
    try:
        store = open_owned_file(AnalyticsStore, db_path, "results service")
    except StoreVersionError as error:
        print(f"cannot open {db_path}: {error}", file=sys.stderr)
        return 1
    if store is None:
        return 1
    loader = Loader(store, settings.bootstrap, settings.topics)
    # API keys come from the control topic, followed in memory (it is small).
    keys = ControlFollower(
        settings.bootstrap, settings.topics.control, f"{settings.namespace}-results-keys"
    )

    def lookup(secret_key: str) -> KeyRecord | None:
        with keys.lock:
            return keys.state.keys.authenticate(secret_key)

    checked = until_caught_up(lookup, lambda: keys.wait_until_caught_up(0))
    app = create_app(
        store, checked, loader.health, metrics_registry=follower_registry(keys, "results")
    )
    add_readiness_route(app, settings.bootstrap, lambda: _loader_problem(loader))
    server = announcing_server(app, args, "results service")
    log.info("results service: namespace %s, db %s", settings.namespace, db_path)
    keys.start()
    loader.start()
    try:
        server.run()
    finally:
        loader.stop()
        keys.stop()
        store.close()
        log.info("results service stopped")
    return 0
