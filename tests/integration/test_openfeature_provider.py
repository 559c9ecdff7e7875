"""The OpenFeature provider on the real control service (config stream) and broker: a
flag changed through the control API emits PROVIDER_CONFIGURATION_CHANGED and is served
at once; exposures and ``track`` reach Kafka as liftstream events."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.flag_evaluation import Reason
from openfeature.track import TrackingEventDetails

from liftstream.client import LiftstreamClient
from liftstream.openfeature import LiftstreamProvider
from liftstream.settings import Settings
from tests.integration.helpers_control import ControlService, create_tenant

pytestmark = pytest.mark.integration


def _events(settings: Settings, topic: str, count: int) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    found: list[dict[str, object]] = []
    try:
        for message in consumer:
            decoded = json.loads(message.value)
            found += decoded if isinstance(decoded, list) else [decoded]
            if len(found) >= count:
                break
    finally:
        consumer.close()
    return found


def test_the_provider_follows_the_control_service_and_logs_to_kafka(
    platform_settings: Settings, tmp_path: Path
) -> None:
    settings = platform_settings
    admin = create_tenant(settings.bootstrap, settings.topics.control, "acme")["admin"]
    base = "/v1/tenants/acme"
    flag = {"key": "new-checkout", "ramp": 100}
    with ControlService(tmp_path / "control.duckdb", dict(os.environ)) as control:
        control.ok("POST", f"{base}/flags", admin, {"flag": flag})
        client = LiftstreamClient.from_config(control.url, admin, poll_interval_s=60)
        provider = LiftstreamProvider(client)
        changed = threading.Event()
        seen: list[EventDetails] = []

        def on_change(details: EventDetails) -> None:
            seen.append(details)
            changed.set()

        try:
            api.set_provider_and_wait(provider, domain="liftstream-integration")
            flags = api.get_client("liftstream-integration")
            flags.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
            user = EvaluationContext("user-7", {"region": "eu"})
            first = flags.get_boolean_details("new-checkout", False, user)
            assert (first.value, first.reason, first.variant) == (True, Reason.STATIC, "on")

            control.ok("POST", f"{base}/flags/new-checkout/kill", admin, {"reason": "bug"})
            assert changed.wait(20), "no PROVIDER_CONFIGURATION_CHANGED after the kill"
            assert seen[0].flags_changed == ["new-checkout"]
            killed = flags.get_boolean_details("new-checkout", True, user)
            assert (killed.value, killed.reason) == (False, Reason.DISABLED)

            flags.track("purchase", user, TrackingEventDetails(12.5, {"sku": "a-1"}))
            client.flush(30)
        finally:
            api.clear_providers()
            client.close()

    [exposure] = _events(settings, settings.topics.exposures, 1)
    assert (exposure["unit_id"], exposure["experiment_key"], exposure["variant_key"]) == (
        "user-7",
        "new-checkout",
        "on",
    )
    [outcome] = _events(settings, settings.topics.outcomes, 1)
    assert (outcome["event"], outcome["value"], outcome["properties"]) == (
        "purchase",
        12.5,
        {"sku": "a-1"},
    )
