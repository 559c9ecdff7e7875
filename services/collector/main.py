"""Run the collector: the control-topic follower (keys, experiments) and the API on uvicorn.

``python -m services.collector [--host 127.0.0.1] [--port 8791]``; ``--port 0`` takes a
free port. Prints ``collector ready at URL`` once it listens. Limits and quotas come
from ``LIFTSTREAM_COLLECTOR_*`` (``services.collector.config``). SIGTERM or SIGINT stops
the API (in-flight requests finish), the producer, then the follower.
"""

from __future__ import annotations

import argparse
import gc
import logging

from services.collector.api import create_app
from services.collector.config import config_of
from services.collector.metrics import CollectorMetrics
from services.collector.sink import KafkaSink
from services.control_domain.api_keys import KeyRecord
from services.control_domain.control_log import ControlFollower
from services.http_auth import until_caught_up
from services.http_runner import (
    announcing_server,
    bootstrap_configured,
    configure_logging,
    service_arguments,
)
from services.operator_metrics import FollowerMetrics
from services.settings import CollectorSettings, load_or_exit

log = logging.getLogger("services.collector")

DEFAULT_PORT = 8791
#: The control follower's fetch wait: its thread woke 20 times a second to find nothing
#: (3% of a core idle, and the GIL taken from requests each time); a new key or
#: experiment still arrives at once.
FOLLOWER_FETCH_WAIT_MS = 500
#: Container allocations (net) before a young collection. A request holds a few thousand
#: objects for a moment (its events, records and futures): at Python's default of 700,
#: two young collections a request scanned them all (about 0.3 ms each), although
#: reference counting frees nearly all of them when the request ends.
YOUNG_COLLECTION_THRESHOLD = 50_000


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    return service_arguments("python -m services.collector", __doc__, DEFAULT_PORT).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.log_level)
    configured = load_or_exit(CollectorSettings, "collector")
    settings = configured.platform
    if not bootstrap_configured(settings):
        return 2
    config = config_of(configured)
    follower = ControlFollower(
        settings.bootstrap,
        settings.topics.control,
        f"{settings.namespace}-collector-control",
        fetch_max_wait_ms=FOLLOWER_FETCH_WAIT_MS,
    )

    def lookup(secret_key: str) -> KeyRecord | None:
        with follower.lock:
            return follower.state.keys.authenticate(secret_key)

    def variants_of(tenant_id: str, experiment_key: str) -> set[str] | None:
        with follower.lock:
            tenant = follower.state.tenant(tenant_id)
            entry = tenant.experiments.get(experiment_key) if tenant else None
            return None if entry is None else {v.key for v in entry.experiment.variants}

    metrics = CollectorMetrics()
    metrics.registry.register(FollowerMetrics(follower, "collector"))
    app = create_app(
        config,
        until_caught_up(lookup, lambda: follower.wait_until_caught_up(0)),
        KafkaSink(
            settings.bootstrap,
            on_replaced=metrics.producer_replaced,
            batched_topics=frozenset({settings.topics.exposures, settings.topics.outcomes}),
            producers=configured.producers,
        ),
        settings.topics,
        variants_of=variants_of,
        metrics=metrics,
    )
    # Everything built so far lives as long as the process: out of the cycle collector's
    # sight, a full collection scans only what requests left behind (it took ~100 ms,
    # every few seconds under load, and stalled every tenant's requests).
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
    server = announcing_server(app, args, "collector")
    log.info("collector: namespace %s, broker %s", settings.namespace, settings.bootstrap)
    follower.start()
    try:
        server.run()
    finally:
        follower.stop()
        log.info("collector stopped")
    return 0
