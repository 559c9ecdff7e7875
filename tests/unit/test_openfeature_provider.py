"""The OpenFeature provider, through ``openfeature.api.get_client()``: values, reasons,
variants, metadata, events on config change, track and exposures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.track import TrackingEventDetails

from liftstream.client import LiftstreamClient
from liftstream.local_config import ConfigEvaluator, ConfigPoller
from liftstream.openfeature import LiftstreamProvider
from schemas.config import ConfigSnapshot, ExperimentConfig, FlagConfig
from schemas.experiment import Experiment
from schemas.flags import Flag
from tests.unit.fake_control_api import FakeControlApi
from tests.unit.fake_producer import RecordingProducer

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "assignment.json").read_text()
)
EXPERIMENTS = [Experiment.model_validate(e) for e in VECTORS["experiments"]]


def vector_flags() -> list[Flag]:
    """One flag per vector experiment: its targeting, seed and traffic as the ramp, so the
    vectors' units and attributes exercise rules, ramps and overrides of flags too."""
    return [
        Flag(
            key=f"flag-{e.key}",
            seed=e.seed,
            value_type="string",
            on_value="on-value",
            off_value="off-value",
            ramp=e.traffic,
            targeting=e.targeting,
            overrides={unit: "on" for unit in list(e.overrides)[:3]},
        )
        for e in EXPERIMENTS
    ]


FLAGS = [
    *vector_flags(),
    Flag(key="checkout-v2", ramp=50),  # boolean, split
    Flag(key="everyone", ramp=100),  # boolean, static
    Flag(key="nobody", ramp=0),
    Flag(key="killed", ramp=100),
    Flag(key="limit", value_type="number", on_value=3.0, off_value=1, ramp=100),
    Flag(key="ratio", value_type="number", on_value=2, off_value=1, ramp=100),
    Flag(
        key="layout",
        value_type="json",
        on_value={"columns": 3},
        off_value={"columns": 1},
        ramp=100,
        targeting={"attribute": "region", "op": "eq", "value": "eu"},
        overrides={"qa-off": "off"},
    ),
]


def snapshot(revision: int, flags: list[Flag] = FLAGS) -> ConfigSnapshot:
    return ConfigSnapshot(
        tenant_id="acme",
        revision=revision,
        experiments=[ExperimentConfig(experiment=e) for e in EXPERIMENTS],
        flags=[FlagConfig(flag=f, killed=f.key == "killed") for f in flags],
    )


class Platform:
    def __init__(self) -> None:
        self.control = FakeControlApi(snapshot(1))
        self.producer = RecordingProducer()
        self.poller = ConfigPoller(
            "http://control.invalid",
            "lsk_key",
            interval_s=3600,
            transport=httpx.MockTransport(self.control.handle),
        )
        self.client = LiftstreamClient(
            "acme",
            bootstrap="unused:9092",
            namespace="ns1",
            producer=self.producer,
            config=self.poller,
        )
        self.provider = LiftstreamProvider(self.client)

    def events(self, topic: str) -> list[dict[str, Any]]:
        self.client.flush()
        return [event for t, event, _ in self.producer.events() if t == f"ns1.{topic}"]


@pytest.fixture
def platform() -> Iterator[Platform]:
    made = Platform()
    api.set_provider_and_wait(made.provider, domain="liftstream-tests")
    yield made
    api.clear_providers()
    made.client.close()


@pytest.fixture
def flags(platform: Platform) -> OpenFeatureClient:
    return api.get_client("liftstream-tests")


