"""The client with config delivery: experiments named by key, evaluated on the polled snapshot.

The control API is an ``httpx.MockTransport`` whose answers the test switches (a
snapshot, then errors, then a changed snapshot); Kafka is a recording fake producer.
"""

from __future__ import annotations

import json

import httpx
import pytest

from liftstream.assignment import assign
from liftstream.client import LiftstreamClient
from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.local_config import ConfigPoller
from schemas import Experiment, parse_event
from schemas.config import ConfigSnapshot, ExperimentConfig
from tests.unit.fake_producer import RecordingProducer

RUNNING = Experiment.model_validate(
    {
        "key": "checkout-button",
        "version": 2,
        "status": "running",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
    }
)
UNITS = [f"user-{i}" for i in range(40)]


class _ControlApi:
    """Answers ``GET /v1/config`` with ``snapshot``, or fails as ``failure`` says."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        self.failure: str | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/config"
        if self.failure == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.failure == "500":
            return httpx.Response(500, text="internal error")
        if self.failure == "garbage":
            return httpx.Response(200, content=b'{"tenant_id": 7}')
        return httpx.Response(200, content=self.snapshot.model_dump_json().encode())


def _snapshot(revision: int, killed: bool = False) -> ConfigSnapshot:
    return ConfigSnapshot(
        tenant_id="acme",
        revision=revision,
        experiments=[ExperimentConfig(experiment=RUNNING, killed=killed)],
    )


@pytest.fixture
def api() -> _ControlApi:
    return _ControlApi(_snapshot(1))


def _client(api: _ControlApi, producer: RecordingProducer) -> LiftstreamClient:
    return LiftstreamClient.from_config(
        "http://control.invalid",
        "lsk_test",
        poll_interval_s=3600,
        stream=False,  # the test decides when the client polls
        transport=httpx.MockTransport(api.handle),
        bootstrap="unused:9092",
        namespace="ns1",
        producer=producer,
    )


def test_by_key_the_client_keeps_serving_the_last_good_snapshot_when_the_api_fails(
    api: _ControlApi,
) -> None:
    producer = RecordingProducer()
    with _client(api, producer) as client:
        assert client.tenant_id == "acme"  # the API key's tenant, from the snapshot
        expected = {unit: assign(RUNNING, unit) for unit in UNITS}
        assert {unit: client.assign("checkout-button", unit) for unit in UNITS} == expected

        assert client.config is not None
        for failure in ("down", "500", "garbage"):
            api.failure = failure
            assert client.config.refresh() is False
            assert client.config.last_error is not None
            assert {unit: client.assign("checkout-button", unit) for unit in UNITS} == expected
            exposure = client.expose("checkout-button", "user-3", attributes={"plan": "pro"})
            assert exposure is not None and exposure.variant_key == expected["user-3"]
            assert exposure.experiment_version == 2

        # Back up with a killed experiment: the new snapshot is served, nobody is assigned.
        api.failure, api.snapshot = None, _snapshot(2, killed=True)
        assert client.config.refresh() is True
        assert all(client.assign("checkout-button", unit) is None for unit in UNITS)
        assert client.expose("checkout-button", "user-3") is None

    sent = [parse_event(json.dumps(event)) for _, event, _ in producer.events()]
    assert len(sent) == 1  # the same exposure is logged once per process
    assert {(e.experiment_key, e.variant_key, e.unit_id) for e in sent} == {  # type: ignore[union-attr]
        ("checkout-button", expected["user-3"], "user-3")
    }


def test_an_unknown_key_is_not_assigned_and_an_override_for_it_is_refused(
    api: _ControlApi,
) -> None:
    with _client(api, RecordingProducer()) as client:
        assert client.assign("no-such-experiment", "user-1") is None
        assert client.expose("no-such-experiment", "user-1") is None
        with pytest.raises(InvalidInputError, match="experiment_key"):
            client.expose("no-such-experiment", "user-1", variant="treatment")
        with pytest.raises(InvalidInputError, match="variant_key"):
            client.expose("checkout-button", "user-1", variant="purple")


def test_experiment_definitions_still_work_and_a_key_needs_a_poller() -> None:
    client = LiftstreamClient("acme", bootstrap="unused:9092", producer=RecordingProducer())
    assert client.assign(RUNNING, "user-1") == assign(RUNNING, "user-1")
    with pytest.raises(InvalidInputError, match="no config poller"):
        client.assign("checkout-button", "user-1")


def test_a_snapshot_of_another_tenant_is_refused(api: _ControlApi) -> None:
    poller = ConfigPoller("http://control.invalid", "k", transport=httpx.MockTransport(api.handle))
    poller.refresh()
    client = LiftstreamClient(
        "other", bootstrap="unused:9092", producer=RecordingProducer(), config=poller
    )
    with pytest.raises(InvalidInputError, match="tenant_id"):
        client.assign("checkout-button", "user-1")
    poller.stop()


def test_from_config_without_a_first_snapshot_or_tenant_says_why(api: _ControlApi) -> None:
    api.failure = "down"
    with pytest.raises(PlatformUnavailableError, match="did not answer"):
        _client(api, RecordingProducer())
