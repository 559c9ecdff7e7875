"""The SDK's config stream: snapshots pushed as Server-Sent Events are installed; when the
stream breaks the SDK polls with the ETag and keeps serving the last good snapshot."""

from __future__ import annotations

import time

import httpx

from liftstream.local_config import ConfigPoller
from schemas.config import ConfigSnapshot, ExperimentConfig
from schemas.experiment import Experiment

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "m", "event": "e", "type": "conversion"}],
        "overrides": {"qa-1": "treatment"},
    }
)


def snapshot(revision: int, killed: bool) -> bytes:
    return (
        ConfigSnapshot(
            tenant_id="acme",
            revision=revision,
            experiments=[ExperimentConfig(experiment=EXPERIMENT, killed=killed)],
        )
        .model_dump_json()
        .encode()
    )


def sse(*bodies: bytes) -> bytes:
    return b": hello\n\n" + b"".join(
        b'event: config\nid: "%d"\ndata: %s\n\n' % (index, body)
        for index, body in enumerate(bodies)
    )


def wait_for(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_snapshots_pushed_on_the_stream_are_served_in_order() -> None:
    requests: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        if request.url.path == "/v1/config/stream":
            return httpx.Response(200, content=sse(snapshot(1, False), snapshot(2, True)))
        return httpx.Response(200, content=snapshot(1, False), headers={"ETag": '"1"'})

    poller = ConfigPoller(
        "http://control", "key", interval_s=60, transport=httpx.MockTransport(handle), stream=True
    )
    seen: list[int] = []
    poller.add_listener(lambda _old, new: seen.append(new.snapshot.revision))
    with poller:
        assert wait_for(lambda: 2 in seen)
        # The last pushed snapshot (killed) is what the SDK serves.
        assert poller.variant("checkout", "qa-1") is None
    assert "/v1/config/stream" in requests
    assert seen[-2:] == [1, 2]


def test_a_broken_stream_falls_back_to_polling_and_keeps_the_last_config() -> None:
    state = {"down": False}

    def handle(request: httpx.Request) -> httpx.Response:
        if state["down"]:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/v1/config/stream":
            return httpx.Response(503, content=b"no streams here")
        return httpx.Response(200, content=snapshot(5, False), headers={"ETag": '"5"'})

    poller = ConfigPoller(
        "http://control", "key", interval_s=0.2, transport=httpx.MockTransport(handle), stream=True
    )
    with poller:
        assert poller.variant("checkout", "qa-1") == "treatment"
        assert wait_for(lambda: poller.last_error is not None and "503" in poller.last_error)
        assert not poller.streaming
        state["down"] = True
        time.sleep(0.5)
        assert poller.variant("checkout", "qa-1") == "treatment"