def ctx(unit: str | None, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(unit, attributes)


def test_experiments_evaluate_as_the_shared_vectors_say(flags: OpenFeatureClient) -> None:
    cases = [c for c in VECTORS["cases"] if c["holdout"] is None]
    assert len(cases) > 100
    for case in cases:
        details = flags.get_string_details(
            case["experiment_key"], "none", ctx(case["unit_id"], **case["attributes"])
        )
        expected = case["expected_variant"]
        assert details.value == (expected or "none"), case
        assert details.variant == expected
        assert details.reason in (
            (Reason.SPLIT, Reason.TARGETING_MATCH) if expected else (Reason.DEFAULT,)
        )


def test_flags_evaluate_as_liftstream_does_on_the_vectors(flags: OpenFeatureClient) -> None:
    evaluator = ConfigEvaluator(snapshot(1))
    reasons = set()
    for case in VECTORS["cases"]:
        key = f"flag-{case['experiment_key']}"
        details = flags.get_string_details(key, "x", ctx(case["unit_id"], **case["attributes"]))
        assert details.value == evaluator.flag(key, case["unit_id"], case["attributes"]), case
        assert details.variant == ("on" if details.value == "on-value" else "off")
        reasons.add(details.reason)
    assert {Reason.SPLIT, Reason.DEFAULT} <= reasons


def test_reasons_variants_and_metadata(flags: OpenFeatureClient) -> None:
    split = flags.get_boolean_details("checkout-v2", False, ctx("user-1"))
    assert (split.reason, split.error_code) == (Reason.SPLIT, None)
    assert split.variant == ("on" if split.value else "off")
    assert dict(split.flag_metadata) == {
        "kind": "flag",
        "version": 1,
        "revision": 1,
        "value_type": "boolean",
        "ramp": 50.0,
        "holdback": 0.0,
        "exposure_key": "checkout-v2",  # no rollout drives it: the flag's key
    }
    static = flags.get_boolean_details("everyone", False, ctx("user-1"))
    assert (static.value, static.reason, static.variant) == (True, Reason.STATIC, "on")
    nobody = flags.get_boolean_details("nobody", True, ctx("user-1"))
    assert (nobody.value, nobody.reason) == (False, Reason.DEFAULT)
    killed = flags.get_boolean_details("killed", True, ctx("user-1"))
    assert (killed.value, killed.reason, killed.variant) == (False, Reason.DISABLED, "off")
    eu = flags.get_object_details("layout", {}, ctx("user-1", region="eu"))
    assert (eu.value, eu.reason) == ({"columns": 3}, Reason.TARGETING_MATCH)
    us = flags.get_object_details("layout", {}, ctx("user-1", region="us"))
    assert (us.value, us.reason, us.variant) == ({"columns": 1}, Reason.DEFAULT, "off")
    forced = flags.get_object_details("layout", {}, ctx("qa-off", region="eu"))
    assert (forced.value, forced.reason) == ({"columns": 1}, Reason.TARGETING_MATCH)


def test_numbers_and_type_mismatches(flags: OpenFeatureClient) -> None:
    assert flags.get_integer_value("limit", 0, ctx("u")) == 3
    assert isinstance(flags.get_integer_value("limit", 0, ctx("u")), int)
    assert flags.get_float_value("ratio", 0.0, ctx("u")) == 2.0
    assert isinstance(flags.get_float_value("ratio", 0.0, ctx("u")), float)
    mismatch = flags.get_boolean_details("limit", True, ctx("u"))
    assert (mismatch.value, mismatch.reason, mismatch.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.TYPE_MISMATCH,
    )
    experiment = flags.get_boolean_details("pricing", False, ctx("u"))
    assert experiment.error_code == ErrorCode.TYPE_MISMATCH


def test_errors_fall_back_to_the_default(flags: OpenFeatureClient) -> None:
    missing = flags.get_string_details("no-such-flag", "fallback", ctx("u"))
    assert (missing.value, missing.reason, missing.error_code) == (
        "fallback",
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    anonymous = flags.get_boolean_details("everyone", False, ctx(None))
    assert (anonymous.value, anonymous.error_code) == (False, ErrorCode.TARGETING_KEY_MISSING)


def test_exposures_are_logged_once_per_unit_and_track_is_forwarded(
    platform: Platform, flags: OpenFeatureClient
) -> None:
    for _ in range(3):
        flags.get_boolean_value("everyone", False, ctx("user-9"))
    flags.get_boolean_value("killed", False, ctx("user-9"))  # killed: no exposure
    flags.get_object_value("layout", {}, ctx("user-9", region="us"))  # outside the rule
    variant = flags.get_string_value("checkout-button", "none", ctx("user-9", country="de"))
    flags.track("purchase", ctx("user-9"), TrackingEventDetails(31.5, {"sku": "a-1"}))
    exposures = platform.events("exposures")
    assert [(e["experiment_key"], e["variant_key"]) for e in exposures] == [
        ("everyone", "on"),
        *([("checkout-button", variant)] if variant != "none" else []),
    ]
    [outcome] = platform.events("outcomes")
    assert (outcome["unit_id"], outcome["event"], outcome["value"], outcome["properties"]) == (
        "user-9",
        "purchase",
        31.5,
        {"sku": "a-1"},
    )


def test_a_new_snapshot_emits_configuration_changed_naming_the_flags(
    platform: Platform, flags: OpenFeatureClient
) -> None:
    seen: list[EventDetails] = []
    got = threading.Event()

    def handler(details: EventDetails) -> None:
        seen.append(details)
        got.set()

    flags.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    platform.control.snapshot = snapshot(2)  # a new revision, the same flags: no event
    assert platform.poller.refresh()
    assert not seen
    changed = [f.model_copy(update={"ramp": 0.0}) if f.key == "everyone" else f for f in FLAGS]
    platform.control.snapshot = snapshot(3, changed)
    assert platform.poller.refresh()
    assert got.wait(5)
    assert seen[0].flags_changed == ["everyone"]
    after = flags.get_boolean_details("everyone", True, ctx("user-1"))
    assert (after.value, after.reason, after.flag_metadata["revision"]) == (
        False,
        Reason.DEFAULT,
        3,
    )


def test_a_provider_without_a_snapshot_is_not_ready_then_becomes_ready() -> None:
    made = Platform()
    made.control.down = True
    ready = threading.Event()
    api.add_handler(ProviderEvent.PROVIDER_READY, lambda details: ready.set())
    try:
        with pytest.raises(Exception):  # noqa: B017 (the SDK re-raises the provider's error)
            api.set_provider_and_wait(made.provider, domain="liftstream-late")
        late = api.get_client("liftstream-late")
        early = late.get_boolean_details("everyone", False, ctx("u"))
        assert (early.value, early.reason) == (False, Reason.ERROR)
        made.control.down = False
        assert made.poller.refresh()
        assert ready.wait(5)
        assert late.get_boolean_value("everyone", False, ctx("u")) is True
    finally:
        api.clear_providers()
        made.client.close()
