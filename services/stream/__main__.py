"""``python -m services.stream``: run one stream worker until SIGTERM or SIGINT.

Settings come from the environment (``liftstream.settings.load_settings``), plus:

- ``LIFTSTREAM_STREAM_PUBLISH_INTERVAL``: seconds between aggregate publications (0.5).
- ``LIFTSTREAM_LOG_LEVEL``: ``INFO`` (default), ``WARNING``, ``DEBUG``...

Logs go to stderr. Start more workers with the same settings to share the partitions.
"""

from __future__ import annotations

import logging
import os
import sys

import faust

from liftstream.settings import load_settings
from services.stream.app import DEFAULT_PUBLISH_INTERVAL, create_app

PUBLISH_INTERVAL_VAR = "LIFTSTREAM_STREAM_PUBLISH_INTERVAL"
LOG_LEVEL_VAR = "LIFTSTREAM_LOG_LEVEL"


def _publish_interval() -> float:
    raw = os.environ.get(PUBLISH_INTERVAL_VAR, "")
    if not raw:
        return DEFAULT_PUBLISH_INTERVAL
    try:
        interval = float(raw)
    except ValueError:
        raise ValueError(f"{PUBLISH_INTERVAL_VAR}: not a number of seconds: {raw!r}") from None
    if not interval > 0:
        raise ValueError(f"{PUBLISH_INTERVAL_VAR}: must be more than 0 seconds, got {raw!r}")
    return interval


def _log_level() -> str:
    level = os.environ.get(LOG_LEVEL_VAR, "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"{LOG_LEVEL_VAR}: unknown log level {level!r}")
    return level


def main() -> int:
    try:
        loglevel = _log_level()
        app = create_app(load_settings(), publish_interval=_publish_interval())
    except ValueError as error:
        print(f"liftstream stream: {error}", file=sys.stderr)
        return 2
    # Faust warns "producer buffer full" each time it briefly pauses the stream to let
    # table changelog writes drain: routine back-pressure under load, not a problem.
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, stdout=sys.stderr)
    worker.execute_from_commandline()  # returns by raising SystemExit when stopped
    return 0


if __name__ == "__main__":
    sys.exit(main())
