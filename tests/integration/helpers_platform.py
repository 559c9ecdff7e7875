"""Helpers for tests of a platform that ``liftstream up`` runs: its state file, polling
while ``up`` lives, and a collector client that retries what was not acknowledged."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from liftstream.settings import Settings
from tests.integration.helpers_cli import LiftstreamProcess

READY_TEXT = "liftstream is up"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout-button.yaml"
UNITS = 3000
UNITS_PER_BATCH = 100
HTTP_PARTS = {"results": "results_url", "control": "control_url", "collector": "collector_url"}


def platform_state(settings: Settings) -> dict[str, Any]:
    return dict(json.loads((settings.home / "platform.json").read_text()))


def wait_while_up(condition: Any, timeout: float, what: str, up: LiftstreamProcess) -> float:
    """Poll ``condition()`` until true; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert up.process.poll() is None, f"up exited:\n{up.stderr[-3000:]}"
        assert time.monotonic() - started < timeout, f"{what} after {timeout}s:\n{up.stderr}"
        time.sleep(0.1)
    return time.monotonic() - started


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


class RetryingSender(threading.Thread):
    """Sends the units' events in batches through the collector; a batch that is not
    acknowledged (503, 5xx, connection refused or reset) is sent again, same ids."""

    def __init__(self, url: str, key: str, variants: dict[str, str], pause_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.key = key
        self.variants = variants
        self.pause_s = pause_s
        self.retries = 0
        self.failure: str | None = None
        self.statuses: Counter[int] = Counter()
        self.retry_after_missing = 0

    def batches(self) -> list[list[dict[str, Any]]]:
        now = datetime.now(UTC).isoformat()
        units = list(self.variants)
        batches = []
        for start in range(0, len(units), UNITS_PER_BATCH):
            events: list[dict[str, Any]] = []
            for unit in units[start : start + UNITS_PER_BATCH]:
                events.append(
                    {
                        "event_id": str(uuid.uuid4()),
                        "type": "exposure",
                        "unit_id": unit,
                        "timestamp": now,
                        "experiment_key": "checkout-button",
                        "variant_key": self.variants[unit],
                    }
                )
                value = int(unit.rsplit("-", 1)[1]) % 7
                if value:
                    events.append(
                        {
                            "event_id": str(uuid.uuid4()),
                            "type": "outcome",
                            "unit_id": unit,
                            "timestamp": now,
                            "event": "purchase",
                            "value": value,
                        }
                    )
            batches.append(events)
        return batches

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        deadline = time.monotonic() + 600
        for batch in self.batches():
            while True:
                try:
                    answer = httpx.post(
                        f"{self.url}/v1/events", json={"events": batch}, headers=headers, timeout=20
                    )
                    self.statuses[answer.status_code] += 1
                    if answer.status_code == httpx.codes.SERVICE_UNAVAILABLE:
                        self.retry_after_missing += "Retry-After" not in answer.headers
                    if answer.status_code == httpx.codes.ACCEPTED:
                        break
                    if answer.status_code < 500 and answer.status_code != 401:
                        self.failure = f"{answer.status_code}: {answer.text[:300]}"
                        return
                except httpx.HTTPError:
                    pass
                self.retries += 1
                if time.monotonic() > deadline:
                    self.failure = "the collector did not come back in time"
                    return
                time.sleep(0.2)
            time.sleep(self.pause_s)  # spread the ingest over the faults


def outage_seconds(default: float = 20.0) -> float:
    """How long outage tests keep the broker down: ``LIFTSTREAM_OUTAGE_TEST_S``, else the
    reduced form's ``default``."""
    return float(os.environ.get("LIFTSTREAM_OUTAGE_TEST_S", "") or default)


def truth(variants: dict[str, str]) -> tuple[Counter[str], Counter[str]]:
    """Units and revenue per variant that ``RetryingSender`` sends for ``variants``."""
    units: Counter[str] = Counter(variants.values())
    revenue: Counter[str] = Counter()
    for unit, variant in variants.items():
        revenue[variant] += int(unit.rsplit("-", 1)[1]) % 7
    return units, revenue


def scorecard_when_complete(
    state: dict[str, Any], units: int, timeout: float, up: LiftstreamProcess
) -> dict[str, Any]:
    """The demo tenant's checkout-button scorecard once it counts ``units`` units."""
    scorecard: dict[str, Any] = {}

    def complete() -> bool:
        nonlocal scorecard
        try:
            answer = httpx.get(
                f"{state['results_url']}/v1/tenants/demo/experiments/checkout-button/results",
                headers={"Authorization": f"Bearer {state['api_key']}"},
                timeout=10,
            )
        except httpx.HTTPError:
            return False
        if answer.status_code != httpx.codes.OK:
            return False
        scorecard = answer.json()
        return bool(scorecard["total_units"] == units)

    wait_while_up(complete, timeout, "the scorecard did not reach every unit", up)
    return scorecard


def apply_example(state: dict[str, Any]) -> None:
    applied = httpx.post(
        f"{state['control_url']}/v1/tenants/demo/experiments",
        json={"experiment": example_experiment()},
        headers={"Authorization": f"Bearer {state['api_key']}"},
        timeout=20,
    )
    assert applied.is_success, applied.text


def example_experiment() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))


class SdkSender(threading.Thread):
    """Sends its units' exposures and purchases through the SDK's Kafka route, spread over
    ``batches`` pauses, then flushes (acknowledged by Kafka, or ``failure`` says why)."""

    def __init__(self, variants: dict[str, str], pause_s: float = 0.5, batches: int = 20) -> None:
        super().__init__(daemon=True)
        self.variants = variants
        self.pause_s = pause_s
        self.batches = batches
        self.failure: str | None = None

    def run(self) -> None:
        from liftstream import LiftstreamClient
        from schemas.experiment import Experiment

        experiment = Experiment.model_validate(example_experiment())
        units = list(self.variants)
        size = -(-len(units) // self.batches)
        try:
            with LiftstreamClient("demo") as client:
                for start in range(0, len(units), size):
                    for unit in units[start : start + size]:
                        client.expose(experiment, unit, variant=self.variants[unit])
                        value = int(unit.rsplit("-", 1)[1]) % 7
                        if value:
                            client.track(unit, "purchase", value=value)
                    time.sleep(self.pause_s)
                client.flush(timeout=120)
        except Exception as error:
            self.failure = repr(error)
