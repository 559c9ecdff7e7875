"""The collector's HTTP API (FastAPI).

``POST /v1/events`` (``ingest`` or ``admin`` key, ``Authorization: Bearer <key>``): the
body is UTF-8 JSON, ``{"events": [...]}`` or a bare list of exposure/outcome events.

Answers:

- **202** every event accepted: ``{"accepted": n, "rejected": 0, "errors": [], "flags": [...]}``.
- **207** some accepted, some refused (partial success): the accepted ones are in Kafka;
  ``errors`` lists ``{index, field, reason}`` for each refused one (an event can have
  several, at most ``MAX_FIELD_ERRORS``), and each refused event is on the dead-letter
  topic (stage ``collector``).
- **422** every event refused (same body; all dead-lettered); or, with
  ``{"detail": ...}``, the broker refused this batch's records for their content
  (nothing of it is acknowledged; sending it again cannot help).
- **400** the body is empty, not UTF-8, not JSON, or not a batch; **413** the body is
  larger than the limit or has more events than allowed; **401/403** missing, unknown,
  revoked key / key without the ingest or admin role; **429** the tenant is over its
  quota (``Retry-After`` in seconds; nothing was validated or stored); **503** a broker
  outage (no acknowledgement in time, the broker cannot be reached, or a write failed
  again on a freshly replaced producer; ``/readyz`` then says not ready): nothing of the
  batch is acknowledged and its quota tokens are given back; retry it after
  ``Retry-After`` with the same ``event_id``s (downstream de-duplicates by ``event_id``).
  Whole-request refusals carry ``{"detail": "<reason>"}``; no answer names the broker's
  address or a client setting (the log does).

An event without ``event_id`` gets one derived from its tenant and content (uuid5 of its
canonical JSON without ``received_at``, ``schemas.events``): a client that retries a batch
without ids after a lost answer is counted once, where a random id would count it twice.
Refusing such events instead would break every client that relies on the id being
optional; the price is that two events equal in every field, timestamp included to the
microsecond, count as one (a client that means two gives them ids).

A refused event costs at most a bounded dead letter (``schemas.deadletter``): a 1 MiB
``tenant_id`` or ``unit_id`` is quoted, not copied, and its key is hashed, so no refusal
can make a record the broker refuses in turn.

``POST /v1/tenants/{tenant}/import`` (``admin`` key of that tenant): a backfill batch
(``liftstream import``). The same body, limits, quota, validation, topics and dead
letters, with an import's age limit (``MAX_IMPORT_AGE_DAYS``, ten years) instead of
``max_past_s``; the future limit stays. The answer adds ``event_ids`` (of the accepted
events, in order) and ``rejected_by_reason`` (``{code: count}``) for the CLI's summary.

Isolation: a tenant whose bucket is empty is answered 429 before its body is read; an
admitted batch is charged its exact event count once parsed, then validated and produced
in slices that share the event loop with other tenants' requests, at most
``WORKING_PER_TENANT`` requests of one tenant at a time (``fairness.py``).

The response is sent only after the broker acknowledged every accepted event and every
dead letter. Exposures of an experiment (or a variant) the tenant has not defined are
accepted and flagged in ``flags`` (``{index, field, reason}``): an SDK may send them
before the control topic reaches the collector, and refusing them would lose data.

``/healthz`` (the process serves) and ``/readyz`` (the sink can write: every producer
started, no recent failed write, the broker answers; 503 otherwise) need no key;
``/metrics`` (Prometheus text) needs the operator token (``services.operator_metrics``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request, Response

from schemas.deadletter import DeadLetter
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.limits import MAX_IMPORT_AGE_DAYS
from schemas.topics import TopicCatalog
from services.collector.body import BodyError, decode_batch
from services.collector.config import CollectorConfig
from services.collector.fairness import (
    FAST_SLICE,
    SLICE,
    TenantGates,
    in_slices,
    map_in_slices,
)
from services.collector.fast_path import (
    FastEvent,
    FastExposure,
    FastOutcome,
    Window,
    decode_fast,
    doubtful,
)
from services.collector.metrics import CollectorMetrics
from services.collector.sink import (
    EventSink,
    Record,
    RecordsRefused,
    SinkUnavailable,
    TenantEvents,
)
from services.collector.validation import (
    AcceptedEvent,
    AllAccepted,
    BatchVerdict,
    Event,
    RejectedEvent,
    batch_verdict,
    exposures_of,
    validate_event,
    validate_slowly,
)
from services.http_auth import (
    INGEST_ROLES,
    AdminKeyOnLoop,
    IngestKeyOnLoop,
    KeyLookup,
    install_key_checks,
    key_checked_route,
)
from services.operator_metrics import add_metrics_route
from services.quotas import Admission, Clock, TenantQuotas

#: (tenant, experiment key) -> the experiment's variant keys, None if not defined.
VariantLookup = Callable[[str, str], set[str] | None]
SOURCE = "http:/v1/events"
IMPORT_SOURCE = "http:/v1/tenants/{tenant}/import"
IMPORT_MAX_PAST_S = MAX_IMPORT_AGE_DAYS * 24 * 3600.0
READY_TIMEOUT_S = 2.0
#: Seconds a client waits after a 503 before it sends the batch again.
RETRY_AFTER_S = 1
#: Requests of one tenant validated and serialised at once; more wait their turn.
WORKING_PER_TENANT = 2


def _flags(
    accepted: list[AcceptedEvent], tenant_id: str, variants_of: VariantLookup
) -> list[dict[str, Any]]:
    flags: list[dict[str, Any]] = []
    for item in exposures_of(accepted):
        event = item.event
        assert isinstance(event, ExposureEvent | FastExposure)
        variants = variants_of(tenant_id, event.experiment_key)
        if variants is None:
            flags.append(
                {
                    "index": item.index,
                    "field": "experiment_key",
                    "reason": f"accepted and flagged: experiment '{event.experiment_key}' is "
                    f"not defined for tenant '{tenant_id}'",
                }
            )
        elif event.variant_key not in variants:
            flags.append(
                {
                    "index": item.index,
                    "field": "variant_key",
                    "reason": f"accepted and flagged: experiment '{event.experiment_key}' has "
                    f"no variant '{event.variant_key}'",
                }
            )
    return flags


def _event_record(event: Event | FastEvent, exposures: str, outcomes: str) -> Record:
    """An accepted event on its topic (a fast-path struct is encoded by the sink)."""
    if type(event) is FastOutcome:
        return (outcomes, event.partition_key, event)
    if type(event) is FastExposure:
        return (exposures, event.partition_key, event)
    assert isinstance(event, ExposureEvent | OutcomeEvent)
    return (
        exposures if event.type == "exposure" else outcomes,
        event.partition_key,
        event.to_json(),
    )


def _fast_records(
    events: list[FastEvent], tenant_id: str, exposures: str, outcomes: str
) -> list[Record]:
    """The records of fast-path events (stamped structs): a ``TenantEvents`` per topic,
    which the sink groups by partition and encodes without a record per event."""
    of_outcomes: list[FastEvent] = [event for event in events if type(event) is FastOutcome]
    if len(of_outcomes) == len(events):
        return [(outcomes, None, TenantEvents(tenant_id, of_outcomes))]
    of_exposures = [event for event in events if type(event) is not FastOutcome]
    return [
        (topic, None, TenantEvents(tenant_id, chosen))
        for topic, chosen in ((outcomes, of_outcomes), (exposures, of_exposures))
        if chosen
    ]


def _dead_letter(
    refused: RejectedEvent, topic: str, now: datetime, source: str, tenant_id: str
) -> Record:
    """A refused event's dead letter (bounded, keyed boundedly)."""
    letter = DeadLetter(
        stage="collector",
        source_topic=source,
        tenant_id=tenant_id,
        reason=f"event {refused.index} of the batch: "
        + "; ".join(f"{e.field or '<event>'}: {e.reason}" for e in refused.errors),
        errors=refused.errors,
        payload=refused.payload,
        failed_at=now,
    )
    return (topic, refused.key, letter.encode())


