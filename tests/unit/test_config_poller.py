"""The SDK's config poller: 304 keeps the snapshot, a dead API keeps the last good one."""

from __future__ import annotations

import time

import httpx

from liftstream.local_config import ConfigPoller
from schemas.config import ConfigSnapshot, ExperimentConfig, FlagConfig
from schemas.experiment import Experiment
from schemas.flags import Flag
from tests.unit.fake_control_api import FakeControlApi

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "m", "event": "e", "type": "conversion"}],
        "overrides": {"qa-1": "treatment"},
    }
)


def _snapshot(revision: int, ramp: float, killed: bool = False) -> ConfigSnapshot:
    flag = Flag(key="dark-mode", value_type="string", on_value="dark", off_value="light", ramp=ramp)
    return ConfigSnapshot(
        tenant_id="acme",
        revision=revision,
        experiments=[ExperimentConfig(experiment=EXPERIMENT, killed=killed)],
        flags=[FlagConfig(flag=flag)],
    )


def _poller(api: FakeControlApi) -> ConfigPoller:
    return ConfigPoller(
        "http://control.invalid",
        "lsk_key",
        interval_s=3600,
        transport=httpx.MockTransport(api.handle),
    )


def test_the_poller_evaluates_locally_and_revalidates_with_the_etag() -> None:
    api = FakeControlApi(_snapshot(revision=3, ramp=100))
    poller = _poller(api)
    assert poller.flag("dark-mode", "user-1", default="unknown") == "unknown"  # nothing yet
    assert poller.refresh() is True
    assert poller.flag("dark-mode", "user-1") == "dark"
    assert poller.variant("checkout", "qa-1") == "treatment"
    assert poller.refresh() is False  # 304: nothing new
    assert api.requests[-1].headers["if-none-match"] == '"3"'
    assert api.requests[-1].headers["authorization"] == "Bearer lsk_key"

    api.snapshot = _snapshot(revision=4, ramp=0, killed=True)
    assert poller.refresh() is True
    assert poller.flag("dark-mode", "user-1") == "light"
    assert poller.variant("checkout", "qa-1") is None  # killed: off for everyone


def test_the_last_good_snapshot_survives_an_unreachable_or_broken_api() -> None:
    api = FakeControlApi(_snapshot(revision=1, ramp=100))
    poller = _poller(api)
    poller.refresh()
    api.down = True
    assert poller.refresh() is False
    assert poller.last_error is not None and "did not answer" in poller.last_error
    assert poller.flag("dark-mode", "user-1") == "dark"
    api.down, api.garbage = False, True
    assert poller.refresh() is False
    assert poller.last_error is not None and "invalid snapshot" in poller.last_error
    assert poller.variant("checkout", "qa-1") == "treatment"


def test_the_poller_thread_refreshes_at_its_interval() -> None:
    api = FakeControlApi(_snapshot(revision=1, ramp=100))
    poller = ConfigPoller(
        "http://control.invalid", "k", interval_s=0.05, transport=httpx.MockTransport(api.handle)
    )
    with poller:
        api.snapshot = _snapshot(revision=2, ramp=0)
        for _ in range(100):
            if poller.flag("dark-mode", "user-1") == "light":
                break
            time.sleep(0.02)
    assert poller.flag("dark-mode", "user-1") == "light"
