"""Helpers for the tests on a local three-broker cluster (``services.broker.cluster``).

- ``describe_replicas``: partition -> (leader, replicas, in-sync replicas) of topics.
- ``wait_until_fully_replicated``: until every partition of the topics has all its
  replicas in sync again (a restarted broker caught up); returns the seconds it took.
- ``leader_of``: the node leading a partition.
- ``SdkSender`` / ``CollectorSender``: send events in rounds through the SDK (Kafka
  delivery) or the HTTP collector, re-sending a round with the same event ids until it is
  acknowledged (what a careful application does), and recording when each round started
  and was acknowledged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from kafka import KafkaAdminClient

from liftstream.client import LiftstreamClient
from liftstream.errors import DeliveryError
from schemas import Experiment
from schemas.events import ExposureEvent, OutcomeEvent
from tests.integration.helpers_stream import EXPERIMENTS

Event = ExposureEvent | OutcomeEvent


def describe_replicas(
    bootstrap: str, topics: list[str]
) -> dict[tuple[str, int], tuple[int, list[int], list[int]]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    return {
        (topic["name"], partition["partition_index"]): (
            partition["leader_id"],
            sorted(partition["replica_nodes"]),
            sorted(partition["isr_nodes"]),
        )
        for topic in described
        for partition in topic["partitions"]
    }


def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    return describe_replicas(bootstrap, [topic])[(topic, partition)][0]


def wait_until_fully_replicated(bootstrap: str, topics: list[str], timeout: float) -> float:
    started = time.monotonic()
    while True:
        try:
            described = describe_replicas(bootstrap, topics)
            if all(isr == replicas for _, replicas, isr in described.values()):
                return time.monotonic() - started
        except Exception:  # a broker between states: ask again
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"partitions not fully replicated after {timeout}s")
        time.sleep(0.25)


def experiment(key: str) -> Experiment:
    """The definition of a ``helpers_stream`` experiment (equal weights summing to 100)."""
    variants = EXPERIMENTS[key]
    weights = [100 // len(variants) + (i < 100 % len(variants)) for i in range(len(variants))]
    return Experiment.model_validate(
        {
            "key": key,
            "variants": [{"key": v, "weight": w} for v, w in zip(variants, weights, strict=True)],
            "metrics": [{"name": "purchases", "event": "purchase", "type": "conversion"}],
        }
    )


def shifted_to_now(events: list[Event]) -> list[Event]:
    """The events moved in time by one offset so the latest is a minute ago (the
    collector refuses events older than 30 days); their order and gaps are kept."""
    latest = max(event.timestamp for event in events)
    offset = datetime.now(UTC) - latest
    return [event.model_copy(update={"timestamp": event.timestamp + offset}) for event in events]


@dataclass
class Round:
    started: float
    acknowledged: float
    events: int
    attempts: int


@dataclass
class Sender:
    """Sends rounds of events in a thread; ``acknowledged`` holds what was acknowledged."""

    name: str
    rounds_of: list[list[Event]]
    pause_s: float
    rounds: list[Round] = field(default_factory=list)
    acknowledged: list[Event] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name} did not finish in {timeout}s"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            self.open()
            for events in self.rounds_of:
                started, attempts = time.monotonic(), 0
                made: list[Any] = []
                while True:
                    attempts += 1
                    stored, made = self.send_round(events, made)
                    if stored:
                        break
                    time.sleep(0.2)
                self.rounds.append(Round(started, time.monotonic(), len(events), attempts))
                self.acknowledged.extend(self.as_events(made))
                time.sleep(self.pause_s)
        except BaseException as error:
            self.error = error
        finally:
            self.close()

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send_round(self, events: list[Event], previous: list[Any]) -> tuple[bool, list[Any]]:
        """Send ``events``, or ``previous`` again (what the last attempt made: the same
        event ids); whether they were acknowledged, and what was sent."""
        raise NotImplementedError

    def as_events(self, made: list[Any]) -> list[Event]:
        return made

    def longest_round_s(self, around: float) -> float:
        """The longest time a round in flight at ``around`` (monotonic) took."""
        spans = [r.acknowledged - r.started for r in self.rounds if r.acknowledged >= around]
        return max(spans, default=0.0)


@dataclass
class SdkSender(Sender):
    """Events of one tenant through ``LiftstreamClient`` (Kafka delivery, acks=all)."""

    tenant: str = ""
    client: LiftstreamClient | None = None

    def open(self) -> None:
        self.client = LiftstreamClient(self.tenant, dedup_exposures=0)

    def close(self) -> None:
        if self.client is not None:
            self.client.close(timeout=30)

    def send_round(self, events: list[Event], previous: list[Any]) -> tuple[bool, list[Any]]:
        client = self.client
        assert client is not None
        made: list[Any] = []
        if previous:  # the same events again: same ids, same bytes
            for event in previous:
                client.transport.send(event)  # type: ignore[arg-type]
            made = previous
        else:
            for event in events:
                if isinstance(event, ExposureEvent):
                    made.append(
                        client.expose(
                            experiment(event.experiment_key),
                            event.unit_id,
                            variant=event.variant_key,
                            timestamp=event.timestamp,
                        )
                    )
                else:
                    made.append(
                        client.track(
                            event.unit_id, event.event, event.value, timestamp=event.timestamp
                        )
                    )
        try:
            client.flush(timeout=60)
        except DeliveryError:
            return False, made
        return True, made

    def as_events(self, made: list[Any]) -> list[Event]:
        return [sdk_event.to_model() for sdk_event in made]


@dataclass
class CollectorSender(Sender):
    """Events of one tenant as ``POST /v1/events`` batches to the collector."""

    url: str = ""
    key: str = ""

    def send_round(self, events: list[Event], previous: list[Any]) -> tuple[bool, list[Any]]:
        body = [
            event.model_dump(mode="json", exclude={"tenant_id", "received_at"}) for event in events
        ]
        try:
            answer = httpx.post(
                f"{self.url}/v1/events",
                json=body,
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=30,
            )
        except httpx.HTTPError:
            return False, events
        return answer.status_code == httpx.codes.ACCEPTED, events


def rounds(events: list[Event], count: int) -> list[list[Event]]:
    size = max(1, -(-len(events) // count))
    return [events[start : start + size] for start in range(0, len(events), size)]
