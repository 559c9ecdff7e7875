"""Riding out a Kafka outage: retried until it works, given up past the tolerance."""

from __future__ import annotations

import asyncio

import pytest

from services import kafka_outage
from services.kafka_outage import OutageTooLong, OutageWindow, outage_tolerance_s, retry_async


def test_retries_until_the_call_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_outage, "INITIAL_BACKOFF_S", 0.001)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError("broker down")
        return "ok"

    assert asyncio.run(retry_async(flaky, "connecting", tolerance_s=10)) == "ok"
    assert calls == 4


def test_gives_up_after_the_tolerated_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_outage, "INITIAL_BACKOFF_S", 0.01)
    monkeypatch.setattr(kafka_outage, "MAX_BACKOFF_S", 0.01)

    async def down() -> None:
        raise ConnectionError("broker down")

    with pytest.raises(OutageTooLong, match="connecting kept failing"):
        asyncio.run(retry_async(down, "connecting", tolerance_s=0.05))


def test_a_success_ends_the_outage() -> None:
    window = OutageWindow("writing snapshots", tolerance_s=60)
    window.failed(ConnectionError("down"))
    assert window.failing_for_s >= 0
    window.succeeded()
    assert window.failing_for_s == 0.0


def test_tolerance_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_KAFKA_OUTAGE_S", "42")
    assert outage_tolerance_s() == 42
    monkeypatch.setenv("LIFTSTREAM_KAFKA_OUTAGE_S", "soon")
    with pytest.raises(ValueError, match="LIFTSTREAM_KAFKA_OUTAGE_S"):
        outage_tolerance_s()
