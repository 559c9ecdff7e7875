"""Helpers for the rollout acceptance tests: a platform of real processes (stream worker,
control service, controller) on the real broker, a webhook receiver, and a simulated
service that uses the SDK the way a product's service would."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from liftstream.client import LiftstreamClient
from liftstream.local_config import ConfigPoller
from schemas.topics import TopicCatalog
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.operator_metrics import METRICS_TOKEN_ENV
from services.settings import WEBHOOK_ALLOW_ENV
from services.webhook_signing import SECRET_ENV, SIGNATURE_HEADER
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_services import ServiceProcess
from tests.integration.helpers_stream import StreamWorker

TENANT = "acme"
METRICS_TOKEN = "operator-metrics-token"
#: The service's latency SLO: a request slower than this is a ``slow_request``.
SLO_MS = 200.0


@dataclass
class WebhookCall:
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A local HTTP server recording every POST; fails the first ``fail_first`` calls with
    503 (so the controller's retries show)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[WebhookCall] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if receiver.refused < fail_first:
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.calls.append(WebhookCall(dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def signature_of(self, call: WebhookCall) -> str:
        return {k.lower(): v for k, v in call.headers.items()}[SIGNATURE_HEADER.lower()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Platform:
    control: ControlService
    controller: ServiceProcess
    results: ServiceProcess
    stream: StreamWorker
    keys: dict[str, str]
    env: dict[str, str]
    home: Path
    receiver: WebhookReceiver

    def api(self, method: str, path: str, json: Any = None, role: str = "admin") -> Any:
        return self.control.ok(method, f"/v1/tenants/{TENANT}{path}", self.keys[role], json)

    def restart_controller(self) -> None:
        self.controller.start(180.0)  # as at first: importing Faust is slow on a loaded machine


@contextmanager
def namespace_of_its_own(
    bootstrap: str, home: Path, partitions: int, **settings: str
) -> Iterator[tuple[TopicCatalog, dict[str, str]]]:
    """A fresh topic namespace (its topics created, and deleted afterwards) and the
    environment that services started in it read: this process's, the namespace's
    settings and ``settings``."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    topics = TopicCatalog(namespace=namespace, event_partitions=partitions)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "LIFTSTREAM_BOOTSTRAP": bootstrap,
        "LIFTSTREAM_NAMESPACE": namespace,
        "LIFTSTREAM_PARTITIONS": str(partitions),
        "LIFTSTREAM_HOME": str(home),
        **settings,
    }
    ensure_topics(bootstrap, topics)
    try:
        yield topics, env
    finally:
        delete_namespace_topics(bootstrap, namespace)


@contextmanager
def rollout_platform(bootstrap: str, home: Path) -> Iterator[Platform]:
    with namespace_of_its_own(
        bootstrap,
        home,
        4,
        **{
            SECRET_ENV: "operator-webhook-secret",
            # The tests' webhook receiver is local: the operator allows loopback.
            WEBHOOK_ALLOW_ENV: "127.0.0.0/8",
            METRICS_TOKEN_ENV: METRICS_TOKEN,
        },
    ) as (topics, env):
        yield from _rollout_platform(bootstrap, home, topics, env)


