"""Run the collector: the control-topic follower (keys, experiments) and the API on uvicorn.

``python -m services.collector [--host 127.0.0.1] [--port 8791]``; ``--port 0`` takes a
free port. Prints ``collector ready at URL`` once it listens. Limits and quotas come
from ``LIFTSTREAM_COLLECTOR_*`` (``services.collector.config``). SIGTERM or SIGINT stops
the API (in-flight requests finish), the producer, then the follower.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from liftstream.api_keys import KeyRecord
from liftstream.control_log import ControlFollower
from liftstream.settings import load_settings
from services.collector.api import create_app
from services.collector.config import load_config
from services.collector.sink import KafkaSink

log = logging.getLogger("services.collector")

DEFAULT_PORT = 8791


class _AnnouncingServer(uvicorn.Server):
    """Prints the URL once the socket listens (port 0 resolved to the real one)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"collector ready at http://{host}:{port}", flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.collector", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 takes a free port")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    settings = load_settings()
    if not settings.bootstrap:
        print("LIFTSTREAM_BOOTSTRAP is not set and no platform is running", file=sys.stderr)
        return 2
    try:
        config = load_config()
    except ValueError as error:
        print(f"invalid collector configuration: {error}", file=sys.stderr)
        return 2
    follower = ControlFollower(
        settings.bootstrap, settings.topics.control, f"{settings.namespace}-collector-control"
    )

    def lookup(secret_key: str) -> KeyRecord | None:
        with follower.lock:
            return follower.state.keys.authenticate(secret_key)

    def variants_of(tenant_id: str, experiment_key: str) -> set[str] | None:
        with follower.lock:
            tenant = follower.state.tenant(tenant_id)
            entry = tenant.experiments.get(experiment_key) if tenant else None
            return None if entry is None else {v.key for v in entry.experiment.variants}

    app = create_app(
        config, lookup, KafkaSink(settings.bootstrap), settings.topics, variants_of=variants_of
    )
    server = _AnnouncingServer(
        uvicorn.Config(
            app, host=args.host, port=args.port, log_level=args.log_level, access_log=False
        )
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("collector: namespace %s, broker %s", settings.namespace, settings.bootstrap)
    follower.start()
    try:
        server.run()
    finally:
        follower.stop()
        log.info("collector stopped")
    return 0
