"""Run the control service: follow the control topic, mirror it to DuckDB, serve the API.

``python -m services.control [--host 127.0.0.1] [--port 8791] [--db PATH]``; ``--port 0``
takes a free port; the file defaults to ``$LIFTSTREAM_HOME/control.duckdb``. The
projection is rebuilt from the control topic at start-up; the service prints
``control service ready at URL`` once it listens and has read the log to its end.
SIGTERM or SIGINT stops the API, then the follower, then closes the file.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from kafka import KafkaProducer

from liftstream.errors import PlatformUnavailableError
from liftstream.producer import create_producer
from services.control.api import create_app
from services.control.backend import KafkaBackend
from services.control.store import ControlStore
from services.control_domain.control_log import ControlFollower
from services.http_runner import (
    announcing_server,
    bootstrap_configured,
    configure_logging,
    open_owned_file,
    service_arguments,
)
from services.kafka_outage import outage_tolerance_s
from services.operator_metrics import follower_registry
from services.readiness import add_readiness_route
from services.settings import ControlSettings, load_or_exit

log = logging.getLogger("services.control")

DEFAULT_PORT = 8791
CATCH_UP_TIMEOUT_S = 120.0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = service_arguments("python -m services.control", __doc__, DEFAULT_PORT)
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="DuckDB file (default: $LIFTSTREAM_HOME/control.duckdb)",
    )
    return parser.parse_args(argv)


def _producer_when_kafka_answers(bootstrap: str) -> KafkaProducer | None:
    """The control topic's producer, retried while the broker is away (a control service
    started during an outage waits for it), or None after the tolerated outage."""
    deadline = time.monotonic() + outage_tolerance_s()
    while True:
        try:
            return create_producer(bootstrap, client_id="liftstream-control", linger_ms=0)
        except PlatformUnavailableError as error:
            if time.monotonic() > deadline:
                print(str(error), file=sys.stderr)
                return None
            log.warning("Kafka does not answer yet; retrying: %s", error)
            time.sleep(2.0)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.log_level)
    settings = load_or_exit(ControlSettings, "control").platform
    if not bootstrap_configured(settings):
        return 2
    db_path: Path = args.db or settings.home / "control.duckdb"
    store = open_owned_file(ControlStore, db_path, "control service")
    if store is None:
        return 1
    producer = _producer_when_kafka_answers(settings.bootstrap)
    if producer is None:
        store.close()
        return 1
    topic = settings.topics.control
    follower = ControlFollower(
        settings.bootstrap, topic, f"{settings.namespace}-control", on_applied=store.record
    )
    follower.start()
    log.info("control service: namespace %s, db %s; reading %s", settings.namespace, db_path, topic)
    if not follower.wait_until_caught_up(max(CATCH_UP_TIMEOUT_S, outage_tolerance_s())):
        log.error(
            "did not read %s to its end within %.0fs: %s", topic, CATCH_UP_TIMEOUT_S, follower.error
        )
        follower.stop()
        producer.close(timeout=5)
        store.close()
        return 1
    backend = KafkaBackend(follower, producer, topic)
    app = create_app(backend, follower_registry(follower, "control"))
    add_readiness_route(app, settings.bootstrap, backend.healthy)
    server = announcing_server(app, args, "control service")
    try:
        server.run()
    finally:
        follower.stop()
        producer.close(timeout=5)
        store.close()
        log.info("control service stopped")
    return 0