def _errors(verdict: BatchVerdict) -> list[dict[str, Any]]:
    return [
        {"index": refused.index, "field": error.field, "reason": error.reason}
        for refused in verdict.rejected
        for error in refused.errors
    ]


def create_app(
    config: CollectorConfig,
    key_lookup: KeyLookup,
    sink: EventSink,
    topics: TopicCatalog,
    variants_of: VariantLookup | None = None,
    monotonic: Clock = time.monotonic,
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics: CollectorMetrics | None = None,
) -> FastAPI:
    """The collector over ``sink``; ``key_lookup`` authenticates keys, ``variants_of``
    (optional) tells which experiments and variants a tenant has defined; ``metrics``
    (optional) is shared with the sink (replaced producers)."""
    metrics = metrics or CollectorMetrics()
    quotas = TenantQuotas(config.quota_of, monotonic)
    exposures, outcomes, deadletter = topics.exposures, topics.outcomes, topics.deadletter
    gates = TenantGates(WORKING_PER_TENANT)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        await sink.start()
        yield
        await sink.stop()

    app = FastAPI(
        title="liftstream collector",
        summary="HTTP ingestion of exposure and outcome events.",
        version="1",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_key_checks(app, key_lookup)

    def refuse(
        status: int, reason: str, code: str, headers: dict[str, str] | None = None
    ) -> HTTPException:
        metrics.rejected.labels(code).inc()
        return HTTPException(status_code=status, detail=reason, headers=headers)

    def throttle_if_refused(tenant_id: str, admission: Admission) -> None:
        if admission.allowed:
            return
        metrics.throttled.labels(tenant_id).inc()
        raise HTTPException(
            status_code=429,
            detail=f"tenant '{tenant_id}' is over its quota of "
            f"{config.quota_of(tenant_id).rate_per_s:g} events/s; retry after "
            f"{admission.retry_after_header}s",
            headers={"Retry-After": admission.retry_after_header},
        )

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise refuse(
                413,
                f"the body is {declared} bytes; the limit is {config.max_body_bytes}",
                "body_too_large",
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise refuse(
                    413,
                    f"the body is over the limit of {config.max_body_bytes} bytes",
                    "body_too_large",
                )
        return bytes(body)

    def verdicts(
        body: bytes, tenant_id: str, now: datetime, past_limit_s: float
    ) -> tuple[int, Callable[[], Awaitable[tuple[BatchVerdict, bool]]]]:
        """The batch's event count and how to judge its events (once it is admitted).
        Raises 400 for a body that is not a batch."""
        fast = decode_fast(body)
        if fast is None:
            items = parse(body)
            return len(items), lambda: judge_slowly(items, tenant_id, now, past_limit_s)
        return len(fast), lambda: judge_fast(fast, body, tenant_id, now, past_limit_s)

    def parse(body: bytes) -> list[Any]:
        try:
            return decode_batch(body)
        except BodyError as error:
            raise refuse(400, error.reason, error.code) from None

    async def judge_slowly(
        items: list[Any], tenant_id: str, now: datetime, past_limit_s: float
    ) -> tuple[BatchVerdict, bool]:
        """The verdict and False (events of any kind, some maybe pydantic's)."""
        verdict = batch_verdict(
            await in_slices(
                len(items),
                lambda i: validate_event(
                    i, items[i], tenant_id, now, config, max_past_s=past_limit_s
                ),
            )
        )
        return verdict, False

    async def judge_fast(
        events: list[FastEvent], body: bytes, tenant_id: str, now: datetime, past_limit_s: float
    ) -> tuple[BatchVerdict, bool]:
        """The verdict, and whether every event took the fast path."""
        window = Window(tenant_id, now, config, past_limit_s)
        unsure: list[int] = []
        for start in range(0, len(events), FAST_SLICE):
            if start:
                await asyncio.sleep(0)  # let other tenants' requests in (fairness.py)
            part = doubtful(events[start : start + FAST_SLICE], window)
            unsure.extend(start + index for index in part)
        if not unsure:
            return BatchVerdict(AllAccepted(events), []), True
        # Pydantic decides the others, from the body as orjson reads it.
        items = parse(body)
        decided = await in_slices(
            len(unsure),
            lambda j: validate_slowly(
                unsure[j], items[unsure[j]], tenant_id, now, config, past_limit_s
            ),
        )
        verdicts: list[AcceptedEvent | RejectedEvent] = [
            AcceptedEvent(i, event) for i, event in enumerate(events)
        ]
        for verdict in decided:
            verdicts[verdict.index] = verdict
        return batch_verdict(verdicts), False

    async def store(
        request: Request, tenant_id: str, *, max_past_s: float | None, source: str
    ) -> tuple[BatchVerdict, int]:
        """Read, admit, validate and store a batch; its verdict and the answer's status.
        Raises the whole-request refusals (400, 413, 422 content, 429, 503)."""
        # An empty bucket is refused before the body costs anything to read and parse.
        throttle_if_refused(tenant_id, quotas.peek(tenant_id))
        body = await read_body(request)
        now = wall_clock()
        past_limit_s = config.max_past_s if max_past_s is None else max_past_s
        count, judge = verdicts(body, tenant_id, now, past_limit_s)
        if count > config.max_events:
            raise refuse(
                413,
                f"events: the batch has {count} events; the limit is {config.max_events}",
                "too_many_events",
            )
        throttle_if_refused(tenant_id, quotas.admit(tenant_id, count))
        async with gates.of(tenant_id):
            try:
                verdict, fast = await judge()
            except HTTPException:
                quotas.refund(tenant_id, count)  # a body only orjson refuses: nothing stored
                raise
            accepted, rejected = verdict.accepted, verdict.rejected
            if fast:
                assert isinstance(accepted, AllAccepted)
                records = _fast_records(accepted.events, tenant_id, exposures, outcomes)
            else:
                records = await map_in_slices(
                    partial(_event_record, exposures=exposures, outcomes=outcomes),
                    [item.event for item in accepted],
                    SLICE,
                )
            records += await in_slices(
                len(rejected),
                lambda i: _dead_letter(rejected[i], deadletter, now, source, tenant_id),
            )
        started = time.perf_counter()
        try:
            await sink.send_all(records, config.produce_timeout_s)
        except SinkUnavailable as error:
            # Nothing was acknowledged: the retry must not pay for the broker's outage.
            quotas.refund(tenant_id, count)
            metrics.unavailable.inc()
            raise HTTPException(
                status_code=503,
                detail=f"{error}; nothing of this batch is acknowledged, retry it with the same "
                "event_ids",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        except RecordsRefused as error:
            raise refuse(
                422,
                f"{error}; nothing of this batch is acknowledged, and sending it again as it "
                "is cannot succeed",
                "refused_by_broker",
            ) from None
        metrics.produce_seconds.observe(time.perf_counter() - started)
        if verdict.accepted:
            metrics.accepted.labels(tenant_id).inc(len(verdict.accepted))
        for refused in verdict.rejected:
            metrics.rejected.labels(refused.code).inc()
        status = 202 if not verdict.rejected else 207 if verdict.accepted else 422
        return verdict, status

    async def ingest(request: Request, caller: IngestKeyOnLoop) -> Response:
        """Validate and store a batch of events; see the module docstring for the answers."""
        tenant_id = caller.tenant_id
        verdict, status = await store(request, tenant_id, max_past_s=None, source=SOURCE)
        body: dict[str, Any] = {
            "accepted": len(verdict.accepted),
            "rejected": len(verdict.rejected),
            "errors": _errors(verdict),
            "flags": _flags(verdict.accepted, tenant_id, variants_of) if variants_of else [],
        }
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    # The hot route: its key is checked without FastAPI's dependency solving.
    app.router.add_api_route(
        "/v1/events",
        ingest,
        methods=["POST"],
        status_code=202,
        route_class_override=key_checked_route(*INGEST_ROLES),
    )

    @app.post("/v1/tenants/{tenant}/import", status_code=202)
    async def import_batch(tenant: str, request: Request, caller: AdminKeyOnLoop) -> Response:
        """A backfill batch: as ``/v1/events`` without the age limit (module docstring)."""
        verdict, status = await store(
            request, caller.tenant_id, max_past_s=IMPORT_MAX_PAST_S, source=IMPORT_SOURCE
        )
        by_reason: dict[str, int] = {}
        for refused in verdict.rejected:
            by_reason[refused.code] = by_reason.get(refused.code, 0) + 1
        body = {
            "accepted": len(verdict.accepted),
            "rejected": len(verdict.rejected),
            "errors": _errors(verdict),
            "event_ids": [str(item.event.event_id) for item in verdict.accepted],
            "rejected_by_reason": by_reason,
        }
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(response: Response) -> dict[str, str]:
        """Ready when the sink can write (``EventSink.ready``); 503 saying why otherwise."""
        problem = await sink.ready(READY_TIMEOUT_S)
        if problem is None:
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "unavailable", "detail": problem}

    add_metrics_route(app, metrics.registry)

    return app
