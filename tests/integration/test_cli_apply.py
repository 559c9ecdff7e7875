"""``liftstream apply`` goes through the control service: the event lands on the topic once.

The control service runs as a process on the real broker; the CLI finds it and its key
through ``LIFTSTREAM_CONTROL_URL`` and ``LIFTSTREAM_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from liftstream.settings import Settings
from liftstream_cli.control import load_experiment_file
from liftstream_cli.main import app
from schemas.control import ControlEvent, ExperimentDefined, parse_control_event
from tests.integration.helpers_control import ControlService, create_tenant

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout-button.yaml"


def _control_events(settings: Settings) -> list[tuple[bytes | None, ControlEvent]]:
    partition = TopicPartition(settings.topics.control, 0)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        records: list[tuple[bytes | None, ControlEvent]] = []
        while consumer.position(partition) < end:
            for batch in consumer.poll(timeout_ms=2000).values():
                records.extend((r.key, parse_control_event(r.value)) for r in batch)
        return records
    finally:
        consumer.close()


def _definitions(settings: Settings) -> list[tuple[bytes | None, ExperimentDefined]]:
    return [(k, e) for k, e in _control_events(settings) if isinstance(e, ExperimentDefined)]


@pytest.fixture
def keys(
    platform_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, dict[str, str]]]:
    """Tenants acme and globex; a control service; the CLI pointed at it with acme's key."""
    topic = platform_settings.topics.control
    keys = {t: create_tenant(platform_settings.bootstrap, topic, t) for t in ("acme", "globex")}
    with ControlService(tmp_path / "control.duckdb", dict(os.environ)) as service:
        monkeypatch.setenv("LIFTSTREAM_CONTROL_URL", service.url)
        monkeypatch.setenv("LIFTSTREAM_API_KEY", keys["acme"]["admin"])
        yield keys


def test_apply_defines_the_experiment_once_with_the_key_as_author(
    platform_settings: Settings, keys: dict[str, dict[str, str]]
) -> None:
    result = CliRunner().invoke(
        app, ["apply", "-f", str(EXAMPLE), "--tenant", "acme", "--reason", "launch"]
    )
    assert result.exit_code == 0, result.output
    assert "applied checkout-button (version 1, running)" in result.stdout

    [(key, event)] = _definitions(platform_settings)
    assert key == b"acme:checkout-button"
    assert (event.tenant_id, event.reason) == ("acme", "launch")
    assert event.author == keys["acme"]["admin"].split("_")[1]
    assert event.experiment == load_experiment_file(EXAMPLE)
    assert str(event.event_id) in result.stdout

    again = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLE), "--tenant", "acme"])
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.stdout
    assert len(_definitions(platform_settings)) == 1


def test_apply_defaults_to_the_environment_tenant_and_needs_its_key(
    platform_settings: Settings, keys: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTSTREAM_TENANT", "globex")
    refused = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLE)])
    assert refused.exit_code == 1
    assert "refused the API key" in refused.stderr and "LIFTSTREAM_API_KEY" in refused.stderr
    assert _definitions(platform_settings) == []

    monkeypatch.setenv("LIFTSTREAM_API_KEY", keys["globex"]["admin"])
    applied = CliRunner().invoke(app, ["apply", "-f", str(EXAMPLE)])
    assert applied.exit_code == 0, applied.output
    assert [e.tenant_id for _, e in _definitions(platform_settings)] == ["globex"]


def test_a_refused_change_names_the_field_and_writes_nothing(
    platform_settings: Settings,
    keys: dict[str, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFTSTREAM_TENANT", "acme")
    assert CliRunner().invoke(app, ["apply", "-f", str(EXAMPLE)]).exit_code == 0
    document = yaml.safe_load(EXAMPLE.read_text())
    document["variants"][0]["weight"], document["variants"][1]["weight"] = 40, 60
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(document))

    result = CliRunner().invoke(app, ["apply", "-f", str(changed)])
    assert result.exit_code == 1
    assert (
        "variants: changing the weights or variants of a running experiment needs a new "
        "version: give version 2" in result.stderr
    )
    invalid = CliRunner().invoke(
        app, ["apply", "-f", str(EXAMPLE.parent / "invalid" / "weights-not-100.yaml")]
    )
    assert invalid.exit_code == 1
    assert len(_definitions(platform_settings)) == 1

    document["version"] = 2
    changed.write_text(yaml.safe_dump(document))
    assert CliRunner().invoke(app, ["apply", "-f", str(changed)]).exit_code == 0
    versions = [e.experiment.version for _, e in _definitions(platform_settings)]
    assert versions == [1, 2]
