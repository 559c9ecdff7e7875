"""Malformed requests against the real collector: never a 5xx, every refusal names a reason.

Hypothesis sends raw bytes, arbitrary JSON and near-valid events (a valid event with one
field replaced or removed); after all of them the collector still serves a valid batch.

The second test sends 10,000 seeded malformed requests (``LIFTSTREAM_FUZZ_REQUESTS``) on 8
keep-alive connections, to ``/v1/events`` and the import endpoint: sizes up to 1 MiB
fields and 5 MiB bodies, nesting up to 20,000 levels, broken encodings, wrong types,
NaN/Infinity and numbers JSON has no room for, mixed good and bad batches. No answer is
>= 500, and every event a 207/422 refused is exactly one dead letter of at most
``MAX_DEAD_LETTER_BYTES`` with a bounded key (about 30 s here).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftstream.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.limits import MAX_DEAD_LETTER_BYTES, MAX_RECORD_KEY_BYTES
from tests.integration.helpers_collector import CollectorProcess, read_topic
from tests.integration.helpers_control import create_tenant

pytestmark = pytest.mark.integration

FIELDS = ["type", "event_id", "tenant_id", "unit_id", "timestamp", "event", "value", "properties"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def valid_outcome() -> dict[str, Any]:
    return {
        "type": "outcome",
        "event_id": str(uuid.uuid4()),
        "unit_id": "fuzz-unit",
        "timestamp": datetime.now(UTC).isoformat(),
        "event": "purchase",
        "value": 1.0,
    }


@st.composite
def near_valid_events(draw: st.DrawFn) -> dict[str, Any]:
    event = valid_outcome()
    name = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        event.pop(name, None)
    else:
        event[name] = draw(json_values)
    return event


def _json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(_json_body),
    st.lists(json_values, min_size=1, max_size=5).map(_json_body),
    st.lists(near_valid_events(), min_size=1, max_size=5).map(_json_body),
    st.lists(near_valid_events(), min_size=1, max_size=5).map(lambda e: _json_body({"events": e})),
)


def test_malformed_bodies_never_get_a_5xx_and_every_refusal_names_a_reason(
    platform_settings: Settings, tmp_path: Path
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "fuzz")
    with CollectorProcess(tmp_path / "collector.log") as collector:
        collector.wait_until_key_known(keys["ingest"])
        seen: Counter[int] = Counter()

        @settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(body=bodies)
        def check(body: bytes) -> None:
            answer = collector.post(None, keys["ingest"], raw=body)
            seen[answer.status_code] += 1
            assert answer.status_code < 500, (body, answer.status_code, answer.text)
            result = answer.json()
            if answer.status_code in (207, 422):
                assert result["errors"], result
                assert all(e["reason"] and "index" in e for e in result["errors"]), result
            elif answer.status_code == 202:
                assert result["rejected"] == 0 and result["accepted"] >= 1
            else:
                assert answer.status_code in (400, 413), answer.text
                assert isinstance(result["detail"], str) and result["detail"], result

        check()
        assert collector.alive()
        assert collector.post([valid_outcome()], keys["ingest"]).status_code == 202
        assert seen[400] and (seen[207] or seen[422]), seen


# ---------------------------------------------------------------------------------------
# Ten thousand malformed requests: sizes, depths, encodings, types, NaN/Infinity, huge
# numbers. None may be answered >= 500, and every event a 207/422 answer refuses is a
# dead letter the broker took, of at most MAX_DEAD_LETTER_BYTES.
# ---------------------------------------------------------------------------------------

FUZZ_REQUESTS = int(os.environ.get("LIFTSTREAM_FUZZ_REQUESTS", "10000"))
FUZZ_CONNECTIONS = 8
NOW = datetime.now(UTC).isoformat()


def _nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def _good(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "outcome",
        "unit_id": f"u{rng.randrange(1000)}",
        "timestamp": NOW,
        "event": "purchase",
        "value": rng.random(),
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }


def _wrong_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            -1,
            2**70,
            1e308,
            -0.0,
            "",
            "x" * rng.choice([1, 300, 5000]),
            [],
            {},
            [1, "2", None],
            {"nested": {"a": [1, 2]}},
            "2026-13-45T99:99:99Z",
            "\u202e\u0000\ufeff",
            _nested(rng.randrange(17, 300), kind=rng.choice(["list", "dict"])),
        ]
    )


def _bad_event(rng: random.Random) -> Any:
    event: dict[str, Any] = _good(rng)
    mutation = rng.randrange(8)
    if mutation == 0:
        event[rng.choice(list(event))] = _wrong_value(rng)
    elif mutation == 1:
        del event[rng.choice(list(event))]
    elif mutation == 2:
        # Deeper than orjson writes (254) and than the limit (16); json.dumps takes ~900.
        event["properties"] = _nested(rng.randrange(17, 600), kind=rng.choice(["list", "dict"]))
    elif mutation == 3:
        big = "m" * rng.choice([300, 70_000, 1024 * 1024])
        event[rng.choice(["tenant_id", "unit_id", "event", "properties"])] = big
    elif mutation == 4:
        event["properties"] = {f"k{i}": "v" * rng.choice([1, 2000]) for i in range(150)}
    elif mutation == 5:
        event |= {f"extra_{i}": i for i in range(rng.randrange(1, 500))}
    elif mutation == 6:
        event["timestamp"] = rng.choice(["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "now"])
    else:
        return _wrong_value(rng)
    return event


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _malformed_body(rng: random.Random) -> tuple[bytes, bool]:
    """One request body, and whether it may hold valid events (then 2xx is fine)."""
    kind = rng.randrange(14)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))), False
    if kind == 1:  # encodings
        return rng.choice(
            [
                b"\xff\xfe[\x00]\x00",
                '[{"unit_id": "ü"}]'.encode("utf-16"),
                b'[{"unit_id": "\xc0\xaf"}]',
                b'[{"unit_id": "\xe2\x82"}]',
                b'[{"unit_id": "\\ud800"}]',
                b"\xef\xbb\xbf[]",
            ]
        ), False
    if kind == 2:  # NaN, Infinity, numbers JSON has no room for
        token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"9" * 400, b"-1e999"])
        return (
            b'[{"type": "outcome", "unit_id": "u", "event": "e", "value": ' + token + b"}]",
            False,
        )
    if kind == 3:  # deep bodies
        depth = rng.choice([1025, 5000, 20_000])
        return b"[" * depth + b"]" * depth, False
    if kind == 4:
        depth = rng.randrange(100, 1000)
        return b'{"events": ' + b'{"k": ' * depth + b"1" + b"}" * (depth + 1), False
    if kind == 5:  # shapes
        return _json(rng.choice([{"events": 5}, {"evts": []}, [], {}, "events", None, 7])), False
    if kind == 6:
        return _json([_good(rng) for _ in range(1001)]), False
    if kind == 7:  # truncated and doubled JSON
        text = _json([_good(rng)])
        return rng.choice([text[: rng.randrange(1, len(text))], text + text]), False
    if kind == 8:  # duplicate keys
        return b'[{"type": "outcome", "type": "exposure", "unit_id": "u", "unit_id": 5}]', False
    if kind == 9 and rng.random() < 0.01:  # over the body limit (rarely: 5 MiB each)
        return b"[" + b" " * (5 * 1024 * 1024 + 10) + b"]", False
    return _json(
        [_bad_event(rng) if rng.random() < 0.7 else _good(rng) for _ in range(rng.randrange(1, 6))]
    ), True


def test_ten_thousand_malformed_requests_never_get_a_5xx_and_every_refusal_is_a_bounded_letter(
    platform_settings: Settings, tmp_path: Path
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "fuzz")
    rng = random.Random(20261203)
    bodies = [_malformed_body(rng)[0] for _ in range(FUZZ_REQUESTS)]
    # One request in ten to the import endpoint (admin key): the same path, no age limit.
    to_import = [rng.random() < 0.1 for _ in bodies]
    env = {"LIFTSTREAM_COLLECTOR_TENANT_QUOTAS": "fuzz=10000000:10000000"}
    with CollectorProcess(tmp_path / "collector.log", env) as collector:
        collector.wait_until_key_known(keys["ingest"])
        collector.wait_until_key_known(keys["admin"])
        local = threading.local()

        def send(body: bytes, importing: bool) -> tuple[int, dict[str, Any]]:
            if not hasattr(local, "client"):
                local.client = httpx.Client(
                    base_url=collector.url,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
            key = keys["admin"] if importing else keys["ingest"]
            answer = local.client.post(
                "/v1/tenants/fuzz/import" if importing else "/v1/events",
                content=body,
                headers={"Authorization": f"Bearer {key}"},
            )
            try:
                parsed = answer.json()
            except ValueError:
                parsed = {"unparsed": answer.text[:200]}
            return answer.status_code, parsed

        started = time.monotonic()
        with ThreadPoolExecutor(FUZZ_CONNECTIONS) as pool:
            answers = list(pool.map(send, bodies, to_import))
        elapsed = time.monotonic() - started
        statuses = Counter(status for status, _ in answers)
        assert collector.alive()
        assert collector.post([valid_outcome()], keys["ingest"]).status_code == 202

    failures = [(body[:200], a) for body, a in zip(bodies, answers, strict=True) if a[0] >= 500]
    assert not failures, failures[:5]
    assert set(statuses) <= {202, 207, 400, 413, 422}, statuses
    refused = sum(
        len({error["index"] for error in body["errors"]})
        for status, body in answers
        if status in (207, 422) and "errors" in body
    )
    assert statuses[207] and statuses[422] and statuses[400] and refused > 1000, statuses
    letters = read_topic(platform_settings.bootstrap, platform_settings.topics.deadletter)
    assert len(letters) == refused
    assert max(len(value) for _, value in letters) <= MAX_DEAD_LETTER_BYTES
    assert max(len(key or b"") for key, _ in letters) <= MAX_RECORD_KEY_BYTES
    assert {DeadLetter.model_validate_json(value).tenant_id for _, value in letters} == {"fuzz"}
    print(f"{FUZZ_REQUESTS} requests in {elapsed:.1f}s: {dict(statuses)}, {refused} letters")
