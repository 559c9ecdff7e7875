"""What every HTTP service's ``main`` shares: its command-line options, logging, and a
uvicorn server that prints ``<name> ready at URL`` once it listens and stops on SIGTERM
or SIGINT (so the supervisor and the tests know where it is and can stop it cleanly)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import duckdb
import uvicorn

from liftstream.settings import Settings
from services.private_files import make_private

Store = TypeVar("Store")

_QUIET_LIBRARIES = ("kafka", "aiokafka")


def service_arguments(
    prog: str, description: str | None, default_port: int
) -> argparse.ArgumentParser:
    """``--host``, ``--port`` (0 takes a free port) and ``--log-level``; add more on the result."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0 takes a free port")
    parser.add_argument("--log-level", default="info")
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for library in _QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(max(logging.WARNING, logging.getLogger().level))


class AnnouncingServer(uvicorn.Server):
    """Prints ``<name> ready at URL`` once the socket listens (port 0 resolved)."""

    def __init__(self, config: uvicorn.Config, name: str) -> None:
        super().__init__(config)
        self.name = name

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"{self.name} ready at http://{host}:{port}", flush=True)


def announcing_server(app: Any, args: argparse.Namespace, name: str) -> AnnouncingServer:
    """A server for ``app`` on ``args.host:args.port`` that SIGTERM and SIGINT stop."""
    server = AnnouncingServer(
        uvicorn.Config(
            app, host=args.host, port=args.port, log_level=args.log_level, access_log=False
        ),
        name,
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # uvicorn handles these while it serves, then re-raises them to this handler.
        server.should_exit = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return server


def bootstrap_configured(settings: Settings) -> bool:
    """False (and says so on stderr) when no Kafka broker is known."""
    if not settings.bootstrap:
        print("LIFTSTREAM_BOOTSTRAP is not set and no platform is running", file=sys.stderr)
    return bool(settings.bootstrap)


def open_owned_file(open_store: Callable[[Path], Store], path: Path, service: str) -> Store | None:
    """Open the DuckDB file this service owns, private to this user (``make_private``);
    None (said on stderr) if another writer has it."""
    make_private(path)
    try:
        return open_store(path)
    except duckdb.IOException as error:
        print(
            f"cannot open {path} for writing: {error}\n(DuckDB allows one writing process "
            f"per file; is another {service} running on it?)",
            file=sys.stderr,
        )
        return None
