"""``python -m services.stream``: run one stream worker until SIGTERM or SIGINT.

Settings come from the environment (``services.settings.StreamSettings``: the platform's
variables plus ``LIFTSTREAM_STREAM_PUBLISH_INTERVAL``, ``..._SNAPSHOT_INTERVAL``,
``..._ENGINE``, ``faust`` (the default, ``faust_worker``) or ``aiokafka`` (the fallback,
``worker``), and ``LIFTSTREAM_LOG_LEVEL``); a malformed one exits with status 2 naming it.

``--web-port N`` overrides ``LIFTSTREAM_STREAM_WEB_PORT`` (the supervisor gives each of
several workers 0, a free port, and the same one again when it restarts one). Both
engines serve ``/healthz``, ``/readyz`` and ``/metrics`` there (``health``) and print
``stream worker ready at URL`` once it listens.

Logs go to stderr. Start more workers with the same settings to share the partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import uvloop

from services.settings import PREFIX, StreamSettings, load
from services.stream.health import serve
from services.stream.worker import StreamWorker


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stream", description=__doc__)
    parser.add_argument(
        "--web-port",
        type=int,
        help="port of /healthz, /readyz and /metrics (0 takes a free one); overrides "
        "LIFTSTREAM_STREAM_WEB_PORT",
    )
    args = parser.parse_args(argv)
    try:
        settings = load(StreamSettings)
        if args.web_port is not None:
            settings = load(
                StreamSettings, {**os.environ, f"{PREFIX}STREAM_WEB_PORT": str(args.web_port)}
            )
    except ValueError as error:
        print(f"liftstream stream: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.engine == "faust":
        return _run_faust(settings)
    try:
        worker = StreamWorker(
            settings.platform,
            publish_interval=settings.publish_interval,
            snapshot_interval=settings.snapshot_interval,
        )
    except ValueError as error:
        print(f"liftstream stream: {error}", file=sys.stderr)
        return 2
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        uvloop.run(_run(worker, settings))
    except RuntimeError:
        logging.getLogger(__name__).exception("stream worker failed")
        return 1
    return 0


def _run_faust(settings: StreamSettings) -> int:
    from services.stream.faust_worker import FaustStreamWorker, run  # the fallback skips it

    try:
        worker = FaustStreamWorker(
            settings.platform,
            web_host=settings.web_host,
            web_port=settings.web_port,
            publish_interval=settings.publish_interval,
            snapshot_interval=settings.snapshot_interval,
        )
    except ValueError as error:
        print(f"liftstream stream: {error}", file=sys.stderr)
        return 2
    return run(worker)


async def _run(worker: StreamWorker, settings: StreamSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logging.getLogger(__name__).info(
        "stream worker of group %s starting on %s", worker.group_id, worker.settings.bootstrap
    )
    web = await serve(worker, settings.web_host, settings.web_port)
    try:
        await worker.run(stop)
    finally:
        await web.cleanup()
    logging.getLogger(__name__).info("stream worker stopped")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
