"""The SDK a service embeds: assign units locally, log exposures, track outcomes to Kafka.

    with LiftstreamClient("acme") as client:
        exposure = client.expose(experiment, "user-42")    # None if user-42 is not included
        if exposure is not None and exposure.variant_key == "treatment":
            ...
        client.track("user-42", "purchase", value=31.5)

With a ``ConfigPoller`` (``config=``, or ``LiftstreamClient.from_config``) experiments
are named by key and evaluated against the tenant's latest polled snapshot (status, kill
switch, holdout, targeting, ramp), which stays in use while the control API is down:

    client = LiftstreamClient.from_config(control_url, api_key, poll_interval_s=30)
    client.expose("checkout-button", "user-42", attributes={"country": "de"})

Events are validated against ``schemas.events`` before they are sent (a bad call raises
``InvalidInputError``, a ``ValueError`` naming the field), keyed ``tenant:unit`` so a unit's
exposures and outcomes share a partition, and written with acks from all replicas.
Sending is asynchronous; ``flush()`` waits for the broker and raises ``DeliveryError`` if
any event since the last flush was not stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from liftstream.errors import DeliveryError, InvalidInputError, PlatformUnavailableError
from liftstream.local_config import DEFAULT_INTERVAL_S, ConfigEvaluator, ConfigPoller
from liftstream.producer import create_producer
from liftstream.settings import load_settings
from liftstream.targeting import evaluate_experiment
from schemas.deadletter import FieldError
from schemas.events import AttributeValue, ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment
from schemas.identifiers import TenantId
from schemas.topics import TopicCatalog

log = logging.getLogger(__name__)

EventModel = TypeVar("EventModel", ExposureEvent, OutcomeEvent)


class EventProducer(Protocol):
    """What the client needs of a Kafka producer (kafka-python's ``KafkaProducer`` fits)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        """Queue one record; returns a future with ``add_errback``."""

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class _TenantCheck(BaseModel):
    tenant_id: TenantId


class LiftstreamClient:
    """Assignment, exposure logging and outcome tracking for one tenant."""

    def __init__(
        self,
        tenant_id: str,
        bootstrap: str | None = None,
        namespace: str | None = None,
        *,
        compression_type: str | None = None,
        producer: EventProducer | None = None,
        config: ConfigPoller | None = None,
        owns_config: bool = False,
    ) -> None:
        """``bootstrap`` and ``namespace`` default to ``LIFTSTREAM_*`` / ``liftstream up``.

        ``producer`` replaces the Kafka producer (tests, or a producer the service shares).
        ``config`` lets ``assign``/``expose`` take an experiment key, evaluated against
        its snapshot; ``owns_config`` makes ``close()`` stop it too.
        """
        try:
            _TenantCheck(tenant_id=tenant_id)
        except ValidationError as error:
            raise InvalidInputError.from_validation("invalid client", error) from None
        settings = load_settings()
        self.tenant_id = tenant_id
        self.topics = TopicCatalog(
            namespace=namespace or settings.namespace, event_partitions=settings.partitions
        )
        self.bootstrap = bootstrap or settings.bootstrap
        self._producer: EventProducer = producer or create_producer(
            self.bootstrap, compression_type=compression_type
        )
        self.config = config
        self._owns_config = owns_config
        self._failures: list[BaseException] = []
        self._failures_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(
        cls,
        control_url: str,
        api_key: str,
        poll_interval_s: float = DEFAULT_INTERVAL_S,
        *,
        tenant_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> LiftstreamClient:
        """A client whose experiments come from the control service, polled in the background.

        The tenant is the API key's (from the first snapshot) unless ``tenant_id`` is given;
        ``options`` are the constructor's (``bootstrap``, ``producer``...); ``transport``
        replaces the poller's HTTP transport (tests). Raises
        ``PlatformUnavailableError`` if the first snapshot cannot be fetched and no tenant
        is given.
        """
        poller = ConfigPoller(
            control_url, api_key, interval_s=poll_interval_s, transport=transport
        ).start()
        evaluator = poller.evaluator
        if tenant_id is None:
            if evaluator is None:
                poller.stop()
                raise PlatformUnavailableError(
                    f"no configuration from {control_url}: {poller.last_error}"
                )
            tenant_id = evaluator.snapshot.tenant_id
        try:
            return cls(tenant_id, config=poller, owns_config=True, **options)
        except BaseException:
            poller.stop()
            raise

    def assign(
        self,
        experiment: Experiment | str,
        unit_id: str,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> str | None:
        """The unit's variant, or None when it is not in the experiment (overrides,
        layer, targeting on ``attributes`` and traffic: see ``liftstream.targeting``).

        A key (a ``str``) is evaluated against the config snapshot: None also while no
        snapshot was fetched yet, or for an experiment not running, killed or unknown.
        """
        if isinstance(experiment, Experiment):
            return evaluate_experiment(experiment, unit_id, attributes)
        evaluator = self._snapshot(experiment)
        return None if evaluator is None else evaluator.variant(experiment, unit_id, attributes)

    def expose(
        self,
        experiment: Experiment | str,
        unit_id: str,
        variant: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: datetime | None = None,
    ) -> ExposureEvent | None:
        """Log that the unit sees its variant now; None (nothing logged) if not included.

        ``experiment`` is a definition, or a key looked up in the config snapshot (as in
        ``assign``). ``variant`` overrides the assignment (e.g. a QA allowlist) and must be
        one of the experiment's variants.
        """
        if isinstance(experiment, str):
            evaluator = self._snapshot(experiment)
            definition = None if evaluator is None else evaluator.experiment(experiment)
            if definition is None:
                if variant is None:
                    return None
                raise InvalidInputError(
                    "invalid exposure",
                    [
                        FieldError(
                            field="experiment_key",
                            reason=f"no experiment '{experiment}' in the configuration "
                            f"snapshot of tenant '{self.tenant_id}'",
                        )
                    ],
                )
            if variant is None:
                assert evaluator is not None
                variant = evaluator.variant(experiment, unit_id, attributes)
                if variant is None:
                    return None
            experiment = definition
        elif variant is None:
            variant = evaluate_experiment(experiment, unit_id, attributes)
            if variant is None:
                return None
        if variant not in experiment.variant_weights():
            raise InvalidInputError(
                "invalid exposure",
                [
                    FieldError(
                        field="variant_key",
                        reason=f"'{variant}' is not a variant of '{experiment.key}' "
                        f"(variants: {', '.join(experiment.variant_weights())})",
                    )
                ],
            )
        event = self._validated(
            ExposureEvent,
            "invalid exposure",
            tenant_id=self.tenant_id,
            unit_id=unit_id,
            timestamp=timestamp or datetime.now(UTC),
            experiment_key=experiment.key,
            variant_key=variant,
            experiment_version=experiment.version,
            attributes=dict(attributes or {}),
        )
        self._send(self.topics.exposures, event)
        return event

    def _snapshot(self, key: str) -> ConfigEvaluator | None:
        """The current compiled snapshot (one object, so a call sees one revision)."""
        if self.config is None:
            raise InvalidInputError(
                "cannot evaluate by key",
                [
                    FieldError(
                        field="experiment",
                        reason=f"'{key}' is a key, but the client has no config poller: "
                        "pass an Experiment, or create the client with config= or from_config",
                    )
                ],
            )
        evaluator = self.config.evaluator
        if evaluator is not None and evaluator.snapshot.tenant_id != self.tenant_id:
            raise InvalidInputError(
                "cannot evaluate by key",
                [
                    FieldError(
                        field="tenant_id",
                        reason=f"the config snapshot is tenant "
                        f"'{evaluator.snapshot.tenant_id}', the client's is '{self.tenant_id}'",
                    )
                ],
            )
        return evaluator

    def track(
        self,
        unit_id: str,
        event: str,
        value: float = 1.0,
        properties: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> OutcomeEvent:
        """Record that the unit did ``event`` (worth ``value``: revenue, duration, 1)."""
        outcome = self._validated(
            OutcomeEvent,
            "invalid outcome",
            tenant_id=self.tenant_id,
            unit_id=unit_id,
            timestamp=timestamp or datetime.now(UTC),
            event=event,
            value=value,
            properties=dict(properties or {}),
        )
        self._send(self.topics.outcomes, outcome)
        return outcome

    def flush(self, timeout: float | None = None) -> None:
        """Wait until Kafka has acknowledged every event sent so far.

        Raises ``DeliveryError`` if any of them (since the last flush) was not stored.
        """
        self._producer.flush(timeout)
        with self._failures_lock:
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(
                f"{len(failures)} event(s) were not stored by Kafka at {self.bootstrap}; "
                f"first error: {failures[0]!r}"
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the producer (and a poller it owns). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout)
            if self._owns_config and self.config is not None:
                self.config.stop()

    def __enter__(self) -> LiftstreamClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _validated(self, model: type[EventModel], subject: str, **fields: Any) -> EventModel:
        try:
            return model(**fields)
        except ValidationError as error:
            raise InvalidInputError.from_validation(subject, error) from None

    def _send(self, topic: str, event: ExposureEvent | OutcomeEvent) -> None:
        if self._closed:
            raise PlatformUnavailableError("the client is closed")
        future = self._producer.send(topic, key=event.partition_key, value=event.to_json())
        future.add_errback(self._record_failure)

    def _record_failure(self, error: BaseException) -> None:
        log.error("Kafka did not store an event: %r", error)
        with self._failures_lock:
            self._failures.append(error)
