"""A hostile tenant against the whole platform: every case stays that tenant's problem.

One platform (real broker; control, collector, results and stream worker as processes)
is shared by two tenants: ``mallory`` sends the hostile input, ``alice`` is the bystander.
Every case reproduces one way a tenant once damaged the platform for everyone, and then
checks, through ``Platform.assert_unharmed``, what the bystander would notice:

- the offending request got a 4xx that names the field (asserted in the case);
- alice's valid batch sent right after gets 2xx and is counted by the stream;
- alice's single bad event gets its own 4xx;
- every service process is still alive;
- no answer of the whole module was a 5xx (``Platform.responses`` records every answer).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from schemas.control import ExperimentDefined
from schemas.deadletter import DeadLetter
from schemas.experiment import Experiment
from schemas.limits import MAX_DAILY_DAYS, MAX_DEAD_LETTER_BYTES, MAX_RECORD_KEY_BYTES
from schemas.topics import TopicCatalog
from services.broker.topics import delete_namespace_topics, ensure_topics
from tests.integration.helpers_collector import read_topic
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_results import ResultsService, produce
from tests.integration.helpers_services import KEY_NOT_KNOWN_YET, ServiceProcess
from tests.integration.helpers_stream import StreamWorker
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

HOSTILE = "mallory"
#: The operator's token for every service's /metrics (services.operator_metrics).
METRICS_TOKEN = "operator-metrics-secret"
BYSTANDER = "alice"
EXPERIMENT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
}


@dataclass
class Platform:
    """The running platform, the tenants' keys, and every HTTP answer seen."""

    bootstrap: str
    topics: TopicCatalog
    home: Path
    control: ControlService
    collector: ServiceProcess
    results: ResultsService
    worker: StreamWorker
    keys: dict[str, dict[str, str]]  # tenant -> role -> key
    responses: list[tuple[str, str, int]] = field(default_factory=list)

    def call(
        self,
        service: ServiceProcess,
        method: str,
        path: str,
        key: str | None = None,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> httpx.Response:
        """One request to ``service``; its status is recorded for the no-5xx check."""
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        response = httpx.request(
            method,
            f"{service.url}{path}",
            json=json,
            content=content,
            headers=sent,
            timeout=timeout,
        )
        self.responses.append((method, path, response.status_code))
        return response

    def services(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "collector": self.collector,
            "results": self.results,
            "stream": self.worker,
        }

    def assert_all_alive(self) -> None:
        for name, process in self.services().items():
            assert process.alive(), f"{name} died:\n{process.log_tail()}"

    def assert_unharmed(self) -> None:
        """What the bystander notices: its own traffic still works, nothing died."""
        alice = self.keys[BYSTANDER]
        before = self.bystander_units()
        unit = f"u-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC).isoformat()
        good = [
            {
                "type": "exposure",
                "unit_id": unit,
                "timestamp": now,
                "experiment_key": "checkout",
                "variant_key": "treatment",
            },
            {"type": "outcome", "unit_id": unit, "timestamp": now, "event": "purchase"},
        ]
        answer = self.call(
            self.collector, "POST", "/v1/events", alice["ingest"], json={"events": good}
        )
        assert answer.status_code == httpx.codes.ACCEPTED, answer.text
        bad = self.call(
            self.collector,
            "POST",
            "/v1/events",
            alice["ingest"],
            json={"events": [{"type": "outcome", "unit_id": unit, "timestamp": "never"}]},
        )
        assert 400 <= bad.status_code < 500, bad.text
        assert "timestamp" in bad.text
        self.wait_until_units(before + 1)
        self.assert_all_alive()
        self.assert_no_5xx()

    def bystander_units(self) -> int:
        """Units on alice's scorecard now (0 before the first one is counted)."""
        path = f"/v1/tenants/{BYSTANDER}/experiments/checkout/results"
        answer = self.call(self.results, "GET", path, self.keys[BYSTANDER]["read"])
        if answer.status_code != httpx.codes.OK:
            return 0
        return int(answer.json()["total_units"])

    def wait_until_units(self, expected: int, timeout: float = 60.0) -> None:
        """Alice's scorecard reaches ``expected`` units (collector -> Kafka -> stream ->
        results)."""
        wait_until(
            lambda: self.bystander_units() >= expected,
            timeout=timeout,
            what=lambda: (
                f"alice has {self.bystander_units()} units, not {expected}\n"
                f"{self.worker.log_tail()}"
            ),
            interval=0.3,
        )

    def assert_no_5xx(self) -> None:
        failures = [r for r in self.responses if r[2] >= 500]
        assert not failures, f"5xx answers: {failures}"


def _wait_until_key_known(platform: Platform, service: ServiceProcess, key: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(
            f"{service.url}/healthz", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        probe = httpx.post(
            f"{service.url}/v1/events",
            content=b"",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        if answer.status_code == 200 and probe.status_code not in KEY_NOT_KNOWN_YET:
            return
        assert time.monotonic() < deadline, f"key never known:\n{service.log_tail()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("hostile")
    topics = TopicCatalog(namespace=namespace, event_partitions=2)
    ensure_topics(kafka_bootstrap, topics)
    keys = {
        tenant: create_tenant(kafka_bootstrap, topics.control, tenant)
        for tenant in (HOSTILE, BYSTANDER)
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LIFTSTREAM_BOOTSTRAP", kafka_bootstrap)
        env.setenv("LIFTSTREAM_NAMESPACE", namespace)
        env.setenv("LIFTSTREAM_PARTITIONS", "2")
        env.setenv("LIFTSTREAM_HOME", str(home))
        env.setenv("LIFTSTREAM_METRICS_TOKEN", METRICS_TOKEN)
        control = ControlService(home / "control.duckdb", dict(os.environ))
        collector = ServiceProcess(
            "services.collector", "collector", [], home / "collector.log", dict(os.environ)
        )
        results = ResultsService(
            home / "results.duckdb",
            api_key=keys[BYSTANDER]["read"],
            admin_key=keys[BYSTANDER]["admin"],
        )
        worker = StreamWorker(home / "stream.log")
        platform = Platform(
            kafka_bootstrap, topics, home, control, collector, results, worker, keys
        )
        try:
            with control, collector, results:
                for tenant in (HOSTILE, BYSTANDER):
                    control.ok(
                        "POST",
                        f"/v1/tenants/{tenant}/experiments",
                        keys[tenant]["admin"],
                        {"experiment": EXPERIMENT},
                    )
                _wait_until_key_known(platform, collector, keys[BYSTANDER]["ingest"])
                _wait_until_key_known(platform, collector, keys[HOSTILE]["ingest"])
                yield platform
        finally:
            worker.stop()
            with contextlib.suppress(Exception):
                delete_namespace_topics(kafka_bootstrap, namespace)


def test_bystander_traffic_works_before_anything_hostile(platform: Platform) -> None:
    platform.assert_unharmed()


# ---------------------------------------------------------------------------------------
# Collector and dead-letter cases (ingest: sizes, keys, producers, idempotency).
# ---------------------------------------------------------------------------------------


MIB = 1024 * 1024


def _event(kind: str = "outcome", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "unit_id": f"m-{uuid.uuid4().hex[:8]}",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    if kind == "outcome":
        base["event"] = "purchase"
    else:
        base |= {"experiment_key": "checkout", "variant_key": "treatment"}
    return base | fields


def _mallory_sends(platform: Platform, events: list[Any]) -> httpx.Response:
    return platform.call(
        platform.collector, "POST", "/v1/events", platform.keys[HOSTILE]["ingest"], json=events
    )


def _letters_of(platform: Platform, tenant: str) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on the dead-letter topic that names ``tenant``."""
    return [
        (key, value)
        for key, value in read_topic(platform.bootstrap, platform.topics.deadletter)
        if DeadLetter.model_validate_json(value).tenant_id == tenant
    ]


@pytest.mark.parametrize("field", ["tenant_id", "unit_id"])
def test_a_megabyte_id_is_refused_by_name_with_a_dead_letter_the_broker_takes(
    platform: Platform, field: str
) -> None:
    """Why #1: a 1 MiB ``tenant_id`` or ``unit_id`` made a dead letter larger than the
    broker takes, and every later request of every tenant got 503 for good."""
    before = len(_letters_of(platform, HOSTILE))
    answer = _mallory_sends(platform, [_event(**{field: "m" * MIB})])
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert len(answer.content) < 2000  # the value is quoted, not echoed
    # The same again in a batch with a good event: only the bad one is refused.
    mixed = _mallory_sends(platform, [_event(), _event(**{field: "m" * MIB})])
    assert mixed.status_code == 207, mixed.text
    assert [e["index"] for e in mixed.json()["errors"]] == [1]
    letters = _letters_of(platform, HOSTILE)[before:]
    assert len(letters) == 2
    for key, value in letters:
        assert len(value) <= MAX_DEAD_LETTER_BYTES
        assert key is not None and len(key) <= MAX_RECORD_KEY_BYTES
        assert "truncated" in DeadLetter.model_validate_json(value).payload
    platform.assert_unharmed()


def test_deeply_nested_properties_and_bodies_are_4xx_never_a_traceback(platform: Platform) -> None:
    """Why #6: nested event ``properties`` answered 500 with a traceback per request."""
    nested: Any = 1
    for _ in range(300):
        nested = {"k": nested}
    answer = _mallory_sends(platform, [_event(properties=nested)])
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["properties"]
    assert "deeper than" in answer.text
    deep_body = b"[" * 10_000 + b"]" * 10_000
    whole = platform.call(
        platform.collector,
        "POST",
        "/v1/events",
        platform.keys[HOSTILE]["ingest"],
        content=deep_body,
        headers={"Content-Type": "application/json"},
    )
    assert whole.status_code == 400, whole.text
    assert "JSON" in whole.json()["detail"]
    wide = _mallory_sends(platform, [_event(properties={f"k{i}": "v" for i in range(5000)})])
    assert wide.status_code == 422, wide.text
    assert wide.json()["errors"][0]["field"] == "properties"
    platform.assert_unharmed()


def test_thousands_of_bad_fields_give_bounded_errors(platform: Platform) -> None:
    """Thousands of unknown fields, each a per-event error: the answer and the dead letter
    list a bounded number of them and count the rest."""
    event = _event() | {f"extra_{i}": i for i in range(2000)}
    answer = _mallory_sends(platform, [event])
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert len(errors) == 20
    assert "1981 more errors" in errors[-1]["reason"]
    platform.assert_unharmed()


def test_a_batch_without_event_ids_sent_twice_is_counted_once(platform: Platform) -> None:
    """Idempotency without ``event_id``: a client's retry of the same batch (after a lost
    answer) carries the same content, so the same derived ids; the stream counts it once."""
    alice = platform.keys[BYSTANDER]
    platform.control.ok(
        "POST",
        f"/v1/tenants/{BYSTANDER}/experiments",
        alice["admin"],
        {
            "experiment": {
                "key": "retries",
                "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
                "metrics": [{"name": "revenue", "event": "purchase", "type": "sum"}],
            }
        },
    )
    unit = f"r-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    batch = [
        {
            "type": "exposure",
            "unit_id": unit,
            "timestamp": now,
            "experiment_key": "retries",
            "variant_key": "treatment",
        },
        {"type": "outcome", "unit_id": unit, "timestamp": now, "event": "purchase", "value": 10},
    ]
    for _ in range(2):  # the retry
        sent = platform.call(
            platform.collector, "POST", "/v1/events", alice["ingest"], json={"events": batch}
        )
        assert sent.status_code == 202, sent.text
    # A last purchase of the same unit (same partition, after both copies): once it is
    # counted, both copies were seen.
    marker = {**batch[1], "value": 1, "event_id": str(uuid.uuid4())}
    sent = platform.call(platform.collector, "POST", "/v1/events", alice["ingest"], json=[marker])
    assert sent.status_code == 202, sent.text
    path = f"/v1/tenants/{BYSTANDER}/experiments/retries/results"

    def settled() -> dict[str, Any] | None:
        answer = platform.call(platform.results, "GET", path, alice["read"])
        if answer.status_code != httpx.codes.OK:
            return None
        treatment: dict[str, Any] = answer.json()["metrics"][0]["treatment"]
        return treatment if treatment["mean"] not in (None, 10) else None

    treatment = wait_until(
        settled, timeout=60, what="the retried batch never counted", interval=0.3
    )
    assert (treatment["units"], treatment["mean"]) == (1, 11)  # 10 once, then 1; not 21
    platform.assert_unharmed()


# ---------------------------------------------------------------------------------------
# Control-plane cases (definitions, flags, keys, bodies, YAML).
# ---------------------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = True
    for _ in range(depth):
        value = [value]
    return value


def _mallory_control(
    platform: Platform, method: str, path: str, body: Any = None, key: str | None = "admin"
) -> httpx.Response:
    """Mallory's request to the control service (``key``: her key of that role, or None)."""
    secret = None if key is None else platform.keys[HOSTILE][key]
    return platform.call(
        platform.control, method, f"/v1/tenants/{HOSTILE}{path}", secret, json=body
    )


def _fields(answer: httpx.Response) -> set[str]:
    return {problem["field"] for problem in answer.json()["errors"]}


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ({"window_hours": 1e300}, "window_hours"),
        ({"cuped_lookback_days": 1e300}, "cuped_lookback_days"),
    ],
)
def test_a_metric_window_or_lookback_beyond_a_year_is_422_by_name(
    platform: Platform, metric: dict[str, Any], field: str
) -> None:
    # Once accepted, these crashed the stream worker (OverflowError) at every restart.
    definition = {"name": "endless", "event": "purchase", "type": "sum", **metric}
    answer = _mallory_control(platform, "POST", "/metrics", {"metric": definition})
    assert answer.status_code == 422, answer.text
    assert _fields(answer) == {f"metric.{field}"}
    experiment = {**EXPERIMENT, "key": "endless", "metrics": [definition]}
    answer = _mallory_control(platform, "POST", "/experiments", {"experiment": experiment})
    assert answer.status_code == 422, answer.text
    assert _fields(answer) == {f"experiment.metrics.0.{field}"}
    platform.assert_unharmed()


@pytest.mark.parametrize("depth", [200, 300])
def test_a_deeply_nested_flag_value_is_422_by_name(platform: Platform, depth: int) -> None:
    # 199-253 levels were once written, skipped by every follower and answered 404; 254: 500.
    flag = {"key": f"deep-{depth}", "value_type": "json", "on_value": _nested(depth)}
    answer = _mallory_control(platform, "POST", "/flags", {"flag": flag})
    assert 400 <= answer.status_code < 500, answer.text
    assert any(field.startswith("flag.on_value") for field in _fields(answer)), answer.text
    assert _mallory_control(platform, "GET", f"/flags/deep-{depth}").status_code == 404
    platform.assert_unharmed()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/keys", {"role": "read", "label": "l" * 5000}, "label"),
        ("/keys", {"role": "read", "reason": "r" * 5000}, "reason"),
        ("/experiments/checkout/pause", {"reason": "r" * 5000}, "reason"),
        ("/holdout", {"percent": 5, "reason": "r" * 5000}, "reason"),
    ],
)
def test_a_long_label_or_reason_is_422_by_name(
    platform: Platform, path: str, body: dict[str, Any], field: str
) -> None:
    method = "PUT" if path == "/holdout" else "POST"
    answer = _mallory_control(platform, method, path, body)
    assert answer.status_code == 422, answer.text
    assert _fields(answer) == {field}
    assert "4096" in answer.text
    platform.assert_unharmed()


@pytest.mark.parametrize("field", ["label", "reason"])
def test_a_two_megabyte_label_or_reason_is_413_not_a_broker_outage(
    platform: Platform, field: str
) -> None:
    # Once answered 503 "broker outage": the event was larger than the broker takes.
    answer = _mallory_control(platform, "POST", "/keys", {"role": "read", field: "x" * 2_000_000})
    assert answer.status_code == 413, answer.text
    assert "the limit is 1048576 bytes" in answer.json()["detail"]
    platform.assert_unharmed()


@pytest.mark.parametrize("service", ["control", "results"])
@pytest.mark.parametrize("key", [None, "admin"])
def test_a_fifty_megabyte_body_is_413_before_the_key_is_checked(
    platform: Platform, service: str, key: str | None
) -> None:
    target = platform.control if service == "control" else platform.results
    path = (
        f"/v1/tenants/{HOSTILE}/experiments"
        if service == "control"
        else f"/v1/tenants/{HOSTILE}/replays"
    )
    secret = None if key is None else platform.keys[HOSTILE][key]
    started = time.monotonic()
    answer = platform.call(
        target,
        "POST",
        path,
        secret,
        content=b"[" * (50 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.text
    assert "the limit is 1048576 bytes" in answer.json()["detail"]
    assert time.monotonic() - started < 20
    platform.assert_unharmed()


@pytest.mark.parametrize("service", ["control", "results", "collector"])
def test_metrics_need_the_operator_token_and_name_no_tenant(
    platform: Platform, service: str
) -> None:
    target = {"control": platform.control, "results": platform.results}.get(
        service, platform.collector
    )
    for key in (None, platform.keys[HOSTILE]["admin"], platform.keys[HOSTILE]["read"]):
        answer = platform.call(target, "GET", "/metrics", key)
        assert answer.status_code == 401, answer.text
        assert "liftstream_" not in answer.text
    answer = platform.call(target, "GET", "/metrics", METRICS_TOKEN)
    assert answer.status_code == 200
    assert "liftstream_" in answer.text
    assert HOSTILE not in answer.text and BYSTANDER not in answer.text
    platform.assert_unharmed()


def test_error_bodies_carry_no_broker_address(platform: Platform) -> None:
    port = platform.bootstrap.rsplit(":", 1)[-1]
    answers = [
        _mallory_control(platform, "POST", "/keys", {"role": "read", "label": "l" * 5000}),
        _mallory_control(platform, "GET", "/flags/nope"),
        platform.call(platform.control, "GET", "/healthz"),
        platform.call(platform.results, "GET", "/healthz"),
        platform.call(
            platform.results,
            "GET",
            f"/v1/tenants/{HOSTILE}/experiments/nope/results",
            platform.keys[HOSTILE]["read"],
        ),
    ]
    for answer in answers:
        assert platform.bootstrap not in answer.text and f":{port}" not in answer.text
        assert "bootstrap" not in answer.text.lower()


def test_a_flood_of_changes_is_throttled_for_its_tenant_alone(platform: Platform) -> None:
    # All 80 changes in flight at once: every change waits for the shared write path, so
    # only a quota taken before it keeps one tenant from filling it. (With fewer
    # connections than changes, a slow machine's write path paces the flood below the
    # refill rate and nothing is throttled.)
    def change(attempt: int) -> httpx.Response:
        return _mallory_control(platform, "PUT", "/holdout", {"percent": attempt % 2})

    with ThreadPoolExecutor(max_workers=80) as pool:
        answers = list(pool.map(change, range(80)))
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) == {200, 429} and statuses[200] <= 30 + 2 * 60, statuses
    throttled = next(answer for answer in answers if answer.status_code == 429)
    assert int(throttled.headers["Retry-After"]) >= 1
    assert "over its quota" in throttled.json()["detail"]
    alice = platform.keys[BYSTANDER]["admin"]
    started = time.monotonic()
    answer = platform.call(
        platform.control, "PUT", f"/v1/tenants/{BYSTANDER}/holdout", alice, json={"percent": 0}
    )
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 5
    platform.assert_unharmed()


def _quarantined(platform: Platform, service: str = "control") -> float:
    """A service's count of quarantined control events, from its /metrics."""
    target = {"control": platform.control, "results": platform.results}.get(
        service, platform.collector
    )
    metrics = platform.call(target, "GET", "/metrics", METRICS_TOKEN).text
    prefix = f'liftstream_control_events_quarantined_total{{service="{service}"}} '
    [line] = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


def _poison(platform: Platform, messages: list[tuple[bytes, bytes]]) -> None:
    """Write ``messages`` to the control topic directly, as no API would."""
    produce(platform.bootstrap, platform.topics.control, messages)


def test_poison_in_the_control_log_is_quarantined_for_its_tenant_alone(
    platform: Platform,
) -> None:
    mallory = platform.keys[HOSTILE]
    followers = ("control", "collector", "results")
    quarantined_before = {service: _quarantined(platform, service) for service in followers}
    flag = {"key": "poison", "value_type": "json", "on_value": _nested(250)}
    endless = {"name": "endless", "event": "purchase", "type": "sum", "window_hours": 1e300}
    event = {"tenant_id": HOSTILE, "author": "operator"}
    _poison(
        platform,
        [
            (f"{HOSTILE}:garbage".encode(), b"\xff\xfe this is not JSON"),
            (
                f"{HOSTILE}:poison".encode(),
                json.dumps({**event, "type": "flag_defined", "flag": flag}).encode(),
            ),
            (
                f"{HOSTILE}:endless".encode(),
                json.dumps(
                    {**event, "type": "metric_defined", "version": 1, "metric": endless}
                ).encode(),
            ),
            (
                f"{HOSTILE}:checkout".encode(),
                json.dumps(
                    {
                        **event,
                        "type": "experiment_defined",
                        "experiment": {**EXPERIMENT, "version": 2, "metrics": [endless]},
                    }
                ).encode(),
            ),
        ],
    )

    def four_errors() -> list[dict[str, Any]] | None:
        tenant = platform.call(platform.control, "GET", f"/v1/tenants/{HOSTILE}", mallory["read"])
        assert tenant.status_code == 200, tenant.text
        found: list[dict[str, Any]] = tenant.json()["errors"]
        return found if len(found) >= 4 else None

    errors = wait_until(four_errors, timeout=30, what="mallory's tenant shows fewer than 4 errors")
    assert [error["key"] for error in errors[-4:]] == ["garbage", "poison", "endless", "checkout"]

    # The affected resources say why; the experiment keeps its last good definition.
    flag_answer = platform.call(
        platform.control, "GET", f"/v1/tenants/{HOSTILE}/flags/poison", mallory["read"]
    )
    assert flag_answer.status_code == 404
    assert "could not be used and was skipped" in flag_answer.text
    experiment = platform.call(
        platform.control, "GET", f"/v1/tenants/{HOSTILE}/experiments/checkout", mallory["read"]
    ).json()
    assert experiment["experiment"]["version"] == 1
    assert "window_hours" in experiment["errors"][-1]["reason"]

    # Alice sees none of it, and every service (stream worker included) keeps serving.
    alice = platform.call(
        platform.control, "GET", f"/v1/tenants/{BYSTANDER}", platform.keys[BYSTANDER]["read"]
    )
    assert alice.json()["errors"] == []
    # Every service following the control topic skipped the same four, and counted them.
    for service in followers:
        wait_until(
            lambda s=service: _quarantined(platform, s) >= quarantined_before[s] + 4,
            timeout=30,
            what=f"{service} did not count the poison",
            interval=0.3,
        )
        assert _quarantined(platform, service) == quarantined_before[service] + 4
    platform.assert_unharmed()
    # And mallory's own valid changes still go through.
    ramp = _mallory_control(platform, "POST", "/experiments/checkout/ramp", {"traffic": 50})
    assert ramp.status_code == 200, ramp.text


# ---------------------------------------------------------------------------------------
# Stream, loader and results cases (quarantine, tenant keying, bounded reads, leaks).
# ---------------------------------------------------------------------------------------


def _read(platform: Platform, tenant: str, path: str, role: str = "read") -> httpx.Response:
    return platform.call(
        platform.results, "GET", f"/v1/tenants/{tenant}{path}", platform.keys[tenant][role]
    )


def _figures_agree(platform: Platform, tenant: str) -> dict[str, Any]:
    """The stream's scorecard, the last day of /daily (from the raw log) and a replay of
    the conversion (from the raw log) for ``tenant``: units and conversions per variant."""
    scorecard = _read(platform, tenant, "/experiments/checkout/results").json()
    purchased = [m for m in scorecard["metrics"] if m["metric"] == "purchased"]
    stream = {
        arm["variant_key"]: (arm["units"], round((arm["mean"] or 0.0) * arm["units"]))
        for comparison in purchased
        for arm in (comparison["control"], comparison["treatment"])
    }
    days = _read(platform, tenant, "/experiments/checkout/daily").json()["days"]
    daily = {
        variant["variant_key"]: (
            variant["units"],
            round(
                sum(
                    s["sum"]
                    for s in variant["stats"]
                    if s["event"] == "purchase" and s["aggregation"] == "conversion"
                )
            ),
        )
        for variant in (days[-1]["variants"] if days else [])
    }
    job = platform.call(
        platform.results,
        "POST",
        f"/v1/tenants/{tenant}/replays",
        platform.keys[tenant]["admin"],
        json={"metric": "purchased", "experiment": "checkout"},
    ).json()
    while job["status"] == "running":
        time.sleep(0.1)
        job = _read(platform, tenant, f"/replays/{job['job_id']}").json()
    assert job["status"] == "done", job
    replay = {row["variant_key"]: (row["n"], round(row["sum_x"])) for row in job["results"]}
    return {"stream": stream, "daily": daily, "replay": replay}


def test_colliding_event_ids_keep_both_tenants_raw_logs_complete(platform: Platform) -> None:
    """mallory copies alice's event ids (same units, same ids): the raw log is keyed by
    tenant, so replay, /daily and the stream agree for both, and alice's are complete."""
    now = datetime.now(UTC).isoformat()
    ids = [str(uuid.uuid4()) for _ in range(20)]
    for tenant in (BYSTANDER, HOSTILE):
        events = []
        for index in range(10):
            unit = f"collide-{index}"
            variant = "treatment" if index % 2 else "control"
            events.append(
                _event("exposure", unit_id=unit, variant_key=variant, event_id=ids[index])
            )
            if index % 3 == 0:
                events.append(_event(unit_id=unit, timestamp=now, event_id=ids[10 + index]))
        answer = platform.call(
            platform.collector,
            "POST",
            "/v1/events",
            platform.keys[tenant]["ingest"],
            json={"events": events},
        )
        assert answer.status_code == httpx.codes.ACCEPTED, answer.text

    deadline = time.monotonic() + 60
    while True:
        figures = {tenant: _figures_agree(platform, tenant) for tenant in (BYSTANDER, HOSTILE)}
        agree = all(
            f["stream"] == f["daily"] == f["replay"] and f["stream"] for f in figures.values()
        )
        if agree or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert agree, figures
    # /daily and the replay read the raw log: had mallory's ids hidden alice's rows (or
    # hers), they would count fewer units than the stream
    for tenant in (BYSTANDER, HOSTILE):
        assert sum(units for units, _ in figures[tenant]["daily"].values()) >= 10
    health = _read(platform, BYSTANDER, "/experiments/checkout/health").json()
    assert health["exposures"] >= 10 and health["duplicate_exposures"] == 0
    platform.assert_unharmed()


def test_a_poison_metric_on_the_control_topic_is_shown_on_its_experiment_only(
    platform: Platform,
) -> None:
    """A metric with ``window_hours: 1e300`` written straight to the control topic
    (bypassing the API): the stream keeps aggregating alice, and mallory's experiment
    says what could not be processed."""
    poison = ExperimentDefined(
        tenant_id=HOSTILE,
        author="operator",
        occurred_at=datetime.now(UTC),
        experiment=Experiment.model_validate(EXPERIMENT),
    ).model_dump(mode="json")
    poison["experiment"]["metrics"].append(
        {"name": "poison", "event": "purchase", "type": "mean", "window_hours": 1e300}
    )
    produce(
        platform.bootstrap,
        platform.topics.control,
        [(f"{HOSTILE}:checkout".encode(), orjson.dumps(poison))],
    )
    errors = wait_until(
        lambda: _read(platform, HOSTILE, "/experiments/checkout/results").json()["errors"],
        timeout=60,
        what="mallory's experiment never showed the error",
        interval=0.3,
    )
    assert "window_hours" in " ".join(error["reason"] for error in errors), errors
    health = _read(platform, HOSTILE, "/experiments/checkout/health").json()
    assert health["errors"] == errors
    assert _read(platform, BYSTANDER, "/experiments/checkout/results").json()["errors"] == []
    assert platform.worker.alive(), platform.worker.log_tail()
    platform.assert_unharmed()


def test_outcome_values_whose_squares_overflow_are_refused_and_never_stall_publishing(
    platform: Platform,
) -> None:
    """Two outcomes of 1e300 once summed to inf, then inf - inf: a NaN sum of squares the
    aggregates contract refuses, which held back every tenant's publication."""
    unit = f"big-{uuid.uuid4().hex[:6]}"
    exposure = _event("exposure", unit_id=unit)
    answer = _mallory_sends(platform, [_event(unit_id=unit, value=1e300)])
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["value"]
    # straight to Kafka, bypassing the collector: the stream refuses them as dead letters
    now = datetime.now(UTC).isoformat()
    key = f"{HOSTILE}:{unit}".encode()
    direct = [
        {**_event(unit_id=unit, value=1e300, timestamp=now), "event_id": str(uuid.uuid4())}
        for _ in range(2)
    ]
    produce(
        platform.bootstrap,
        platform.topics.exposures,
        [(key, orjson.dumps({**exposure, "tenant_id": HOSTILE, "event_id": str(uuid.uuid4())}))],
    )
    produce(
        platform.bootstrap,
        platform.topics.outcomes,
        [(key, orjson.dumps({**event, "tenant_id": HOSTILE})) for event in direct],
    )

    def refused_twice() -> bool:  # mallory sees them refused, by stage and field
        health = _read(platform, HOSTILE, "/experiments/checkout/health").json()
        refused = {(r["stage"], r["field"]): r["count"] for r in health["rejected_by_reason"]}
        return refused.get(("stream", "value"), 0) >= 2

    wait_until(refused_twice, timeout=60, what="the stream's refusals never showed", interval=0.3)
    platform.assert_unharmed()


def test_daily_through_the_year_9999_is_a_bounded_answer(platform: Platform) -> None:
    """Once 12 MB and 10 s for a read key (and another tenant's /results p99 at 991 ms):
    now clamped to the data's span and MAX_DAILY_DAYS, under the query budget."""
    answers: list[httpx.Response] = []

    def hammer() -> None:
        for _ in range(5):
            answers.append(
                _read(platform, HOSTILE, "/experiments/checkout/daily?through=9999-12-31")
            )

    hostile = threading.Thread(target=hammer)
    hostile.start()
    while hostile.is_alive():
        alice = _read(platform, BYSTANDER, "/experiments/checkout/results")
        assert alice.status_code == httpx.codes.OK, alice.text
    hostile.join()
    for answer in answers:
        assert answer.status_code == httpx.codes.OK, answer.text
        body = answer.json()
        assert len(body["days"]) <= MAX_DAILY_DAYS
        assert len(answer.content) < 1024 * 1024
        assert body["days"] == [] or "9999-12-31" in body["clamped"]
    platform.assert_unharmed()


def test_nan_and_other_bad_query_values_are_422_naming_the_parameter(platform: Platform) -> None:
    for query in ("since=NaN", "through=NaN", "since=1e308", "through=9999-99-99"):
        answer = _read(platform, HOSTILE, f"/experiments/checkout/daily?{query}")
        assert answer.status_code == 422, (query, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == [query.split("=")[0]]
    replay = platform.call(
        platform.results,
        "POST",
        f"/v1/tenants/{HOSTILE}/replays",
        platform.keys[HOSTILE]["admin"],
        content=b'{"metric": "purchased", "since": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert replay.status_code == 422, replay.text
    assert [e["field"] for e in replay.json()["errors"]] == ["since"]
    platform.assert_unharmed()


def test_platform_wide_progress_and_the_data_files_are_not_for_tenants(
    platform: Platform,
) -> None:
    for role in ("ingest", "read"):
        answer = platform.call(
            platform.results, "GET", "/v1/progress", platform.keys[HOSTILE][role]
        )
        assert answer.status_code == httpx.codes.FORBIDDEN, (role, answer.text)
    files = [
        path
        for path in platform.home.iterdir()
        if path.name.startswith(("results.duckdb", "control.duckdb"))
    ]
    assert {path.name for path in files} >= {"results.duckdb", "control.duckdb"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert stat.S_IMODE(platform.home.stat().st_mode) == 0o700
    platform.assert_unharmed()


# ---------------------------------------------------------------------------------------
# Last: after every hostile case, the bystander is still served and nothing answered 5xx.
# ---------------------------------------------------------------------------------------


def test_zz_bystander_unharmed_after_everything(platform: Platform) -> None:
    platform.assert_unharmed()
