"""A stream worker's HTTP endpoints: liveness, readiness and its Prometheus figures.

The same aiohttp routes for both engines (``routes``): the Faust worker mounts them on
Faust's own web server, the aiokafka fallback serves them itself (``serve``).

- ``GET /healthz``: 200 while the process serves and the worker has not failed (a
  worker whose restore failed answers 503 until it has exited).
- ``GET /readyz``: 200 once the producer is started and the latest partition assignment
  is restored (0 partitions is an assignment too: more workers than partitions); 503
  with the reason and ``Retry-After`` before that, during a rebalance, or after a failure.
- ``GET /metrics``: the figures below as Prometheus text, to the operator's token only
  (``services.operator_metrics``, like every service's ``/metrics``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from services.operator_metrics import metrics_refusal, operator_token
from services.stream.processor import StreamProcessor

#: Seconds a client is told to wait before asking ``/readyz`` again.
RETRY_AFTER_S = 5


class ObservedWorker(Protocol):
    """What the endpoints read of a worker (``worker.StreamWorker`` has it)."""

    processor: StreamProcessor
    rebalances: int
    publications: int
    published_records: int
    last_snapshot_at: float
    settled: bool

    @property
    def producer_started(self) -> bool: ...

    @property
    def failure(self) -> BaseException | None: ...

    @property
    def sources(self) -> tuple[str, str]: ...

    def highwater(self, topic: str, partition: int) -> int | None: ...


def not_ready_reason(worker: ObservedWorker) -> str | None:
    """Why the worker is not ready, or None when it is."""
    if worker.failure is not None:
        return f"failed: {worker.failure}"
    if not worker.producer_started:
        return "starting: the producer is not started yet"
    if not worker.settled:
        return "rebalancing: the latest partition assignment is not restored yet"
    return None


class StreamWorkerFigures(Collector):
    """The worker's figures, read when scraped (nothing is counted twice: the worker and
    its processor keep the counts, this only reads them)."""

    def __init__(self, worker: ObservedWorker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        worker = self._worker
        processor = worker.processor
        counters = (
            (
                "liftstream_stream_events",
                "Events read from the event topics (each element of a batch message), "
                "dead letters and duplicates included.",
                processor.event_count,
            ),
            (
                "liftstream_stream_dead_letters",
                "Events (or batch elements) refused and written to the dead-letter topic.",
                processor.dead_letter_count,
            ),
            (
                "liftstream_stream_publications",
                "Publications of changed aggregates and progress delivered.",
                worker.publications,
            ),
            (
                "liftstream_stream_published_records",
                "Aggregate and progress records in those publications.",
                worker.published_records,
            ),
            (
                "liftstream_stream_rebalances",
                "Partition assignments taken (restored) by this worker.",
                worker.rebalances,
            ),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(name, documentation, value=value)
        owned = processor.owned()
        gauges = (
            (
                "liftstream_stream_snapshot_age_seconds",
                "Seconds since the last snapshot pass succeeded (since start before one).",
                max(0.0, time.time() - worker.last_snapshot_at),
            ),
            ("liftstream_stream_partitions", "Event partitions this worker owns.", len(owned)),
            (
                "liftstream_stream_units",
                "Unit states held in memory.",
                sum(len(processor.units[p]) for p in owned),
            ),
            (
                "liftstream_stream_ready",
                "1 when /readyz answers 200.",
                1 if not_ready_reason(worker) is None else 0,
            ),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)
        lag = GaugeMetricFamily(
            "liftstream_stream_lag",
            "Messages of an owned partition not yet applied (last fetched stable end offset "
            "minus the next offset the states need; absent before the first fetch).",
            labels=["topic", "partition"],
        )
        for partition in owned:
            next_offsets = processor.partials.next_offsets(partition)
            for topic in worker.sources:
                end = worker.highwater(topic, partition)
                if end is not None:
                    lag.add_metric(
                        [topic, str(partition)], max(0, end - next_offsets.get(topic, 0))
                    )
        yield lag


def routes(worker: ObservedWorker, token: str | None = None) -> list[web.RouteDef]:
    """``/healthz``, ``/readyz`` and ``/metrics`` (for ``token``, default
    ``LIFTSTREAM_METRICS_TOKEN``) of ``worker``."""
    expected = token if token is not None else operator_token()
    registry = CollectorRegistry()
    registry.register(StreamWorkerFigures(worker))

    async def healthz(request: web.Request) -> web.Response:
        if worker.failure is not None:
            return web.json_response({"status": f"failed: {worker.failure}"}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        reason = not_ready_reason(worker)
        if reason is not None:
            return web.json_response(
                {"ready": False, "reason": reason},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return web.json_response({"ready": True, "partitions": worker.processor.owned()})

    async def metrics(request: web.Request) -> web.Response:
        reason = metrics_refusal(request.headers.get("Authorization", ""), expected)
        if reason is not None:
            return web.json_response(
                {"detail": reason}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]


def announce(host: str, port: int) -> None:
    """The line the supervisor and the tests look for: where the endpoints are (on the
    process's own stdout: a Faust worker redirects ``sys.stdout`` into its log lines)."""
    print(f"stream worker ready at http://{host}:{port}", file=sys.__stdout__, flush=True)


async def serve(worker: ObservedWorker, host: str, port: int) -> web.AppRunner:
    """Serve ``routes(worker)`` on ``host:port`` (0: a free port), announced; the runner
    (``await runner.cleanup()`` stops it)."""
    app = web.Application()
    app.add_routes(routes(worker))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    announce(bound_host, bound_port)
    return runner
