"""Shadow tests in the SDK: the caller gets the primary's answer; the candidate runs aside."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from liftstream.client import LiftstreamClient
from liftstream.errors import InvalidInputError
from liftstream.shadow import ShadowPool, ShadowRunner
from schemas import OutcomeEvent
from schemas.shadow import SHADOW_EVENT, ShadowObservation
from tests.unit.fake_producer import RecordingProducer


class Recorder:
    """An ``Emit`` that keeps what it is given."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, float, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, unit: str, value: float, properties: dict[str, Any], when: Any) -> None:
        with self.lock:
            self.logged.append((unit, value, properties))

    def observations(self) -> list[ShadowObservation]:
        return [ShadowObservation.model_validate(p) for _, _, p in self.logged]


def runner(recorder: Recorder, **pool: Any) -> ShadowRunner:
    return ShadowRunner(recorder, ShadowPool(seed=7, **pool))


def test_the_caller_gets_the_primary_result_and_mismatches_are_logged() -> None:
    recorder = Recorder()
    shadows = runner(recorder)
    results = [
        shadows.run(
            "pricing", lambda i=i: i * 2, lambda i=i: i * 2 + (i % 10 == 0), sample=1.0, noise=0.0
        )
        for i in range(200)
    ]
    assert results == [i * 2 for i in range(200)]
    assert shadows.wait_idle(5)
    observations = recorder.observations()
    assert len(observations) == 200
    assert sum(o.match is False for o in observations) == 20
    assert {o.run for o in observations} == {"candidate"}
    # value 1 marks a mismatch; the units are the shadow's synthetic ones
    assert {value for _, value, p in recorder.logged if p["match"] is False} == {1.0}
    assert {unit.rsplit(":", 1)[0] for unit, _, _ in recorder.logged} == {"shadow:pricing"}
    assert shadows.stats["pricing"].logged == 200


def test_the_primary_exception_reaches_the_caller_and_the_candidate_exception_is_caught() -> None:
    recorder = Recorder()
    shadows = runner(recorder)

    def failing_primary() -> int:
        raise KeyError("missing")

    def failing_candidate() -> int:
        raise ValueError("candidate bug")

    with pytest.raises(KeyError):
        shadows.run("lookup", failing_primary, lambda: 1, sample=1.0, noise=0.0)
    assert shadows.run("lookup", lambda: 5, failing_candidate, sample=1.0, noise=0.0) == 5
    with pytest.raises(KeyError):
        shadows.run("lookup", failing_primary, failing_primary, sample=1.0, noise=0.0)
    assert shadows.wait_idle(5)
    first, second, third = recorder.observations()
    assert (first.primary_error, first.other_error, first.match) == ("KeyError", None, False)
    assert (second.primary_error, second.other_error, second.match) == (None, "ValueError", False)
    # the same exception class with the same arguments: the two agree
    assert (third.primary_error, third.other_error, third.match) == ("KeyError", "KeyError", True)


def test_the_noise_share_runs_the_primary_twice() -> None:
    recorder = Recorder()
    shadows = runner(recorder)
    calls = {"primary": 0, "candidate": 0}

    def primary() -> int:
        calls["primary"] += 1
        return 1

    def candidate() -> int:
        calls["candidate"] += 1
        return 1

    for _ in range(2000):
        shadows.run("noisy", primary, candidate, sample=0.1, noise=0.2)
    assert shadows.wait_idle(5)
    runs = [o.run for o in recorder.observations()]
    secondary, candidates = runs.count("secondary"), runs.count("candidate")
    assert calls["candidate"] == candidates
    assert calls["primary"] == 2000 + secondary
    assert 0.16 < secondary / 2000 < 0.24
    assert 0.07 < candidates / 2000 < 0.13


def test_a_slow_candidate_never_makes_the_caller_wait_and_a_full_queue_drops() -> None:
    recorder = Recorder()
    shadows = runner(recorder, workers=1, max_queue=2)
    release = threading.Event()
    start = time.perf_counter()
    for _ in range(50):
        assert (
            shadows.run("slow", lambda: "ok", release.wait, sample=1.0, noise=0.0, timeout_s=30)
            == "ok"
        )
    elapsed = time.perf_counter() - start
    release.set()
    assert elapsed < 0.5
    assert shadows.wait_idle(5)
    stats = shadows.stats["slow"]
    assert stats.dropped >= 47  # one running, two queued
    assert stats.dropped + stats.candidate_runs == 50
    assert stats.logged == stats.candidate_runs


def test_a_candidate_past_its_timeout_is_logged_as_timed_out_and_its_worker_replaced() -> None:
    recorder = Recorder()
    shadows = runner(recorder, workers=1, max_abandoned=1)
    hang = threading.Event()
    assert shadows.run("hang", lambda: 1, hang.wait, sample=1.0, noise=0.0, timeout_s=0.1) == 1
    assert shadows.run("hang", lambda: 1, lambda: 1, sample=1.0, noise=0.0, timeout_s=0.1) == 1
    deadline = time.monotonic() + 5
    while len(recorder.logged) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    hang.set()
    timed_out, answered = sorted(recorder.observations(), key=lambda o: not o.timed_out)
    assert timed_out.timed_out and timed_out.match is None and timed_out.other_ms is None
    assert answered.match is True  # the replacement worker ran it
    assert shadows.stats["hang"].timed_out == 1


def test_a_compare_that_raises_is_recorded_not_raised() -> None:
    recorder = Recorder()
    shadows = runner(recorder)

    def compare(a: Any, b: Any) -> bool:
        raise TypeError("cannot compare")

    assert shadows.run("cmp", lambda: 1, lambda: 1, compare, sample=1.0, noise=0.0) == 1
    assert shadows.wait_idle(5)
    [observation] = recorder.observations()
    assert (observation.match, observation.compare_error) == (None, "TypeError")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"sample": 1.5}, "sample"),
        ({"sample": float("nan")}, "sample"),
        ({"noise": -0.1}, "noise"),
        ({"sample": 0.8, "noise": 0.5}, "noise"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"candidate": 3}, "candidate"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(arguments: dict[str, Any], field: str) -> None:
    shadows = runner(Recorder())
    call: dict[str, Any] = {"name": "ok", "primary": lambda: 1, "candidate": lambda: 1}
    call.update(arguments)
    with pytest.raises(InvalidInputError) as error:
        shadows.run(**call)
    assert error.value.problems[0].field == field


def test_the_client_logs_observations_as_shadow_outcomes() -> None:
    producer = RecordingProducer()
    client = LiftstreamClient(
        "acme",
        bootstrap="unused:9092",
        namespace="ns1",
        producer=producer,
        shadow_pool=ShadowPool(seed=1),
    )
    assert client.shadow("pricing", lambda: 3, lambda: 4, sample=1.0, noise=0.0) == 3
    assert client.shadows.wait_idle(5)
    client.flush()
    [(topic, event, _)] = producer.events()
    assert topic == "ns1.outcomes"
    outcome = OutcomeEvent.model_validate(event)
    assert (outcome.event, outcome.value, outcome.unit_id.startswith("shadow:pricing:")) == (
        SHADOW_EVENT,
        1.0,
        True,
    )
    assert ShadowObservation.model_validate(outcome.properties).match is False
    client.close()
    # a closed client still answers with the primary, and runs no shadow
    assert client.shadow("pricing", lambda: 3, lambda: 4, sample=1.0, noise=0.0) == 3
    assert client.shadows.stats["pricing"].candidate_runs == 1
