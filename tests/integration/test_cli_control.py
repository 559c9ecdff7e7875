"""``liftstream experiment|flag|key|holdout|history`` through the real control service.

The CLI reads the control API's answers as the models of ``schemas.control_api``; its
``--json`` output must still be what the service answered, and a refusal a message and
exit code 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from liftstream.settings import Settings
from liftstream_cli.control_api import ControlApi
from liftstream_cli.main import app
from tests.integration.helpers_control import ControlService, create_tenant

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout-button.yaml"
KEY = "checkout-button"
FLAG = {"key": "dark-mode", "value_type": "string", "on_value": "dark", "off_value": "light"}


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--tenant", "acme"])


def _run(*args: str) -> str:
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_experiments_flags_keys_and_holdout_are_changed_and_read_through_the_cli(
    platform_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = create_tenant(platform_settings.bootstrap, platform_settings.topics.control, "acme")
    with ControlService(tmp_path / "control.duckdb", dict(os.environ)) as service:
        monkeypatch.setenv("LIFTSTREAM_CONTROL_URL", service.url)
        monkeypatch.setenv("LIFTSTREAM_API_KEY", keys["admin"])
        base = "/v1/tenants/acme"
        _run("apply", "-f", str(EXAMPLE))

        # Experiments: what --json prints is what the service answered.
        shown = json.loads(_run("experiment", "show", KEY, "--json"))
        assert shown == service.ok("GET", f"{base}/experiments/{KEY}", keys["read"])
        listed = json.loads(_run("experiment", "list", "--json"))
        assert [state["key"] for state in listed] == [KEY]
        assert "paused" in _run("experiment", "pause", KEY, "--reason", "look")
        again = _invoke("experiment", "pause", KEY)
        assert again.exit_code == 1 and "cannot pause an experiment that is paused" in (
            again.stderr
        )
        assert "traffic 40%" in _run("experiment", "ramp", KEY, "40")
        not_a_number = _invoke("experiment", "ramp", KEY, "nan")
        assert not_a_number.exit_code == 1 and "traffic" in not_a_number.stderr
        assert "KILLED" in _run("experiment", "kill", KEY)
        assert "KILLED" not in _run("experiment", "kill", KEY, "--undo")
        assert "nothing to change" in _run("experiment", "kill", KEY, "--undo")
        document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        changed = tmp_path / "v2.yaml"
        changed.write_text(yaml.safe_dump({**document, "version": 2, "traffic": 10}))
        _run("apply", "-f", str(changed))
        assert "v3" in _run("experiment", "rollback", KEY, "1")
        assert "traffic 40%" in _run("experiment", "show", KEY)  # v1 as last ramped
        history = json.loads(_run("history", KEY, "--json"))
        assert history == service.ok("GET", f"{base}/experiments/{KEY}/history", keys["read"])
        assert [entry["type"] for entry in history][-2:] == [
            "experiment_defined",
            "experiment_rolled_back",
        ]
        assert "traffic: 10.0 -> 40.0" in _run("history", KEY)

        # Flags.
        flag_file = tmp_path / "flag.yaml"
        flag_file.write_text(yaml.safe_dump(FLAG))
        assert "dark-mode v1" in _run("flag", "apply", "-f", str(flag_file))
        assert "nothing to change" in _run("flag", "apply", "-f", str(flag_file))
        assert "ramp 30%" in _run("flag", "ramp", "dark-mode", "30")
        assert "KILLED" in _run("flag", "kill", "dark-mode")
        flag = json.loads(_run("flag", "show", "dark-mode", "--json"))
        assert flag["killed"] is True and flag["flag"]["ramp"] == 30
        assert [state["key"] for state in json.loads(_run("flag", "list", "--json"))] == [
            "dark-mode"
        ]
        assert "flag_ramped" in _run("history", "dark-mode", "--flag")

        # Keys and holdout.
        created = _run("key", "create", "read", "--label", "ci")
        key_id = created.split()[1]
        listed_keys = json.loads(_run("key", "list", "--json"))
        assert {"key_id": key_id, "label": "ci", "revoked": False}.items() <= next(
            key for key in listed_keys if key["key_id"] == key_id
        ).items()
        assert f"revoked {key_id}" in _run("key", "revoke", key_id)
        assert "holdout 5%" in _run("holdout", "5")

        with ControlApi(service.url, keys["admin"]) as api:
            assert api.tenant("acme").holdout_percent == 5
            assert api.experiment("acme", KEY).experiment.version == 3
            assert next(k for k in api.keys("acme") if k.key_id == key_id).revoked
