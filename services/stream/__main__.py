"""``python -m services.stream``: run one stream worker until SIGTERM or SIGINT.

Settings come from the environment (``services.settings.StreamSettings``: the platform's
variables plus ``LIFTSTREAM_STREAM_PUBLISH_INTERVAL``, ``..._SNAPSHOT_INTERVAL``,
``..._ENGINE``, ``aiokafka`` or ``faust``, and ``LIFTSTREAM_LOG_LEVEL``); a malformed one
exits with status 2 naming it.

Logs go to stderr. Start more workers with the same settings to share the partitions.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from services.settings import StreamSettings, load
from services.stream.worker import StreamWorker


def main() -> int:
    try:
        settings = load(StreamSettings)
    except ValueError as error:
        print(f"liftstream stream: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.engine == "faust":
        from services.stream.faust_worker import run  # faust only where it is asked for

        return run(
            settings.platform,
            publish_interval=settings.publish_interval,
            snapshot_interval=settings.snapshot_interval,
        )
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
        uvloop.run(_run(worker))
    except RuntimeError:
        logging.getLogger(__name__).exception("stream worker failed")
        return 1
    return 0


async def _run(worker: StreamWorker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logging.getLogger(__name__).info(
        "stream worker of group %s starting on %s", worker.group_id, worker.settings.bootstrap
    )
    await worker.run(stop)
    logging.getLogger(__name__).info("stream worker stopped")


if __name__ == "__main__":
    sys.exit(main())
