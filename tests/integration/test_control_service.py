"""The control service on the real broker: changes as events, and a projection rebuilt.

A tenant's admin makes every kind of change through the API. The state the API serves
and the DuckDB mirror are then identical after a restart, and after deleting the DuckDB
file and restarting (rebuilt from the control topic alone).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from liftstream.settings import Settings
from schemas.control import parse_control_event
from tests.integration.helpers_control import ControlService, create_tenant

pytestmark = pytest.mark.integration

CHECKOUT = {
    "key": "checkout",
    "status": "draft",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"name": "purchased", "event": "purchase", "type": "conversion"}],
    "targeting": {"all": [{"attribute": "country", "op": "in", "values": ["de", "fr"]}]},
    "layer": {"name": "checkout-page", "start": 0, "end": 50},
}


def _make_changes(service: ControlService, admin: str) -> None:
    base = "/v1/tenants/acme"
    service.ok("POST", f"{base}/experiments", admin, {"experiment": CHECKOUT, "reason": "new"})
    service.ok("POST", f"{base}/experiments/checkout/start", admin, {"reason": "go"})
    service.ok("POST", f"{base}/experiments/checkout/ramp", admin, {"traffic": 25})
    version_2 = {
        **CHECKOUT,
        "version": 2,
        "variants": [{"key": "control", "weight": 30}, {"key": "treatment", "weight": 70}],
    }
    del version_2["status"]
    service.ok("PUT", f"{base}/experiments/checkout", admin, {"experiment": version_2})
    service.ok("POST", f"{base}/experiments/checkout/rollback", admin, {"to_version": 1})
    service.ok("POST", f"{base}/experiments/checkout/pause", admin, {})
    service.ok("PUT", f"{base}/holdout", admin, {"percent": 5, "reason": "holdout"})
    flag = {"key": "dark-mode", "value_type": "string", "on_value": "dark", "off_value": "light"}
    service.ok("POST", f"{base}/flags", admin, {"flag": flag})
    service.ok("POST", f"{base}/flags/dark-mode/ramp", admin, {"ramp": 30})
    service.ok("POST", f"{base}/flags/dark-mode/kill", admin, {"reason": "bug"})
    metric = {"name": "revenue", "event": "purchase", "type": "sum"}
    service.ok("POST", f"{base}/metrics", admin, {"metric": metric, "reason": "track"})
    metric = {**metric, "role": "guardrail", "direction": "decrease"}
    service.ok("PUT", f"{base}/metrics/revenue", admin, {"metric": metric})
    key = service.ok("POST", f"{base}/keys", admin, {"role": "read", "label": "dashboard"})
    service.ok("POST", f"{base}/keys/{key['key_id']}/revoke", admin, {"reason": "leaked"})


def _served_state(service: ControlService, admin: str) -> dict[str, Any]:
    base = "/v1/tenants/acme"
    config = service.request("GET", "/v1/config", admin)
    return {
        "tenant": service.ok("GET", base, admin),
        "experiments": service.ok("GET", f"{base}/experiments", admin),
        "flags": service.ok("GET", f"{base}/flags", admin),
        "keys": service.ok("GET", f"{base}/keys", admin),
        "experiment_history": service.ok("GET", f"{base}/experiments/checkout/history", admin),
        "flag_history": service.ok("GET", f"{base}/flags/dark-mode/history", admin),
        "metrics": service.ok("GET", f"{base}/metrics", admin),
        "metric_history": service.ok("GET", f"{base}/metrics/revenue/history", admin),
        "config": config.json(),
        "etag": config.headers["etag"],
    }


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    connection = duckdb.connect(str(path), read_only=True)
    try:
        tables = [row[0] for row in connection.execute("SHOW TABLES").fetchall()]
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in tables
        }
    finally:
        connection.close()


def _control_events(settings: Settings) -> list[Any]:
    partition = TopicPartition(settings.topics.control, 0)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        events = []
        while consumer.position(partition) < end:
            for batch in consumer.poll(timeout_ms=2000).values():
                events.extend(parse_control_event(record.value) for record in batch)
        return events
    finally:
        consumer.close()


def test_changes_are_events_and_the_projection_is_rebuilt_identically(
    platform_settings: Settings, tmp_path: Path
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")
    admin = keys["admin"]
    db_path = tmp_path / "control.duckdb"
    with ControlService(db_path, dict(os.environ)) as service:
        _make_changes(service, admin)
        served = _served_state(service, admin)
    mirrored = _dump(db_path)

    # Every change is on the topic with its author (the admin key's id) and reason.
    events = _control_events(platform_settings)
    admin_id = admin.split("_")[1]
    changes = [e for e in events if e.author == admin_id]
    assert [e.type for e in changes] == [
        "experiment_defined",
        "experiment_started",
        "experiment_ramped",
        "experiment_defined",
        "experiment_rolled_back",
        "experiment_paused",
        "holdout_set",
        "flag_defined",
        "flag_ramped",
        "kill_switch_set",
        "metric_defined",
        "metric_defined",
        "api_key_issued",
        "api_key_revoked",
    ]
    assert changes[0].reason == "new" and changes[-1].reason == "leaked"
    assert all("lsk_" not in event.model_dump_json() for event in events), "a key in clear"

    # What the service serves reflects the changes.
    [experiment] = served["experiments"]
    assert experiment["versions"] == [1, 2, 3]
    assert experiment["experiment"]["status"] == "paused"
    assert experiment["experiment"]["traffic"] == 25
    assert [v["weight"] for v in experiment["experiment"]["variants"]] == [50, 50]
    assert served["flags"][0]["killed"] is True and served["flags"][0]["flag"]["ramp"] == 30
    assert served["config"]["holdout_percent"] == 5
    assert sum(key["revoked"] for key in served["keys"]) == 1
    diffs = {entry["type"]: entry["diff"] for entry in served["experiment_history"]}
    assert {"field": "traffic", "before": 100.0, "after": 25.0} in diffs["experiment_ramped"]
    assert len(mirrored["control_events"]) == len(events)
    assert len(mirrored["experiments"]) == 1 and len(mirrored["flags"]) == 1
    [metric] = served["metrics"]
    assert metric["versions"] == [1, 2] and metric["metric"]["role"] == "guardrail"
    assert [entry["version"] for entry in served["metric_history"]] == [1, 2]
    assert [row[1:4] for row in mirrored["metrics"]] == [("revenue", 2, "sum")]

    # Restart on the same file: the same state.
    with ControlService(db_path, dict(os.environ)) as service:
        assert _served_state(service, admin) == served
    assert _dump(db_path) == mirrored

    # Delete the file, restart: rebuilt from the topic, identical.
    for path in (db_path, db_path.with_name(db_path.name + ".wal")):
        path.unlink(missing_ok=True)
    with ControlService(db_path, dict(os.environ)) as service:
        assert _served_state(service, admin) == served
        # The ETag is a function of the content: a poller's cached copy stays valid.
        cached = httpx.get(
            f"{service.url}/v1/config",
            headers={"Authorization": f"Bearer {admin}", "If-None-Match": served["etag"]},
        )
        assert cached.status_code == 304 and cached.content == b""
    assert _dump(db_path) == mirrored
