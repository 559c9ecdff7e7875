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
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import duckdb
import uvicorn

from liftstream.control_log import ControlFollower
from liftstream.errors import PlatformUnavailableError
from liftstream.producer import create_producer
from liftstream.settings import load_settings
from services.control.api import create_app
from services.control.backend import KafkaBackend
from services.control.store import ControlStore

log = logging.getLogger("services.control")

DEFAULT_PORT = 8791
CATCH_UP_TIMEOUT_S = 120.0


class _AnnouncingServer(uvicorn.Server):
    """Prints the URL once the socket listens (port 0 resolved to the real one)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"control service ready at http://{host}:{port}", flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.control", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 takes a free port")
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="DuckDB file (default: $LIFTSTREAM_HOME/control.duckdb)",
    )
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    settings = load_settings()
    if not settings.bootstrap:
        print("LIFTSTREAM_BOOTSTRAP is not set and no platform is running", file=sys.stderr)
        return 2
    db_path: Path = args.db or settings.home / "control.duckdb"
    try:
        store = ControlStore(db_path)
    except duckdb.IOException as error:
        print(
            f"cannot open {db_path} for writing: {error}\n(DuckDB allows one writing process "
            "per file; is another control service running on it?)",
            file=sys.stderr,
        )
        return 1
    try:
        producer = create_producer(settings.bootstrap, client_id="liftstream-control", linger_ms=0)
    except PlatformUnavailableError as error:
        print(str(error), file=sys.stderr)
        store.close()
        return 1
    topic = settings.topics.control
    follower = ControlFollower(
        settings.bootstrap, topic, f"{settings.namespace}-control", on_applied=store.record
    )
    follower.start()
    log.info("control service: namespace %s, db %s; reading %s", settings.namespace, db_path, topic)
    if not follower.wait_until_caught_up(CATCH_UP_TIMEOUT_S):
        log.error(
            "did not read %s to its end within %.0fs: %s", topic, CATCH_UP_TIMEOUT_S, follower.error
        )
        follower.stop()
        producer.close(timeout=5)
        store.close()
        return 1
    server = _AnnouncingServer(
        uvicorn.Config(
            create_app(KafkaBackend(follower, producer, topic)),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
        )
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server.run()
    finally:
        follower.stop()
        producer.close(timeout=5)
        store.close()
        log.info("control service stopped")
    return 0