def _rollout_platform(
    bootstrap: str, home: Path, topics: TopicCatalog, env: dict[str, str]
) -> Iterator[Platform]:
    saved = dict(os.environ)
    os.environ.update(env)  # the stream worker and the SDK read the environment
    keys = create_tenant(bootstrap, topics.control, TENANT)
    receiver = WebhookReceiver(fail_first=1)
    stream = StreamWorker(home / "stream.log", publish_interval=0.2)
    control = ControlService(home / "control.duckdb", env)
    controller = ServiceProcess(
        "services.controller", "controller", ["--tick", "0.1"], home / "controller.log", env
    )
    results = ServiceProcess(
        "services.results",
        "results service",
        ["--db", str(home / "results.duckdb")],
        home / "results.log",
        env,
    )
    parts = (control, controller, results)
    try:
        with ThreadPoolExecutor(3) as starting:  # each takes seconds: start them together
            # A generous bound: on a loaded machine a service takes a while to import.
            for started in [starting.submit(part.start, 180.0) for part in parts]:
                started.result()
        # The stream worker owns its partitions before any rollout starts: the tests' time
        # bounds then measure rollouts, not start-up on a loaded machine.
        deadline = time.monotonic() + 180
        while stream.owned_partitions() is None:
            assert stream.alive(), stream.log_tail()
            assert time.monotonic() < deadline, (
                f"the stream worker did not start:\n{stream.log_tail()}"
            )
            time.sleep(0.2)
        yield Platform(control, controller, results, stream, keys, env, home, receiver)
    finally:
        with ThreadPoolExecutor(4) as stopping:
            for part in (*parts, stream):
                stopping.submit(part.stop)
        receiver.close()
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class SimulatedService:
    """A service behind the experiment (or, with ``flag``, behind the flag of that key,
    its on value the candidate): each unit makes ``requests`` requests; the
    candidate raises the error rate by ``error_lift`` (relative) and adds ``added_ms``
    to every request's latency (so +``added_ms`` at p99). Units in region ``eu`` or
    ``us`` (one in five). Units outside the rollout are served the control code path and
    log nothing; units in it are exposed and track ``request_error`` and ``slow_request``
    (latency above the SLO)."""

    control_url: str
    ingest_key: str
    experiment: str
    error_lift: float = 0.0
    added_ms: float = 0.0
    seed: int = 1
    flag: bool = False
    requests: int = 5
    error_rate: float = 0.05
    #: Users a second: enough for every step, while leaving the 2 cores to the platform.
    units_per_s: float = 15_000
    served: dict[str, int] = field(default_factory=dict)
    us_exposed: int = 0

    def __post_init__(self) -> None:
        self.client = LiftstreamClient.from_config(
            self.control_url, self.ingest_key, poll_interval_s=5, tenant_id=TENANT
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.units = 0

    def start(self) -> SimulatedService:
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = random.Random(self.seed)
        started = time.monotonic()
        while not self._stop.is_set():
            if self.units % 500 == 0:
                ahead = self.units / self.units_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            unit = f"u{self.seed}-{self.units}"
            self.units += 1
            region = "us" if self.units % 5 == 0 else "eu"
            if self.flag:
                arm, exposed = self._flag_arm(unit, region)
            else:
                exposure = self.client.expose(self.experiment, unit, attributes={"region": region})
                arm = "control" if exposure is None else exposure.variant_key
                exposed = exposure is not None
            self.served[arm] = self.served.get(arm, 0) + 1
            if not exposed:
                continue
            if region == "us":
                self.us_exposed += 1
            candidate = arm == "candidate"
            for _ in range(self.requests):
                rate = self.error_rate * (1 + self.error_lift if candidate else 1.0)
                if rng.random() < rate:
                    self.client.track(unit, "request_error")
                latency = rng.lognormvariate(4.382, 0.4) + (self.added_ms if candidate else 0.0)
                if latency > SLO_MS:
                    self.client.track(unit, "slow_request")

    def _flag_arm(self, unit: str, region: str) -> tuple[str, bool]:
        """The flag's side for the unit (``client.enabled``, which logs the exposure), and
        whether the unit is one of the rollout's arms (in the ramp or the holdback)."""
        on = self.client.enabled(self.experiment, unit, {"region": region})
        evaluator = None if self.client.config is None else self.client.config.evaluator
        flag = None if evaluator is None else evaluator.flag_evaluator(self.experiment)
        exposed = flag is not None and flag.exposure(*flag.resolve(unit, {"region": region}))
        return ("candidate" if on else "control"), bool(exposed)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def sdk_pollers(control_url: str, key: str, count: int) -> list[ConfigPoller]:
    """More SDKs of the same service, each listening to the config stream."""
    return [ConfigPoller(control_url, key, interval_s=5, stream=True).start() for _ in range(count)]


EXPERIMENT_METRICS = [
    {"name": "errors", "event": "request_error", "type": "count", "direction": "decrease"},
    {"name": "slow_requests", "event": "slow_request", "type": "count", "direction": "decrease"},
]


def define_metrics(platform: Platform) -> None:
    """The experiments' metrics as the tenant's (a flag's guardrails are the tenant's)."""
    for metric in EXPERIMENT_METRICS:
        platform.api("PUT", f"/metrics/{metric['name']}", {"metric": metric, "reason": "slo"})


def experiment(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "variants": [{"key": "control", "weight": 50}, {"key": "candidate", "weight": 50}],
        "metrics": EXPERIMENT_METRICS,
        "status": "draft",
    }
