"""A flag under a rollout, as the SDKs serve it: the ramp's units on, as many held back
off, both logged (``on``/``off`` of the flag's key), the rest unlogged; growing the
rollout keeps every unit on its arm; ``client.flag``/``client.enabled`` and the
OpenFeature provider serve and log the same."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from liftstream.client import LiftstreamClient
from liftstream.local_config import ConfigPoller, FlagEvaluator
from liftstream.openfeature import LiftstreamProvider
from schemas.config import ConfigSnapshot, FlagConfig
from schemas.flags import Flag
from tests.unit.fake_control_api import FakeControlApi
from tests.unit.fake_producer import RecordingProducer

EU = {"attribute": "region", "op": "eq", "value": "eu"}
UNITS = [f"user-{index}" for index in range(20_000)]


def rollout_flag(percent: float, holdback: float | None = None) -> Flag:
    """The flag as a rollout's step serves it (the projection's ramp and holdback)."""
    return Flag(
        key="new-search",
        ramp=percent,
        holdback=percent if holdback is None else holdback,
        targeting=EU,
    )


def arms(flag: Flag) -> dict[str, set[str]]:
    evaluator = FlagEvaluator(FlagConfig(flag=flag))
    found: dict[str, set[str]] = {"on": set(), "off": set(), "unlogged": set()}
    for unit in UNITS:
        on, state = evaluator.resolve(unit, {"region": "eu"})
        found[evaluator.exposure(on, state) or "unlogged"].add(unit)
    return found


def test_growing_the_rollout_keeps_every_unit_on_its_arm() -> None:
    steps = [arms(rollout_flag(percent)) for percent in (1, 5, 25, 50)]
    for smaller, larger in itertools.pairwise(steps):
        assert smaller["on"] <= larger["on"]
        assert smaller["off"] <= larger["off"]
    last = steps[-1]
    assert not last["on"] & last["off"]
    for percent, step in zip((1, 5, 25, 50), steps, strict=True):
        expected = len(UNITS) * percent / 100
        spread = 5 * (expected * (1 - percent / 100)) ** 0.5  # five binomial sigmas
        assert abs(len(step["on"]) - expected) < spread, (percent, len(step["on"]))
        assert abs(len(step["off"]) - expected) < spread, (percent, len(step["off"]))
    # Completing serves on to everyone in the segment, the holdback included.
    assert arms(rollout_flag(100, holdback=0))["on"] == set(UNITS)


def test_nobody_is_logged_for_a_flag_that_is_off_or_killed() -> None:
    assert arms(Flag(key="new-search", ramp=0))["unlogged"] == set(UNITS)
    killed = FlagEvaluator(FlagConfig(flag=rollout_flag(25), killed=True))
    assert {killed.resolve(unit, {"region": "eu"}) for unit in UNITS[:500]} == {(False, "killed")}


def test_a_ramp_and_holdback_beyond_100_is_refused_naming_the_holdback() -> None:
    with pytest.raises(ValueError, match="holdback"):
        Flag(key="x", ramp=60, holdback=50)


#: The exposure key the snapshot serves while rollout "new-search" v1 drives the flag.
ROLLOUT_KEY = "new-search..new-search.v1"


class Platform:
    def __init__(self, flag: Flag, exposure_key: str | None = None) -> None:
        served = FlagConfig(flag=flag, exposure_key=exposure_key)
        snapshot = ConfigSnapshot(tenant_id="acme", revision=1, flags=[served])
        self.control = FakeControlApi(snapshot)
        self.producer = RecordingProducer()
        poller = ConfigPoller(
            "http://control.invalid",
            "lsk_key",
            interval_s=3600,
            transport=httpx.MockTransport(self.control.handle),
        )
        self.client = LiftstreamClient(
            "acme", bootstrap="unused:9092", namespace="ns1", producer=self.producer, config=poller
        )
        poller.refresh()

    def exposures(self) -> list[tuple[str, str, str]]:
        self.client.flush()
        return [
            (event["unit_id"], event["experiment_key"], event["variant_key"])
            for topic, event, _ in self.producer.events()
            if topic == "ns1.exposures"
        ]


@pytest.fixture
def platform() -> Iterator[Platform]:
    made = Platform(rollout_flag(25), ROLLOUT_KEY)
    yield made
    made.client.close()


def test_the_client_and_the_provider_serve_and_log_the_same_arms(platform: Platform) -> None:
    expected = arms(rollout_flag(25))
    units = UNITS[:2000]
    served = {unit: platform.client.enabled("new-search", unit, {"region": "eu"}) for unit in units}
    assert served == {unit: unit in expected["on"] for unit in units}
    assert all(
        platform.client.flag("new-search", unit, {"region": "eu"}) is served[unit] for unit in units
    )
    assert platform.client.flag("missing", "user-1", default="fallback") == "fallback"
    assert not platform.client.enabled("missing", "user-1")
    logged = platform.exposures()
    # Each unit once (the process's dedup), on its arm, under the rollout's exposure key
    # (never the flag's: an earlier rollout's units are there); the rest not at all.
    assert sorted(logged) == sorted(
        (unit, ROLLOUT_KEY, arm) for unit in units for arm in ("on", "off") if unit in expected[arm]
    )
    provider = LiftstreamProvider(platform.client)
    api.set_provider_and_wait(provider, domain="flag-holdback")
    try:
        flags = api.get_client("flag-holdback")
        fresh = UNITS[2000:3000]
        details = {
            unit: flags.get_boolean_details(
                "new-search", False, EvaluationContext(unit, {"region": "eu"})
            )
            for unit in fresh
        }
    finally:
        api.clear_providers()
    assert {unit: d.value for unit, d in details.items()} == {
        unit: unit in expected["on"] for unit in fresh
    }
    assert {d.reason for d in details.values()} == {Reason.SPLIT}
    assert dict(details[fresh[0]].flag_metadata)["holdback"] == 25
    by_provider = [e for e in platform.exposures() if e[0] in set(fresh)]
    assert dict(details[fresh[0]].flag_metadata)["exposure_key"] == ROLLOUT_KEY
    assert sorted(by_provider) == sorted(
        (unit, ROLLOUT_KEY, arm) for unit in fresh for arm in ("on", "off") if unit in expected[arm]
    )


def test_a_unit_outside_the_segment_is_served_off_and_not_logged(platform: Platform) -> None:
    assert not any(
        platform.client.enabled("new-search", unit, {"region": "us"}) for unit in UNITS[:500]
    )
    assert platform.exposures() == []


def test_a_flag_without_a_holdback_is_written_as_sdks_from_before_read_it() -> None:
    """SDKs and services from before the holdback forbid unknown fields: a flag that has
    none is written without it, one that has it with it, and both read back."""
    before = {
        "key",
        "description",
        "owner",
        "version",
        "seed",
        "value_type",
        "on_value",
        "off_value",
        "ramp",
        "targeting",
        "overrides",
    }
    plain = Flag(key="new-search", ramp=30)
    assert set(plain.model_dump(mode="json")) == before
    assert Flag.model_validate_json(plain.model_dump_json()) == plain
    held = rollout_flag(5)
    assert held.model_dump(mode="json")["holdback"] == 5
    assert Flag.model_validate_json(held.model_dump_json()) == held
