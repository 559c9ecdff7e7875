"""``liftstream up``: runs the platform, serves ``results`` to other terminals, stops cleanly.

The platform runs on the session's broker (``LIFTSTREAM_BOOTSTRAP``, so ``up`` starts only
the stream worker and the results service) except in the last test, where ``up`` starts a
broker of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liftstream.settings import Settings
from tests.integration.helpers_cli import (
    LIFTSTREAM,
    LiftstreamProcess,
    processes_of_namespace,
    wait_until_gone,
)

pytestmark = pytest.mark.integration

DEMO_UNITS = 3000
READY_TEXT = "liftstream is up"
DEMO_DONE_TEXT = "in another terminal: liftstream results checkout-button"


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[LiftstreamProcess]]:
    processes: list[LiftstreamProcess] = []
    yield processes
    for process in processes:
        process.stop()


def _platform_pids(settings: Settings) -> dict[str, int]:
    state = json.loads((settings.home / "platform.json").read_text())
    return {name: int(pid) for name, pid in state["pids"].items()}


def _another_terminal(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """A fresh shell that knows only where the data home is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTSTREAM_")}
    env["LIFTSTREAM_HOME"] = str(settings.home)
    return subprocess.run(
        [*LIFTSTREAM, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_up_with_demo_serves_results_to_another_terminal_and_stops_on_sigterm(
    platform_settings: Settings, tmp_path: Path, launched: list[LiftstreamProcess]
) -> None:
    up = LiftstreamProcess(["up", "--demo", "--units", str(DEMO_UNITS)], tmp_path / "up")
    launched.append(up)
    up.wait_for_output(DEMO_DONE_TEXT, timeout=300)
    pids = _platform_pids(platform_settings)
    assert {"supervisor", "stream", "results", "control", "collector", "controller"} <= set(pids)
    assert "broker" not in pids, "the broker named by LIFTSTREAM_BOOTSTRAP is not ours to start"

    shown = _another_terminal(platform_settings, "results", "checkout-button", "--json")
    assert shown.returncode == 0, shown.stderr
    scorecard = json.loads(shown.stdout)
    assert scorecard["tenant_id"] == "demo"
    assert scorecard["total_units"] == DEMO_UNITS
    assert sum(scorecard["sample_ratio"]["observed_units"].values()) == DEMO_UNITS
    assert {m["metric"] for m in scorecard["metrics"]} == {"conversion", "revenue", "page_views"}

    table = _another_terminal(platform_settings, "results", "checkout-button")
    assert table.returncode == 0, table.stderr

    # The services' /metrics answer the operator token up made (and recorded), not a key.
    state = json.loads((platform_settings.home / "platform.json").read_text())
    for url in (state["control_url"], state["results_url"], state["collector_url"]):
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        token = {"Authorization": f"Bearer {state['metrics_token']}"}
        assert httpx.get(f"{url}/metrics", headers=token, timeout=10).status_code == 200
    assert "conversion" in table.stdout and f"{DEMO_UNITS:,} units" in table.stdout

    os.kill(up.process.pid, signal.SIGTERM)
    assert up.wait(timeout=90) == 0, up.stderr
    assert "stopped" in up.stderr
    assert not (platform_settings.home / "platform.json").exists()
    assert wait_until_gone(platform_settings.namespace) == []

    after = _another_terminal(platform_settings, "results", "checkout-button")
    assert after.returncode == 1
    assert "no liftstream platform is running" in after.stderr
    assert "Traceback" not in after.stderr


def test_a_second_up_refuses_while_one_runs(
    platform_settings: Settings, tmp_path: Path, launched: list[LiftstreamProcess]
) -> None:
    up = LiftstreamProcess(["up"], tmp_path / "up")
    launched.append(up)
    up.wait_for_output(READY_TEXT, timeout=180)

    second = _another_terminal(platform_settings, "up")
    assert second.returncode == 1
    assert "a platform is already running" in second.stderr

    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait(timeout=90) == 0
    assert wait_until_gone(platform_settings.namespace) == []


@pytest.mark.slow
def test_up_starts_its_own_broker_when_none_is_named(
    platform_settings: Settings,
    tmp_path: Path,
    launched: list[LiftstreamProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFTSTREAM_BOOTSTRAP")
    up = LiftstreamProcess(["up"], tmp_path / "up")
    launched.append(up)
    up.wait_for_output(READY_TEXT, timeout=240)
    pids = _platform_pids(platform_settings)
    assert "broker" in pids
    assert (platform_settings.home / "kafka" / "broker.log").exists()

    applied = _another_terminal(
        platform_settings,
        "apply",
        "-f",
        str(Path(__file__).resolve().parents[2] / "examples" / "checkout-button.yaml"),
    )
    assert applied.returncode == 0, applied.stderr

    os.kill(up.process.pid, signal.SIGTERM)
    assert up.wait(timeout=120) == 0, up.stderr
    assert "stopping the Kafka broker" in up.stderr
    assert wait_until_gone(platform_settings.namespace) == []
    assert processes_of_namespace(platform_settings.namespace) == []
