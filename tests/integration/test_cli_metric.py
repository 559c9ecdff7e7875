"""``liftstream metric``: apply, list, show and history through the real control service."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from liftstream.settings import Settings
from liftstream_cli.main import app
from tests.integration.helpers_control import ControlService, create_tenant

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "metrics" / "checkout.yaml"


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, ["metric", *args, "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_metrics_are_applied_versioned_listed_shown_and_their_history_kept(
    platform_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")
    with ControlService(tmp_path / "control.duckdb", dict(os.environ)) as service:
        monkeypatch.setenv("LIFTSTREAM_CONTROL_URL", service.url)
        monkeypatch.setenv("LIFTSTREAM_API_KEY", keys["admin"])
        example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

        _run("apply", "-f", str(EXAMPLE), "--reason", "launch")
        assert _run("apply", "-f", str(EXAMPLE)).count("nothing to change") == len(example)

        changed = {**example[0], "direction": "decrease"}
        edited = tmp_path / "edited.yaml"
        edited.write_text(yaml.safe_dump(changed), encoding="utf-8")
        assert "v2" in _run("apply", "-f", str(edited), "--reason", "flip")

        listed = json.loads(_run("list", "--json"))
        assert sorted(m["name"] for m in listed) == sorted(m["name"] for m in example)
        shown = json.loads(_run("show", example[0]["name"], "--json"))
        assert shown["version"] == 2 and shown["metric"]["direction"] == "decrease"
        history = json.loads(_run("history", example[0]["name"], "--json"))
        assert [(e["version"], e["reason"]) for e in history] == [(1, "launch"), (2, "flip")]
        assert "direction" in _run("history", example[0]["name"])

        missing = CliRunner().invoke(app, ["metric", "show", "nope", "--tenant", "acme"])
        assert missing.exit_code == 1 and "no metric 'nope'" in missing.stderr
