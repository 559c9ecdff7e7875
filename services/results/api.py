"""The results HTTP API (FastAPI): health, loading progress, experiments and scorecards,
and metric replays.

Every request reads through its own cursor of the store's connection (DuckDB cursors
are per thread); only replay jobs write (``services.results.replay_jobs``). Routes under
``/v1/tenants/{tenant}`` need a ``read`` or ``admin`` key of that tenant (starting a
replay: ``admin``); ``/v1/progress`` (every tenant's topics) an ``admin`` key
(``services.http_auth``); ``/healthz`` is open; ``/metrics`` needs the operator token
(``services.operator_metrics``). A body over ``MAX_BODY_BYTES`` is 413 before it is
parsed or the key checked (``services.http_guard``). OpenAPI is served at ``/docs`` and
``/openapi.json``.

Reads are bounded: each request's queries together get ``query_budget_s``
(``schemas.limits.QUERY_BUDGET_S``); a query still running then is interrupted and that
request alone is answered 503 with Retry-After; a tenant runs at most
``MAX_HEAVY_READS_PER_TENANT`` heavy reads (``/daily``, ``/health``) at once, one more is
answered 429 with Retry-After (``read_slots``). A bad parameter is a 422 naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from analytics import queries
from analytics.health import experiment_health, pipeline_errors
from analytics.store import AnalyticsStore, QueryBudgetExceeded
from schemas.errors import field_errors
from schemas.identifiers import Key, TenantId
from schemas.limits import QUERY_BUDGET_S, QUERY_RETRY_AFTER_S
from schemas.results import ExperimentHealth, ExperimentView, LoadProgress, Scale, Scorecard
from services.http_auth import AdminKey, KeyLookup, ReaderKey, install_key_checks
from services.http_guard import BodyLimit, install_error_handlers
from services.operator_metrics import add_metrics_route
from services.results.daily_api import daily_router
from services.results.deadletters_api import deadletters_router
from services.results.loader import LoaderHealth
from services.results.read_slots import ReadSlots, TooManyReads
from services.results.replay_jobs import (
    ReplayJobs,
    ReplayRequest,
    ReplayRunning,
    UnknownReplayTarget,
)
from services.results.shadow_api import shadow_router


def _unknown_experiment(tenant: str, key: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail=f"experiment '{key}' is not defined for tenant '{tenant}' "
        "(no control event defining it has been loaded)",
    )


def _unreadable(tenant: str, key: str, error: Exception) -> HTTPException:
    return HTTPException(
        status_code=409,
        detail=f"experiment '{key}' of tenant '{tenant}' has a stored definition that no "
        f"longer validates ({error}); define a new version of it",
    )


def install_read_errors(app: FastAPI) -> None:
    """422 naming the parameter for a bad request (never echoing the value: NaN cannot be
    JSON), 503 with Retry-After for a query that ran out of its budget."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {**item, "loc": tuple(item["loc"])[1:]}
            if tuple(item["loc"])[:1] in (("query",), ("path",), ("body",))
            else item
            for item in error.errors()
        ]
        problems = field_errors(details)
        lines = "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in problems)
        return JSONResponse(
            {"detail": f"invalid request: {lines}", "errors": [p.model_dump() for p in problems]},
            status_code=422,
        )

    @app.exception_handler(TooManyReads)
    async def busy(_request: Request, error: TooManyReads) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error)},
            status_code=429,
            headers={"Retry-After": str(QUERY_RETRY_AFTER_S)},
        )

    @app.exception_handler(QueryBudgetExceeded)
    async def too_long(_request: Request, error: QueryBudgetExceeded) -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"{error}: it was stopped so that other requests stay fast; ask "
                "for less (a shorter since..through range), or try again later"
            },
            status_code=503,
            headers={"Retry-After": str(QUERY_RETRY_AFTER_S)},
        )


