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
    if client.enabled("new-checkout", "user-42", {"region": "eu"}):    # a flag
        ...

Events are validated against ``schemas.events`` before they are sent (msgspec, with
pydantic deciding whatever that leaves open: ``liftstream.events``; a bad call raises
``InvalidInputError``, a ``ValueError`` naming the field), then handed to a transport.
``track`` and ``expose`` return the event as sent (``Outcome``/``Exposure``: the
contract's fields, ``to_json()``, ``to_model()``):

- ``delivery="kafka"`` (default): queued, then sent by a background thread in batches of
  one partition's events (the partition Kafka's default partitioner gives ``tenant:unit``,
  so a unit's exposures and outcomes share a partition), with acks from all replicas;
  see ``liftstream.transport``.
- ``delivery="http"``: batched in the background to the collector's ``POST /v1/events``
  (``collector_url``, ``api_key`` with the ingest role; both default to the settings),
  retried with backoff, from a bounded queue; see ``liftstream.http_transport``.

    client = LiftstreamClient("acme", delivery="http", collector_url=url, api_key=key)

Sending is asynchronous; ``flush()`` waits for delivery and raises ``DeliveryError`` if
any event since the last flush was not stored. An exposure this process already logged
(same tenant, experiment, unit and variant; an LRU of ``dedup_exposures`` keys, 0 turns
it off) is returned but not sent again.

Longer than 400 lines on purpose: ``LiftstreamClient`` is the SDK's one entry point, and
what is left here is its public surface and the wiring of its parts, which live in their
own modules (``events``, ``transport``, ``http_transport``, ``exposure_dedup``,
``local_config``, ``targeting``, ``shadow``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.events import Exposure, Outcome, fast_exposure, fast_outcome, from_model
from liftstream.exposure_dedup import DEFAULT_CAPACITY, ExposureDeduplicator
from liftstream.http_transport import HttpTransport
from liftstream.local_config import (
    DEFAULT_INTERVAL_S,
    ConfigEvaluator,
    ConfigPoller,
    FlagEvaluator,
)
from liftstream.producer import ReconnectingProducer, create_producer
from liftstream.settings import Settings, load_settings
from liftstream.shadow import ShadowPool, ShadowRunner
from liftstream.targeting import evaluate_experiment
from liftstream.transport import EventProducer, EventTransport, KafkaTransport
from schemas.errors import FieldError
from schemas.events import AttributeValue, ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment
from schemas.identifiers import TenantId
from schemas.shadow import SHADOW_EVENT
from schemas.topics import TopicCatalog

EventModel = TypeVar("EventModel", ExposureEvent, OutcomeEvent)
T = TypeVar("T")
DELIVERIES = ("kafka", "http")


class _TenantCheck(BaseModel):
    tenant_id: TenantId


def _invalid(field: str, reason: str) -> InvalidInputError:
    return InvalidInputError("invalid client", [FieldError(field=field, reason=reason)])


class LiftstreamClient:
    """Assignment, exposure logging and outcome tracking for one tenant."""

    def __init__(
        self,
        tenant_id: str,
        bootstrap: str | None = None,
        namespace: str | None = None,
        *,
        delivery: str | EventTransport = "kafka",
        collector_url: str | None = None,
        api_key: str | None = None,
        compression_type: str | None = None,
        producer: EventProducer | None = None,
        dedup_exposures: int = DEFAULT_CAPACITY,
        config: ConfigPoller | None = None,
        owns_config: bool = False,
        shadow_pool: ShadowPool | None = None,
    ) -> None:
        """``bootstrap`` and ``namespace`` default to ``LIFTSTREAM_*`` / ``liftstream up``.

        ``delivery`` is ``"kafka"``, ``"http"`` (to ``collector_url`` with ``api_key``,
        defaulting to ``LIFTSTREAM_COLLECTOR_URL`` / ``LIFTSTREAM_API_KEY`` or the
        platform ``liftstream up`` runs) or a transport object (e.g. an ``HttpTransport``
        with its own batch and queue sizes). ``producer`` replaces the Kafka producer
        (tests, or a producer the service shares). ``dedup_exposures`` is how many exposure
        keys are remembered to log each once (0: log every call). ``config`` lets
        ``assign``/``expose`` take an experiment key, evaluated against its snapshot;
        ``owns_config`` makes ``close()`` stop it too. ``shadow_pool`` sizes the threads
        and queue that run ``shadow`` candidates (``liftstream.shadow``).
        """
        try:
            _TenantCheck(tenant_id=tenant_id)
        except ValidationError as error:
            raise InvalidInputError.from_validation("invalid client", error) from None
        if isinstance(dedup_exposures, bool) or not isinstance(dedup_exposures, int):
            raise _invalid("dedup_exposures", f"must be an integer, got {dedup_exposures!r}")
        if dedup_exposures < 0:
            raise _invalid("dedup_exposures", f"must be >= 0 (0 disables), got {dedup_exposures}")
        settings = load_settings()
        self.tenant_id = tenant_id
        self.topics = TopicCatalog(
            namespace=namespace or settings.namespace, event_partitions=settings.partitions
        )
        self.bootstrap = bootstrap or settings.bootstrap
        self.transport = self._transport_for(
            delivery, settings, collector_url, api_key, producer, compression_type
        )
        self.exposures = ExposureDeduplicator(dedup_exposures)
        self.config = config
        self._owns_config = owns_config
        self._shadow_pool = shadow_pool
        self._shadows: ShadowRunner | None = None
        self._closed = False

    def _transport_for(
        self,
        delivery: str | EventTransport,
        settings: Settings,
        collector_url: str | None,
        api_key: str | None,
        producer: EventProducer | None,
        compression_type: str | None,
    ) -> EventTransport:
        if not isinstance(delivery, str):
            return delivery
        if delivery not in DELIVERIES:
            raise _invalid(
                "delivery",
                f"{delivery!r} is not a delivery: use 'kafka' or 'http', or pass a transport",
            )
        if delivery == "kafka":
            return KafkaTransport(
                producer
                or ReconnectingProducer(
                    self.bootstrap,
                    lambda: create_producer(self.bootstrap, compression_type=compression_type),
                ),
                self.topics,
                self.bootstrap,
            )
        if producer is not None:
            raise _invalid("producer", "a Kafka producer is only used with delivery='kafka'")
        url = collector_url or settings.collector_url
        if not url:
            raise PlatformUnavailableError(
                "no collector configured for delivery='http': pass collector_url=, set "
                "LIFTSTREAM_COLLECTOR_URL or start one with `liftstream up`"
            )
        return HttpTransport(url, api_key or settings.api_key)

    @classmethod
    def from_config(
        cls,
        control_url: str,
        api_key: str,
        poll_interval_s: float = DEFAULT_INTERVAL_S,
        *,
        tenant_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        stream: bool = True,
        **options: Any,
    ) -> LiftstreamClient:
        """A client whose experiments come from the control service, polled in the background.

        The tenant is the API key's (from the first snapshot) unless ``tenant_id`` is given;
        ``options`` are the constructor's (``bootstrap``, ``delivery``...; with
        ``delivery="http"`` the collector gets ``api_key`` too unless ``options`` has
        one); ``transport`` replaces the poller's HTTP transport (tests). Raises
        ``PlatformUnavailableError`` if the first snapshot cannot be fetched and no tenant
        is given. ``stream`` listens to the control service's config stream (Server-Sent
        Events) so changes apply within a fraction of a second, polling with the ETag
        while it is down; ``stream=False`` only polls.
        """
        poller = ConfigPoller(
            control_url, api_key, interval_s=poll_interval_s, transport=transport, stream=stream
        ).start()
        evaluator = poller.evaluator
        if tenant_id is None:
            if evaluator is None:
                poller.stop()
                raise PlatformUnavailableError(
                    f"no configuration from {control_url}: {poller.last_error}"
                )
            tenant_id = evaluator.snapshot.tenant_id
        if options.get("delivery") == "http":
            options.setdefault("api_key", api_key)
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
    ) -> Exposure | None:
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
        return self.log_exposure(
            experiment.key, variant, experiment.version, unit_id, attributes, timestamp
        )

    def log_exposure(
        self,
        key: str,
        variant: str,
        version: int,
        unit_id: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        timestamp: datetime | None = None,
    ) -> Exposure:
        """Log that the unit sees ``variant`` of ``key`` (version ``version``), once per
        process (see ``dedup_exposures``), without checking ``variant`` against a
        definition: ``expose`` checks, and the OpenFeature provider logs a flag's units
        as variants ``on``/``off`` of the flag's key."""
        event = fast_exposure(
            self.tenant_id, unit_id, key, variant, version, attributes, timestamp
        ) or self._validated(
            ExposureEvent,
            "invalid exposure",
            tenant_id=self.tenant_id,
            unit_id=unit_id,
            timestamp=timestamp or datetime.now(UTC),
            experiment_key=key,
            variant_key=variant,
            experiment_version=version,
            attributes=dict(attributes or {}),
        )
        self._check_open()
        dedup_key = (self.tenant_id, key, unit_id, variant)
        if not self.exposures.first_time(dedup_key):
            return event  # this process logged it already
        try:
            self.transport.send(event)
        except BaseException:
            self.exposures.forget(dedup_key)
            raise
        return event

    def flag(
        self,
        key: str,
        unit_id: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        default: Any = None,
    ) -> Any:
        """The flag's value for the unit, from the config snapshot (``default`` before
        the first snapshot or for a flag it lacks); logs the unit's exposure, ``on`` or
        ``off`` of the flag's key (of its active rollout's exposure key, ``FlagConfig``),
        when the unit is one of the flag's comparison (its ramp, a rollout's holdback:
        ``FlagEvaluator.exposure``), as the OpenFeature provider does."""
        resolved = self._flag(key, unit_id, attributes)
        if resolved is None:
            return default
        flag, on = resolved
        definition = flag.config.flag
        return definition.on_value if on else definition.off_value

    def enabled(
        self, key: str, unit_id: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> bool:
        """Whether the unit is served the flag's on value (False for a flag the snapshot
        lacks); logs the exposure as ``flag`` does."""
        resolved = self._flag(key, unit_id, attributes)
        return resolved is not None and resolved[1]

    def _flag(
        self, key: str, unit_id: str, attributes: Mapping[str, AttributeValue] | None
    ) -> tuple[FlagEvaluator, bool] | None:
        evaluator = self._snapshot(key, "flag")
        flag = None if evaluator is None else evaluator.flag_evaluator(key)
        if flag is None:
            return None
        on, state = flag.resolve(unit_id, attributes)
        variant = flag.exposure(on, state)
        if variant is not None:
            config = flag.config
            self.log_exposure(config.logged_key, variant, config.flag.version, unit_id, attributes)
        return flag, on

    def _snapshot(self, key: str, kind: str = "experiment") -> ConfigEvaluator | None:
        """The current compiled snapshot (one object, so a call sees one revision)."""
        if self.config is None:
            raise InvalidInputError(
                "cannot evaluate by key",
                [
                    FieldError(
                        field=kind,
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
    ) -> Outcome:
        """Record that the unit did ``event`` (worth ``value``: revenue, duration, 1).

        Costs the caller a few µs: validated, queued, returned (sent in the background)."""
        outcome = fast_outcome(
            self.tenant_id, unit_id, event, value, properties, timestamp
        ) or self._validated(
            OutcomeEvent,
            "invalid outcome",
            tenant_id=self.tenant_id,
            unit_id=unit_id,
            timestamp=timestamp or datetime.now(UTC),
            event=event,
            value=value,
            properties=dict(properties or {}),
        )
        self._check_open()
        self.transport.send(outcome)
        return outcome

    @property
    def shadows(self) -> ShadowRunner:
        """The runner of this client's shadow tests (its ``stats``), made on first use."""
        if self._shadows is None:
            self._shadows = ShadowRunner(self._log_shadow, self._shadow_pool)
        return self._shadows

    def shadow(
        self,
        name: str,
        primary: Callable[[], T],
        candidate: Callable[[], Any],
        compare: Callable[[Any, Any], Any] | None = None,
        sample: float = 0.05,
        noise: float | None = None,
        timeout_s: float = 1.0,
    ) -> T:
        """``primary()``'s result (or its exception), always; on a ``sample`` of calls
        ``candidate()`` also runs, off the caller's path, and is compared with it
        (``compare(primary_result, candidate_result)``, ``==`` by default); on a ``noise``
        share (default ``sample / 2``) the primary runs a second time instead, to measure
        the noise floor. Each comparison is logged as a ``liftstream.shadow`` outcome; a
        run past ``timeout_s`` is logged as timed out. See ``liftstream.shadow``."""
        return self.shadows.run(name, primary, candidate, compare, sample, noise, timeout_s)

    def _log_shadow(
        self, unit_id: str, value: float, properties: dict[str, Any], when: datetime
    ) -> None:
        self.track(unit_id, SHADOW_EVENT, value, properties, when)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent so far is delivered (Kafka acknowledged it, or the
        collector answered for it).

        Raises ``DeliveryError`` if any of them (since the last flush) was not stored.
        """
        self.transport.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the transport (and a poller it owns). Safe to call twice."""
        if self._closed:
            return
        if self._shadows is not None:
            self._shadows.close(1.0 if timeout is None else min(timeout, 1.0))
        self._closed = True
        try:
            self.transport.close(timeout)
        finally:
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

    def _validated(self, model: type[EventModel], subject: str, **fields: Any) -> Any:
        """The contract decides what the fast path left open (``liftstream.events``): the
        event as pydantic reads it, or ``InvalidInputError`` naming the field.

        A call is one occurrence: it gets its own id (an event without one would get an
        id derived from its content, and two equal calls would count once). The
        transports keep it through their retries."""
        try:
            return from_model(model(**fields))
        except ValidationError as error:
            raise InvalidInputError.from_validation(subject, error) from None

    def _check_open(self) -> None:
        if self._closed:
            raise PlatformUnavailableError("the client is closed")
