"""Where settings come from: services and the SDK read the environment alone; only the CLI
falls back to the platform ``liftstream up`` recorded in platform.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liftstream.settings import load_settings as sdk_settings
from liftstream_cli.local_settings import load_settings as cli_settings
from services.settings import (
    CollectorSettings,
    ControllerSettings,
    ServiceSettings,
    StreamSettings,
    load,
)

RECORDED = {
    "bootstrap": "recorded:9092",
    "namespace": "recorded",
    "results_url": "http://127.0.0.1:1/",
    "api_key": "recorded-key",
}


@pytest.fixture
def recorded_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("BOOTSTRAP", "NAMESPACE", "RESULTS_URL", "API_KEY"):
        monkeypatch.delenv(f"LIFTSTREAM_{variable}", raising=False)
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    (tmp_path / "platform.json").write_text(json.dumps(RECORDED))
    return tmp_path


def test_only_the_cli_reads_platform_json(recorded_platform: Path) -> None:
    cli = cli_settings()
    assert (cli.bootstrap, cli.namespace, cli.api_key) == (
        "recorded:9092",
        "recorded",
        "recorded-key",
    )
    assert cli.results_url == "http://127.0.0.1:1"
    sdk = sdk_settings()
    assert (sdk.bootstrap, sdk.namespace, sdk.api_key, sdk.results_url) == (
        "",
        "liftstream",
        "",
        "",
    )
    service = load(StreamSettings).platform
    assert (service.bootstrap, service.namespace) == ("", "liftstream")
    assert service.home == recorded_platform


def test_the_environment_wins_over_platform_json_for_the_cli(
    recorded_platform: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTSTREAM_BOOTSTRAP", "env:9092")
    assert cli_settings().bootstrap == "env:9092"


def test_every_service_reads_the_variables_it_always_read() -> None:
    environ = {
        "LIFTSTREAM_BOOTSTRAP": "broker:9092",
        "LIFTSTREAM_NAMESPACE": "ns",
        "LIFTSTREAM_PARTITIONS": "8",
        "LIFTSTREAM_HOME": "/data",
        "LIFTSTREAM_KAFKA_OUTAGE_S": "42",
        "LIFTSTREAM_METRICS_TOKEN": "operator",
        "LIFTSTREAM_METRICS_TENANT_LABELS": "yes",
        "LIFTSTREAM_WEBHOOK_SECRET": "signing",
        "LIFTSTREAM_COLLECTOR_PRODUCE_TIMEOUT_S": "3",
        "LIFTSTREAM_COLLECTOR_BURST": "20",
        "LIFTSTREAM_STREAM_ENGINE": "aiokafka",
        "LIFTSTREAM_STREAM_SNAPSHOT_INTERVAL": "5",
        "LIFTSTREAM_LOG_LEVEL": "debug",
    }
    shared = load(ServiceSettings, environ)
    assert shared.platform.topics.control == "ns.control"
    assert shared.platform.partitions == 8
    assert shared.platform.duckdb_path == Path("/data/ns.duckdb")
    assert (shared.kafka_outage_s, shared.metrics_token) == (42, "operator")
    assert shared.metrics_tenant_labels is True
    assert load(ControllerSettings, environ).webhook_secret == "signing"
    collector = load(CollectorSettings, environ)
    assert (collector.produce_timeout_s, collector.burst) == (3, 20)
    stream = load(StreamSettings, environ)
    assert (stream.engine, stream.snapshot_interval, stream.log_level) == ("aiokafka", 5, "DEBUG")


def test_a_malformed_variable_is_named_with_its_value_and_reason() -> None:
    with pytest.raises(ValueError) as refused:
        load(StreamSettings, {"LIFTSTREAM_PARTITIONS": "0", "LIFTSTREAM_STREAM_ENGINE": "spark"})
    message = str(refused.value)
    assert "LIFTSTREAM_PARTITIONS='0': Input should be greater than 0" in message
    assert "LIFTSTREAM_STREAM_ENGINE='spark'" in message and "'faust' or 'aiokafka'" in message


def test_the_stream_engine_is_faust_unless_the_aiokafka_fallback_is_asked_for() -> None:
    assert load(StreamSettings, {}).engine == "faust"
    assert load(StreamSettings, {"LIFTSTREAM_STREAM_ENGINE": "aiokafka"}).engine == "aiokafka"
