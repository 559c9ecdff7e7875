"""``liftstream apply`` writes an ExperimentDefined event that a Kafka consumer reads back."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from liftstream.cli.main import app
from liftstream.control import load_experiment_file
from liftstream.settings import Settings
from schemas.control import parse_control_event

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout-button.yaml"


def _control_records(settings: Settings) -> list[tuple[bytes | None, bytes]]:
    partition = TopicPartition(settings.topics.control, 0)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        records: list[tuple[bytes | None, bytes]] = []
        while consumer.position(partition) < end:
            for batch in consumer.poll(timeout_ms=2000).values():
                records.extend((record.key, record.value) for record in batch)
        return records
    finally:
        consumer.close()


def test_apply_writes_the_experiment_for_the_tenant_and_author(
    platform_settings: Settings,
) -> None:
    result = CliRunner().invoke(
        app, ["apply", "-f", str(EXAMPLE), "--tenant", "acme", "--author", "alice"]
    )
    assert result.exit_code == 0, result.output
    assert "applied checkout-button" in result.stdout

    [(key, value)] = _control_records(platform_settings)
    event = parse_control_event(value)
    assert key == b"acme:checkout-button"
    assert (event.tenant_id, event.author) == ("acme", "alice")
    assert event.experiment == load_experiment_file(EXAMPLE)
    assert str(event.event_id) in result.stdout


def test_apply_defaults_to_the_environment_tenant(
    platform_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTSTREAM_TENANT", "globex")
    first = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLE)])
    monkeypatch.delenv("LIFTSTREAM_TENANT")
    second = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLE)])
    assert first.exit_code == second.exit_code == 0
    tenants = [
        parse_control_event(value).tenant_id for _key, value in _control_records(platform_settings)
    ]
    assert tenants == ["globex", "demo"]


def test_an_invalid_file_writes_nothing(platform_settings: Settings) -> None:
    invalid = EXAMPLE.parent / "invalid" / "weights-not-100.yaml"
    result = CliRunner().invoke(app, ["apply", "-f", str(invalid)])
    assert result.exit_code == 1
    assert _control_records(platform_settings) == []
