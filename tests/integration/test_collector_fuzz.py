"""Malformed requests against the real collector: never a 5xx, every refusal names a reason.

Hypothesis sends raw bytes, arbitrary JSON and near-valid events (a valid event with one
field replaced or removed); after all of them the collector still serves a valid batch.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftstream.settings import Settings
from tests.integration.helpers_control import create_tenant
from tests.integration.test_collector_service import CollectorProcess

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
