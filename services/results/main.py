"""Run the results service: the loader thread and the API (uvicorn) in one process.

``python -m services.results [--host 127.0.0.1] [--port 8790] [--db PATH]``; ``--port 0``
takes a free port. Prints ``results service ready at URL`` once it answers. SIGTERM or
SIGINT stops the API, then the loader, then closes the DuckDB file.
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

from analytics.store import AnalyticsStore
from liftstream.api_keys import KeyRecord
from liftstream.control_log import ControlFollower
from liftstream.settings import load_settings
from services.results.api import create_app
from services.results.loader import Loader

log = logging.getLogger("services.results")

DEFAULT_PORT = 8790


class _AnnouncingServer(uvicorn.Server):
    """Prints the URL once the socket listens (port 0 resolved to the real one)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"results service ready at http://{host}:{port}", flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.results", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 takes a free port")
    parser.add_argument(
        "--db", type=Path, default=None, help="DuckDB file (default: the settings' duckdb_path)"
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
    db_path: Path = args.db or settings.duckdb_path
    try:
        store = AnalyticsStore(db_path)
    except duckdb.IOException as error:
        print(
            f"cannot open {db_path} for writing: {error}\n(DuckDB allows one writing process "
            "per file; is another results service running on it?)",
            file=sys.stderr,
        )
        return 1
    loader = Loader(store, settings.bootstrap, settings.topics)
    # API keys come from the control topic, followed in memory (it is small).
    keys = ControlFollower(
        settings.bootstrap, settings.topics.control, f"{settings.namespace}-results-keys"
    )

    def lookup(secret_key: str) -> KeyRecord | None:
        with keys.lock:
            return keys.state.keys.authenticate(secret_key)

    server = _AnnouncingServer(
        uvicorn.Config(
            create_app(store, lookup, loader.health),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
        )
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # uvicorn handles these while it serves, then re-raises them to this handler.
        server.should_exit = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
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