def create_app(
    store: AnalyticsStore,
    key_lookup: KeyLookup,
    loader_health: Callable[[], LoaderHealth] | None = None,
    replay_jobs: ReplayJobs | None = None,
    metrics_registry: CollectorRegistry | None = None,
    query_budget_s: float = QUERY_BUDGET_S,
    read_slots: ReadSlots | None = None,
) -> FastAPI:
    """The API over ``store``; ``key_lookup`` authenticates keys (from the control topic's
    ``KeyRing``); ``loader_health`` reports the loader for ``/healthz``; each request's
    queries may run ``query_budget_s`` seconds."""
    app = FastAPI(
        title="liftstream results",
        summary="Scorecards, experiments and loading progress from the DuckDB projection.",
        version="1",
    )
    app.add_middleware(BodyLimit)
    install_error_handlers(app, "results")
    add_metrics_route(app, metrics_registry or CollectorRegistry())
    install_read_errors(app)
    install_key_checks(app, key_lookup)
    jobs = replay_jobs or ReplayJobs(store)
    slots = read_slots or ReadSlots()

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        """``ok`` while the loader runs without error; 503 with the error otherwise."""
        if loader_health is None:
            return {"status": "ok"}
        health = loader_health()
        body: dict[str, Any] = {
            "status": "ok",
            "loader": {
                "running": health.running,
                # The error itself (addresses, settings) is in the service log only.
                "error": None
                if health.error is None
                else "loading from Kafka failed; the results service log has the detail",
                "messages_loaded": health.messages_loaded,
                "batches_loaded": health.batches_loaded,
            },
        }
        if not health.running or health.error is not None:
            body["status"] = "degraded"
            response.status_code = 503
        return body

    def reading() -> Any:
        return store.cursor(query_budget_s)

    def current(cursor: Any, tenant: str, key: str) -> ExperimentView:
        """The experiment as defined now, with what could not be processed of it."""
        try:
            view = queries.experiment(cursor, tenant, key)
        except ValueError as error:  # pydantic's ValidationError: an older, laxer contract
            raise _unreadable(tenant, key, error) from None
        errors = pipeline_errors(cursor, tenant, key, None if view is None else view.experiment)
        if view is None:
            missing = _unknown_experiment(tenant, key)
            if errors:
                missing.detail += "; " + "; ".join(error.reason for error in errors)
            raise missing
        return view.model_copy(update={"errors": errors})

    @app.get("/v1/progress")
    def progress(caller: AdminKey) -> LoadProgress:
        """Next offsets per topic partition: aggregated by the stream, loaded here (every
        tenant's topics: an admin key)."""
        with reading() as cursor:
            return queries.progress(cursor)

    @app.get("/v1/tenants/{tenant}/experiments")
    def list_experiments(tenant: TenantId, caller: ReaderKey) -> list[ExperimentView]:
        with reading() as cursor:
            return queries.experiments(cursor, tenant)

    @app.get("/v1/tenants/{tenant}/experiments/{key}")
    def get_experiment(tenant: TenantId, key: Key, caller: ReaderKey) -> ExperimentView:
        with reading() as cursor:
            return current(cursor, tenant, key)

    @app.get("/v1/tenants/{tenant}/experiments/{key}/results")
    def get_results(
        tenant: TenantId,
        key: Key,
        caller: ReaderKey,
        scale: Annotated[
            Scale,
            Query(
                description="The scale of every headline figure (p-values, adjusted "
                "intervals, verdicts, sequential and Bayesian figures): relative "
                "(treatment / control - 1) or absolute (treatment - control)."
            ),
        ] = "relative",
    ) -> Scorecard:
        """The scorecard: every metric, every treatment against the control; ``errors``
        lists what of the experiment could not be processed."""
        with reading() as cursor:
            view = current(cursor, tenant, key)
            scorecard = queries.scorecard(cursor, tenant, key, scale=scale)
        if scorecard is None:
            raise _unknown_experiment(tenant, key)
        return scorecard.model_copy(update={"errors": view.errors})

    @app.get("/v1/tenants/{tenant}/experiments/{key}/health")
    def get_health(tenant: TenantId, key: Key, caller: ReaderKey) -> ExperimentHealth:
        """What the pipeline counted for the experiment and its tenant: events stored,
        duplicates dropped, late events, refused messages by reason, units in several
        variants, and quarantined definitions."""
        with slots.slot(tenant), reading() as cursor:
            view = current(cursor, tenant, key)
            return experiment_health(cursor, tenant, key, view.experiment)

    @app.post("/v1/tenants/{tenant}/replays", status_code=202)
    def start_replay(tenant: TenantId, request: ReplayRequest, caller: AdminKey) -> dict[str, Any]:
        """Back-fill a metric from the raw log; poll the job for progress and its sums."""
        try:
            return jobs.start(tenant, request)
        except UnknownReplayTarget as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        except ReplayRunning as error:
            raise HTTPException(
                status_code=429, detail=str(error), headers={"Retry-After": "1"}
            ) from None

    @app.get("/v1/tenants/{tenant}/replays/{job_id}")
    def get_replay(tenant: TenantId, job_id: str, caller: ReaderKey) -> dict[str, Any]:
        job = jobs.get(tenant, job_id)
        if job is None:
            raise HTTPException(
                status_code=404, detail=f"no replay job '{job_id}' for tenant '{tenant}'"
            )
        return job

    @app.get("/v1/tenants/{tenant}/metrics/{metric}/replayed")
    def get_replayed(
        tenant: TenantId, metric: Key, caller: ReaderKey, experiment: Key | None = None
    ) -> list[dict[str, Any]]:
        """The stored per-variant sums of the metric's latest replay, per experiment."""
        with reading() as cursor:
            return queries.replayed_rows(cursor, tenant, metric, experiment)

    app.include_router(daily_router(store, query_budget_s, slots))
    app.include_router(shadow_router(store, query_budget_s, slots))
    app.include_router(deadletters_router(store, query_budget_s, slots))
    return app
