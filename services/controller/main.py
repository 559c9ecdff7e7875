"""Run the rollout controller: ``python -m services.controller [--port 8794] [--tick S]``.

It reads the control topic to its end (the projection, rollouts included), follows the
aggregates and dead-letter topics, then checks due rollouts every ``--tick`` seconds
(0.25 by default; each plan's ``check_interval_s`` decides when it is due) and writes
each decision to the control topic. HTTP: ``/healthz``, ``/v1/webhooks`` (webhook
deliveries and the newest failures) and ``/metrics`` (operator token): checks made,
automatic rollbacks (``liftstream_rollout_automatic_rollbacks_total``: incidents
prevented, counted from the control log so restarts do not reset it), webhook calls.
Rollouts with a shadow entry gate are checked against the results service
(``LIFTSTREAM_CONTROLLER_RESULTS_URL``, ``LIFTSTREAM_SERVICE_TOKEN``); webhook calls obey
the URL policy (``LIFTSTREAM_WEBHOOK_ALLOW_HOSTS``) and those still pending when the
process died are sent again at start-up (the delivery log in
``LIFTSTREAM_CONTROLLER_DATA_DIR``). Prints ``controller ready at URL``; SIGTERM or SIGINT stops it.

It is a ``faust.App`` (``agents``): agents fold the control topic into the projection
and the aggregates and dead letters into their view; a timer makes the checks. Run two or
more in one namespace for high availability: one is active (its group's assignor gives
it every partition), the others wait and take over when it dies (``docs/design-notes.md``).
``/healthz`` says which (``role``: active, catching up or standby).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from liftstream.errors import PlatformUnavailableError
from liftstream.producer import create_producer
from schemas.control import ControlEvent, control_event_json
from schemas.limits import MAX_CONTROL_EVENT_BYTES
from services.control_domain.control_log import ControlProjection, decode_control_event
from services.controller.agents import ControllerAgents, run_faust
from services.controller.aggregates import AggregateView
from services.controller.checks import Controller
from services.controller.deliveries import DeliveryLog
from services.controller.gates import ShadowGates
from services.controller.webhooks import WebhookSender
from services.http_runner import (
    announcing_server,
    bootstrap_configured,
    configure_logging,
    service_arguments,
)
from services.kafka_outage import outage_tolerance_s
from services.operator_metrics import FollowerMetrics, add_metrics_route
from services.settings import ControllerSettings, load_or_exit
from services.webhook_policy import webhook_policy
from services.webhook_signing import SECRET_ENV

log = logging.getLogger("services.controller")

DEFAULT_PORT = 8794


class ControllerMetrics(Collector):
    def __init__(self, controller: Controller, read_directly: Callable[[], int]) -> None:
        self._controller = controller
        self._read_directly = read_directly

    def collect(self) -> Iterator[Metric]:
        controller = self._controller
        with controller.follower.lock:
            rollbacks = sum(
                entry.automatic_rollbacks
                for tenant in controller.follower.state.tenants.values()
                for entry in tenant.rollouts.values()
            )
            active = sum(
                1
                for tenant in controller.follower.state.tenants.values()
                for entry in tenant.rollouts.values()
                if entry.active
            )
        family = CounterMetricFamily(
            "liftstream_rollout_automatic_rollbacks",
            "Rollouts the controller rolled back with no person involved (incidents "
            "prevented), over the whole control log.",
        )
        family.add_metric([], rollbacks)
        yield family
        gauge = GaugeMetricFamily("liftstream_rollouts_active", "Rollouts being checked.")
        gauge.add_metric([], active)
        yield gauge
        checks = CounterMetricFamily(
            "liftstream_rollout_checks", "Checks this controller process made."
        )
        checks.add_metric([], controller.checks)
        yield checks
        errors = CounterMetricFamily(
            "liftstream_rollout_check_errors", "Checks that failed (logged; retried)."
        )
        errors.add_metric([], controller.errors)
        yield errors
        hooks = CounterMetricFamily(
            "liftstream_webhook_calls", "Webhook calls by outcome.", labels=["outcome"]
        )
        sender = controller.webhooks
        for outcome, count in (
            ("delivered", sender.delivered),
            ("failed", sender.failed),
            ("dropped", sender.dropped),
            ("resent", controller.resent),
        ):
            hooks.add_metric([outcome], count)
        yield hooks
        direct = CounterMetricFamily(
            "liftstream_controller_records_read_directly",
            "Records the controller read with a plain consumer because its Faust agents had "
            "not delivered them (dropped in a rebalance, or later than a second).",
        )
        direct.add_metric([], self._read_directly())
        yield direct


def create_app(
    controller: Controller,
    role: Callable[[], str] = lambda: "active",
    read_directly: Callable[[], int] = lambda: 0,
) -> FastAPI:
    app = FastAPI(title="liftstream rollout controller", version="1")
    registry = CollectorRegistry()
    registry.register(ControllerMetrics(controller, read_directly))
    registry.register(FollowerMetrics(controller.follower, "controller"))
    add_metrics_route(app, registry)

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        problem = controller.follower.error or controller.aggregates.error
        if problem is not None:
            response.status_code = 503
            return {"status": "degraded", "error": problem}
        return {"status": "ok", "role": role(), "checks": controller.checks}

    @app.get("/v1/webhooks")
    def webhooks() -> dict[str, Any]:
        sender = controller.webhooks
        return {
            "delivered": sender.delivered,
            "failed": sender.failed,
            "dropped": sender.dropped,
            "resent_after_restart": controller.resent,
            "attempts": sender.attempts,
            "failures": [asdict(failure) for failure in sender.failures],
        }

    return app


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = service_arguments("python -m services.controller", __doc__, DEFAULT_PORT)
    parser.add_argument("--tick", type=float, default=0.25, help="seconds between looks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.log_level)
    configured = load_or_exit(ControllerSettings, "controller")
    settings = configured.platform
    if not bootstrap_configured(settings):
        return 2
    deadline = time.monotonic() + outage_tolerance_s()
    while True:
        try:
            producer = create_producer(
                settings.bootstrap, client_id="liftstream-controller", linger_ms=0
            )
            break
        except PlatformUnavailableError as error:
            if time.monotonic() > deadline:
                log.error("%s", error)
                return 1
            time.sleep(2.0)
    topic = settings.topics.control
    secret = configured.webhook_secret or None
    if secret is None:
        log.warning("%s is not set: webhooks are sent unsigned", SECRET_ENV)

    def publish(event: ControlEvent) -> int:
        payload = control_event_json(event)
        if len(payload) > MAX_CONTROL_EVENT_BYTES:
            raise ValueError(f"a decision of {len(payload)} bytes is over the limit")
        decode_control_event(payload)  # only events every follower can read are written
        metadata = producer.send(topic, key=event.partition_key, value=payload).get(30)
        return int(metadata.offset)

    aggregates = AggregateView(settings.topics.aggregates, settings.topics.deadletter)
    data_dir = (configured.data_dir or settings.home / "controller").expanduser()
    deliveries = DeliveryLog(data_dir, keep_s=2 * configured.webhook_resend_s)
    if deliveries.fresh:
        log.warning("a new webhook delivery log in %s: past decisions are not sent again", data_dir)
    deliveries.prune()
    webhooks = WebhookSender(
        policy=webhook_policy(configured.webhook_allow_hosts),
        on_settled=lambda call, outcome: deliveries.record(call.event_id, call.url, outcome),
    ).start()
    holder: dict[str, Controller] = {}
    projection = ControlProjection(
        on_applied=lambda offset, event, state: holder["controller"].on_applied(
            offset, event, state
        ),
    )
    gates = ShadowGates(configured.results_url, configured.service_token or None)
    controller = Controller(
        projection,
        aggregates,
        publish,
        webhooks,
        secret,
        gates=gates,
        deliveries=deliveries,
        resend_s=configured.webhook_resend_s,
    )
    holder["controller"] = controller
    agents = ControllerAgents(
        controller,
        projection,
        aggregates,
        bootstrap=settings.bootstrap,
        group=f"{settings.namespace}-controller",
        control_topic=topic,
        aggregates_topic=settings.topics.aggregates,
        deadletter_topic=settings.topics.deadletter,
        datadir=data_dir / "faust",
        tick_s=args.tick,
    )
    # Faust owns the main thread and its signals; the HTTP server runs beside it.
    app = create_app(controller, lambda: agents.role, lambda: agents.reader.filled)
    server = announcing_server(app, args, "controller")
    http = threading.Thread(target=server.run, name="http", daemon=True)

    async def stop_http(sender: Any, **_: Any) -> None:
        server.should_exit = True

    agents.app.on_before_shutdown.connect(stop_http)
    http.start()
    try:
        run_faust(agents.app)
    finally:
        server.should_exit = True
        http.join(10)
        agents.reader.close()
        webhooks.stop()
        gates.close()
        deliveries.close()
        producer.close(timeout=5)
        log.info("controller stopped")
    return 0
