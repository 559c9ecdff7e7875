"""The controller's entry gate and webhooks on the real broker and services.

One platform for the module: the control service, the results service (a real DuckDB
file) and the rollout controller as processes on the real broker (no stream worker: no
rollout here needs aggregates), and a local webhook receiver that the operator's
allow-list admits (loopback).

- Shadow entry gate: two rollouts wait for their shadow tests; the bad candidate's
  (mismatching on 5% of runs) keeps its rollout held with the shadow's evidence while the
  good one's starts its first step; with the results service down the gate is
  "unavailable" and the rollout still holds; replaying the control log reproduces it all.
- Webhook URL policy: a plan calling an internal address is refused with a 422 naming the
  field.
- At-least-once webhooks: the controller is SIGKILLed while its calls are being retried;
  once restarted it sends every decision made before the kill, with its event id.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from liftstream.settings import Settings
from schemas.events import OutcomeEvent
from schemas.shadow import SHADOW_EVENT
from schemas.topics import TopicCatalog
from services.control_domain.control_log import decode_control_event
from services.controller.replay import replay
from services.settings import SERVICE_TOKEN_ENV, WEBHOOK_ALLOW_ENV
from services.webhook_signing import SECRET_ENV
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_results import produce
from tests.integration.helpers_rollouts import experiment, namespace_of_its_own
from tests.integration.helpers_services import ServiceProcess
from tests.integration.helpers_stream import read_topic

pytestmark = pytest.mark.integration

TENANT = "acme"
#: Comparisons per shadow test, half candidate runs and half secondary (noise) runs.
RUNS = 2000


class Receiver:
    """A local webhook receiver answering 503 until ``accepting`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        self.accepting = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if not receiver.accepting.is_set():
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def event_ids(self) -> set[str]:
        return {headers["x-liftstream-event-id"] for headers, _ in self.calls}


@dataclass
class Platform:
    settings: Settings
    control: ControlService
    results: ServiceProcess
    controller: ServiceProcess
    keys: dict[str, str]
    receiver: Receiver

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return self.control.ok(method, f"/v1/tenants/{TENANT}{path}", self.keys["admin"], body)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return self.control.request(method, f"/v1/tenants/{TENANT}{path}", self.keys["admin"], body)


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("gates")
    with namespace_of_its_own(
        kafka_bootstrap,
        home,
        2,
        **{
            SECRET_ENV: "operator-webhook-secret",
            SERVICE_TOKEN_ENV: "operator-service-token",
            WEBHOOK_ALLOW_ENV: "127.0.0.0/8",
        },
    ) as (topics, env):
        yield from _platform(kafka_bootstrap, home, topics, env)


def _platform(
    kafka_bootstrap: str, home: Path, topics: TopicCatalog, env: dict[str, str]
) -> Iterator[Platform]:
    keys = create_tenant(kafka_bootstrap, topics.control, TENANT)
    control = ControlService(home / "control.duckdb", env)
    # The controller is told the results service's URL: the port is chosen here so that
    # the three start together (the last --port wins).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = ServiceProcess(
        "services.results",
        "results service",
        ["--db", str(home / "results.duckdb"), "--port", str(port)],
        home / "results.log",
        env,
    )
    controller = ServiceProcess(
        "services.controller",
        "controller",
        ["--tick", "0.1"],
        home / "controller.log",
        {**env, "LIFTSTREAM_CONTROLLER_RESULTS_URL": f"http://127.0.0.1:{port}"},
    )
    parts = (control, results, controller)
    receiver = Receiver()
    try:
        with ThreadPoolExecutor(3) as starting:
            for started in [starting.submit(part.start, 180.0) for part in parts]:
                started.result()
        settings = Settings(
            bootstrap=kafka_bootstrap,
            namespace=topics.namespace,
            partitions=2,
            home=home,
            results_url=results.url,
        )
        yield Platform(settings, control, results, controller, keys, receiver)
    finally:
        with ThreadPoolExecutor(3) as stopping:
            for part in parts:
                stopping.submit(part.stop)
        receiver.server.shutdown()
        receiver.server.server_close()


def wait_for(condition: Any, timeout: float, what: str, platform: Platform) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what} after {timeout}s\ncontroller:\n{platform.controller.log_tail()}"
            )
        time.sleep(0.1)
    return value


def observations(name: str, mismatch_every: int, noise_every: int) -> list[tuple[bytes, bytes]]:
    """``RUNS`` comparisons of shadow test ``name``: the candidate mismatching one run in
    ``mismatch_every``, the primary with itself one in ``noise_every``."""
    messages = []
    for index in range(RUNS):
        candidate = index % 2 == 0
        every = mismatch_every if candidate else noise_every
        match = (index // 2) % every != 0
        event = OutcomeEvent(
            tenant_id=TENANT,
            unit_id=f"shadow:{name}:{index}",
            timestamp=datetime.now(UTC),
            event=SHADOW_EVENT,
            value=0.0 if match else 1.0,
            properties={
                "shadow": name,
                "run": "candidate" if candidate else "secondary",
                "match": match,
                "primary_ms": 2.0,
                "other_ms": 2.5,
            },
        )
        messages.append((event.partition_key, event.to_json()))
    return messages


def gated_plan(key: str, shadow: str, webhooks: list[str] | None = None) -> dict[str, Any]:
    return {
        "key": f"{key}-rollout",
        "target": {"experiment": key, "variant": "candidate"},
        "steps": [{"percent": 1, "min_duration_s": 3600}, {"percent": 50}],
        "check_interval_s": 1,
        "entry_gate": {"shadow": shadow, "max_mismatch_beyond_noise": 0.01},
        "webhooks": [{"url": url} for url in webhooks or []],
    }


def trail(platform: Platform, key: str) -> list[dict[str, Any]]:
    return list(platform.api("GET", f"/rollouts/{key}/decisions?limit=1000"))


def test_a_shadow_gate_holds_a_bad_candidate_and_starts_a_good_one(platform: Platform) -> None:
    for key, shadow in (("pricing-bad", "bad-shadow"), ("pricing-good", "good-shadow")):
        platform.api("POST", "/experiments", {"experiment": experiment(key)})
        platform.api("PUT", f"/rollouts/{key}-rollout", {"plan": gated_plan(key, shadow)})
        # Not started: the candidate is served to nobody.
        state = platform.api("GET", f"/rollouts/{key}-rollout")
        assert (state["entered"], state["percent"]) == (False, 0)
        assert platform.api("GET", f"/experiments/{key}")["killed"]
    # No observation yet: the controller holds, waiting for the gate.
    waiting = wait_for(
        lambda: [d for d in trail(platform, "pricing-good-rollout") if d["decision"] == "hold"],
        60,
        "no hold before the shadow's observations",
        platform,
    )
    assert "waiting for the shadow gate" in waiting[0]["reason"]
    assert "no observation" in waiting[0]["evidence"]["entry_gate"]["detail"]

    produce(
        platform.settings.bootstrap,
        platform.settings.topics.outcomes,
        observations("bad-shadow", 20, 500) + observations("good-shadow", 10**9, 10**9),
    )
    started = wait_for(
        lambda: (s := platform.api("GET", "/rollouts/pricing-good-rollout"))["entered"] and s,
        90,
        "the good candidate's rollout did not start",
        platform,
    )
    assert (started["step"], started["percent"]) == (1, 1)
    assert not platform.api("GET", "/experiments/pricing-good")["killed"]
    entry = next(d for d in trail(platform, "pricing-good-rollout") if d["decision"] == "advance")
    gate = entry["evidence"]["entry_gate"]
    assert entry["author"] == "controller" and entry["reason"].startswith("shadow gate passed")
    # (It may pass before every observation is loaded: it passes once the bound allows.)
    assert gate["allowed"] and 0 < gate["candidate_runs"] <= RUNS // 2
    assert 0 < gate["secondary_runs"] <= RUNS // 2
    assert gate["upper"] < 0.01 and gate["low"] <= gate["estimate"] <= gate["upper"]

    # The bad candidate's rollout holds with its shadow's evidence once all is loaded.
    def loaded_hold() -> dict[str, Any] | None:
        last = trail(platform, "pricing-bad-rollout")[-1]
        loaded = last["evidence"]["entry_gate"]["candidate_runs"] == RUNS // 2
        return last if loaded else None

    held = wait_for(loaded_hold, 60, "the bad shadow was not read", platform)
    gate = held["evidence"]["entry_gate"]
    assert held["decision"] == "hold" and "waiting for the shadow gate" in held["reason"]
    assert not gate["allowed"] and gate["upper"] >= 0.01
    assert gate["candidate_mismatches"] == RUNS // 2 // 20 and gate["low"] > 0
    assert not platform.api("GET", "/rollouts/pricing-bad-rollout")["entered"]
    assert platform.api("GET", "/experiments/pricing-bad")["killed"]

    # The results service down (for the rest of the module: the tests below do not need
    # it): the gate is unavailable, and the rollout still holds.
    platform.results.stop()
    unavailable = wait_for(
        lambda: [
            d for d in trail(platform, "pricing-bad-rollout") if "gate unavailable" in d["reason"]
        ],
        30,
        "no 'gate unavailable' hold",
        platform,
    )
    assert unavailable[-1]["decision"] == "hold"
    assert not unavailable[-1]["evidence"]["entry_gate"]["available"]
    assert "did not answer" in unavailable[-1]["reason"]
    assert not platform.api("GET", "/rollouts/pricing-bad-rollout")["entered"]

    # Replaying the control log gives every decision again, the gated ones included.
    settings = platform.settings
    events = [
        (offset, decode_control_event(value))
        for offset, (_key, value) in enumerate(read_topic(settings, settings.topics.control))
    ]
    replayed, differences = replay(events)
    assert differences == [] and replayed >= 4


def test_a_webhook_to_an_internal_address_is_refused_naming_the_field(
    platform: Platform,
) -> None:
    platform.api("POST", "/experiments", {"experiment": experiment("ssrf")})
    plan = gated_plan("ssrf", "s", [platform.receiver.url, "http://169.254.169.254/latest"])
    refused = platform.request("PUT", "/rollouts/ssrf-rollout", {"plan": plan})
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["errors"]
    assert problem["field"] == "webhooks.1.url" and "link-local" in problem["reason"]
    loopback = {**plan, "webhooks": [{"url": "http://[::1]:9/hooks"}]}
    refused = platform.request("PUT", "/rollouts/ssrf-rollout", {"plan": loopback})
    assert refused.status_code == 422 and "loopback" in refused.text


def test_webhooks_pending_when_the_controller_is_killed_are_sent_after_its_restart(
    platform: Platform,
) -> None:
    receiver = platform.receiver
    platform.api("POST", "/experiments", {"experiment": experiment("hooks")})
    plan = gated_plan("hooks", "no-such-shadow", [receiver.url])
    platform.api("PUT", "/rollouts/hooks-rollout", {"plan": plan})
    # The receiver refuses (503): the controller's calls are being retried with backoff.
    wait_for(lambda: receiver.refused >= 2, 30, "no webhook call", platform)
    platform.controller.process.kill()  # type: ignore[union-attr]  # SIGKILL
    platform.controller.stop()
    before = {d["event_id"] for d in trail(platform, "hooks-rollout")}
    assert before and not receiver.calls
    receiver.accepting.set()
    platform.controller.start(120.0)
    wait_for(
        lambda: before <= receiver.event_ids(),
        60,
        f"decisions not sent again: {before - receiver.event_ids()}",
        platform,
    )
    for headers, body in receiver.calls:
        assert json.loads(body)["event_id"] == headers["x-liftstream-event-id"]
    assert "x-liftstream-signature" in receiver.calls[0][0]
