"""``python -m services.stream``: run one stream worker until SIGTERM or SIGINT.

Settings come from the environment (``liftstream.settings.load_settings``), plus:

- ``LIFTSTREAM_STREAM_PUBLISH_INTERVAL``: seconds between aggregate publications (0.5).
- ``LIFTSTREAM_STREAM_SNAPSHOT_INTERVAL``: seconds between unit-state snapshots (30); a
  restarted worker re-processes at most this much of the log.
- ``LIFTSTREAM_LOG_LEVEL``: ``INFO`` (default), ``WARNING``, ``DEBUG``...
- ``LIFTSTREAM_STREAM_ENGINE``: ``aiokafka`` (default) or ``faust`` (``faust_worker``:
  the same state and publication behind a ``faust.App``; not yet the default).

Logs go to stderr. Start more workers with the same settings to share the partitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvloop

from liftstream.settings import load_settings
from services.stream.worker import DEFAULT_PUBLISH_INTERVAL, DEFAULT_SNAPSHOT_INTERVAL, StreamWorker

PUBLISH_INTERVAL_VAR = "LIFTSTREAM_STREAM_PUBLISH_INTERVAL"
SNAPSHOT_INTERVAL_VAR = "LIFTSTREAM_STREAM_SNAPSHOT_INTERVAL"
LOG_LEVEL_VAR = "LIFTSTREAM_LOG_LEVEL"
ENGINE_VAR = "LIFTSTREAM_STREAM_ENGINE"


def _seconds(variable: str, default: float) -> float:
    raw = os.environ.get(variable, "")
    if not raw:
        return default
    try:
        interval = float(raw)
    except ValueError:
        raise ValueError(f"{variable}: not a number of seconds: {raw!r}") from None
    if not interval > 0:
        raise ValueError(f"{variable}: must be more than 0 seconds, got {raw!r}")
    return interval


def _log_level() -> str:
    level = os.environ.get(LOG_LEVEL_VAR, "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"{LOG_LEVEL_VAR}: unknown log level {level!r}")
    return level


def main() -> int:
    if os.environ.get(ENGINE_VAR, "aiokafka") == "faust":
        return _run_faust()
    try:
        loglevel = _log_level()
        worker = StreamWorker(
            load_settings(),
            publish_interval=_seconds(PUBLISH_INTERVAL_VAR, DEFAULT_PUBLISH_INTERVAL),
            snapshot_interval=_seconds(SNAPSHOT_INTERVAL_VAR, DEFAULT_SNAPSHOT_INTERVAL),
        )
    except ValueError as error:
        print(f"liftstream stream: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=loglevel, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        uvloop.run(_run(worker))
    except RuntimeError:
        logging.getLogger(__name__).exception("stream worker failed")
        return 1
    return 0


def _run_faust() -> int:
    from services.stream.faust_worker import run  # faust only where it is asked for

    logging.basicConfig(
        level=_log_level(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run(
        load_settings(),
        publish_interval=_seconds(PUBLISH_INTERVAL_VAR, DEFAULT_PUBLISH_INTERVAL),
        snapshot_interval=_seconds(SNAPSHOT_INTERVAL_VAR, DEFAULT_SNAPSHOT_INTERVAL),
    )


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
