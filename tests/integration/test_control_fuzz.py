"""Malformed requests to every POST/PUT of the control and results services: never a 5xx.

10,000 seeded requests (``LIFTSTREAM_FUZZ_REQUESTS``) on 8 keep-alive connections, each a
valid body of one route with one field (or the whole body) replaced by something hostile:
long strings up to 2 MB, nesting up to 20,000 levels, ``NaN``/``Infinity``, numbers JSON
has no room for, wrong types, broken UTF-8, bodies up to 2 MiB, no key or a wrong one.
No answer is >= 500; every refusal is JSON with a ``detail``; afterwards both services
still serve the bystander tenant, and the control topic holds nothing a follower skips.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from schemas.topics import TopicCatalog
from services.broker.topics import delete_namespace_topics, ensure_topics
from services.control_domain.control_log import read_control_state
from tests.integration.helpers_control import ControlService, create_tenant
from tests.integration.helpers_results import ResultsService

pytestmark = pytest.mark.integration

REQUESTS = int(os.environ.get("LIFTSTREAM_FUZZ_REQUESTS", "10000"))
SEED = 20261203
EXPERIMENT = {
    "key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
}
FLAG = {"key": "nav", "value_type": "json", "on_value": {"a": 1}, "off_value": None}
METRIC = {"name": "revenue", "event": "purchase", "type": "sum", "window_hours": 24}

#: (method, path under /v1/tenants/{t}, a valid body, which service)
ROUTES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/experiments", {"experiment": EXPERIMENT, "reason": "r"}, "control"),
    ("PUT", "/experiments/checkout", {"experiment": EXPERIMENT}, "control"),
    ("POST", "/experiments/checkout/start", {"reason": "go"}, "control"),
    ("POST", "/experiments/checkout/pause", {"reason": "hold"}, "control"),
    ("POST", "/experiments/checkout/ramp", {"traffic": 50}, "control"),
    ("POST", "/experiments/checkout/rollback", {"to_version": 1}, "control"),
    ("POST", "/experiments/checkout/kill", {"killed": False}, "control"),
    ("POST", "/flags", {"flag": FLAG}, "control"),
    ("PUT", "/flags/nav", {"flag": FLAG}, "control"),
    ("POST", "/flags/nav/ramp", {"ramp": 10}, "control"),
    ("POST", "/flags/nav/kill", {"killed": False}, "control"),
    ("POST", "/metrics", {"metric": METRIC}, "control"),
    ("PUT", "/metrics/revenue", {"metric": METRIC}, "control"),
    ("PUT", "/holdout", {"percent": 5}, "control"),
    ("POST", "/keys", {"role": "read", "label": "fuzz"}, "control"),
    ("POST", "/keys/abcdef012345/revoke", {"reason": "r"}, "control"),
    ("POST", "/replays", {"metric": "revenue"}, "results"),
]


def _nested(depth: int, rng: random.Random) -> str:
    """JSON text nested ``depth`` levels (as text: deeper than Python's json can write)."""
    opening, closing = ("[", "]") if rng.random() < 0.5 else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


HOSTILE_VALUES: list[Callable[[random.Random], str]] = [
    lambda rng: json.dumps("x" * rng.choice([257, 4097, 100_000, 2_000_000])),
    lambda rng: _nested(rng.choice([17, 200, 254, 300, 1000, 20_000]), rng),
    lambda rng: rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e300"]),
    lambda rng: rng.choice(["9" * 30, "9" * 5000, "-" + "9" * 20, "0.0000000001"]),
    lambda rng: rng.choice(["null", "true", "[]", "{}", '""', "[null]", '{"": ""}']),
    lambda rng: json.dumps(rng.choice(["\u0000", "\ud800", "é" * 300, "../../etc", "💥" * 70])),
    lambda rng: json.dumps([rng.random()] * rng.choice([33, 1001, 20_000])),
]


def _fields(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for name, child in value.items():
            yield from _fields(child, (*path, name))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _fields(child, (*path, index))


def _with_marker(value: Any, path: tuple[Any, ...], marker: str) -> Any:
    if not path:
        return marker
    copy = json.loads(json.dumps(value))
    holder = copy
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = marker
    return copy


def malformed_body(rng: random.Random, valid: dict[str, Any]) -> bytes:
    """``valid`` with one field (or everything) replaced by a hostile value, or raw junk."""
    roll = rng.random()
    if roll < 0.06:
        return rng.choice([b"", b"{", b"\xff\xfe\x00", b"[" * 50_000, b"x" * 2_100_000])
    if roll < 0.1:
        return json.dumps({**valid, "unexpected": 1}).encode()
    path = rng.choice(list(_fields(valid)))
    marker = f"@@{uuid.uuid4().hex}@@"
    text = json.dumps(_with_marker(valid, path, marker))
    return text.replace(json.dumps(marker), rng.choice(HOSTILE_VALUES)(rng)).encode(
        "utf-8", "surrogatepass"
    )


def _detail(response: httpx.Response) -> str:
    """The refusal's ``detail`` (cut), or '' if the body is not JSON with one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("detail", ""))[:200] if isinstance(body, dict) else ""


@dataclass(frozen=True)
class Platform:
    bootstrap: str
    topics: TopicCatalog
    control: ControlService
    results: ResultsService
    keys: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("control-fuzz")
    topics = TopicCatalog(namespace=namespace, event_partitions=2)
    ensure_topics(kafka_bootstrap, topics)
    keys = {
        tenant: create_tenant(kafka_bootstrap, topics.control, tenant)
        for tenant in ("fuzz", "calm")
    }
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LIFTSTREAM_BOOTSTRAP", kafka_bootstrap)
            env.setenv("LIFTSTREAM_NAMESPACE", namespace)
            env.setenv("LIFTSTREAM_PARTITIONS", "2")
            env.setenv("LIFTSTREAM_HOME", str(home))
            control = ControlService(home / "control.duckdb", dict(os.environ))
            results = ResultsService(home / "results.duckdb", api_key=keys["calm"]["read"])
            with control, results:
                for tenant in ("fuzz", "calm"):
                    admin = keys[tenant]["admin"]
                    control.ok(
                        "POST",
                        f"/v1/tenants/{tenant}/experiments",
                        admin,
                        {"experiment": EXPERIMENT},
                    )
                    control.ok("POST", f"/v1/tenants/{tenant}/flags", admin, {"flag": FLAG})
                    control.ok("POST", f"/v1/tenants/{tenant}/metrics", admin, {"metric": METRIC})
                yield Platform(kafka_bootstrap, topics, control, results, keys)
    finally:
        delete_namespace_topics(kafka_bootstrap, namespace)


def test_ten_thousand_malformed_requests_get_no_5xx(platform: Platform) -> None:
    rng = random.Random(SEED)
    fuzz = platform.keys["fuzz"]
    plans = []
    for _ in range(REQUESTS):
        method, path, valid, service = rng.choice(ROUTES)
        roll = rng.random()
        key = None if roll < 0.05 else "lsk_nope_nope" if roll < 0.08 else fuzz["admin"]
        plans.append((method, path, service, key, malformed_body(rng, valid)))

    bases = {"control": platform.control.url, "results": platform.results.url}

    def send(chunk: list[tuple[str, str, str, str | None, bytes]]) -> list[tuple[int, str, str]]:
        answers = []
        with httpx.Client(timeout=60) as client:
            for method, path, service, key, body in chunk:
                headers = {"Content-Type": "application/json"}
                if key is not None:
                    headers["Authorization"] = f"Bearer {key}"
                url = f"{bases[service]}/v1/tenants/fuzz{path}"
                response = client.request(method, url, content=body, headers=headers)
                answers.append((response.status_code, f"{method} {path}", _detail(response)))
        return answers

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        chunks = [plans[index::8] for index in range(8)]
        answers = [answer for result in pool.map(send, chunks) for answer in result]
    elapsed = time.monotonic() - started

    failures = [answer for answer in answers if answer[0] >= 500]
    assert not failures, f"{len(failures)} answers >= 500, e.g. {failures[:5]}"
    undetailed = [answer for answer in answers if answer[0] >= 400 and not answer[2]]
    assert not undetailed, f"refusals without a detail: {undetailed[:5]}"
    statuses = Counter(status for status, _, _ in answers)
    assert statuses[413] > 0 and statuses[422] > 0 and statuses[401] > 0, statuses
    print(f"{len(answers)} requests in {elapsed:.1f}s: {dict(sorted(statuses.items()))}")

    # Both services still serve the bystander, and nothing on the control topic is skipped.
    calm = platform.keys["calm"]
    answer = httpx.post(
        f"{platform.control.url}/v1/tenants/calm/flags/nav/ramp",
        json={"ramp": 20},
        headers={"Authorization": f"Bearer {calm['admin']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert platform.results.get("/v1/tenants/calm/experiments").status_code == 200
    state = read_control_state(platform.bootstrap, platform.topics.control)
    assert state.quarantined_count == 0
    assert platform.control.alive() and platform.results.alive()
