"""The results HTTP API (FastAPI): health, loading progress, experiments and scorecards,
and metric replays.

Every request reads through its own cursor of the store's connection (DuckDB cursors
are per thread); only replay jobs write (``services.results.replay_jobs``). Routes under
``/v1/tenants/{tenant}`` need a ``read`` or ``admin`` key of that tenant (starting a
replay: ``admin``), ``/v1/progress`` any valid key
(``services.http_auth``); ``/healthz`` is open. OpenAPI is served at ``/docs`` and
``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Response
from prometheus_client import CollectorRegistry

from analytics import queries
from analytics.store import AnalyticsStore
from liftstream.api_keys import KeyRecord
from schemas.identifiers import Key, TenantId
from schemas.results import ExperimentView, LoadProgress, Scorecard
from services.http_auth import KeyChecks, KeyLookup
from services.http_guard import BodyLimit, install_error_handlers
from services.operator_metrics import add_metrics_route
from services.results.daily_api import daily_router
from services.results.loader import LoaderHealth
from services.results.replay_jobs import ReplayJobs, ReplayRequest, UnknownReplayTarget


def _unknown_experiment(tenant: str, key: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail=f"experiment '{key}' is not defined for tenant '{tenant}' "
        "(no control event defining it has been loaded)",
    )


def create_app(
    store: AnalyticsStore,
    key_lookup: KeyLookup,
    loader_health: Callable[[], LoaderHealth] | None = None,
    replay_jobs: ReplayJobs | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The API over ``store``; ``key_lookup`` authenticates keys (from the control topic's
    ``KeyRing``); ``loader_health`` reports the loader for ``/healthz``."""
    app = FastAPI(
        title="liftstream results",
        summary="Scorecards, experiments and loading progress from the DuckDB projection.",
        version="1",
    )
    app.add_middleware(BodyLimit)
    install_error_handlers(app, "results")
    add_metrics_route(app, metrics_registry or CollectorRegistry())
    checks = KeyChecks(key_lookup)
    anyone = Depends(checks.require())
    reader = Depends(checks.require("admin", "read"))
    admin = Depends(checks.require("admin"))
    jobs = replay_jobs or ReplayJobs(store)

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

    @app.get("/v1/progress")
    def progress(caller: KeyRecord = anyone) -> LoadProgress:
        """Next offsets per topic partition: aggregated by the stream, loaded here."""
        with store.cursor() as cursor:
            return queries.progress(cursor)

    @app.get("/v1/tenants/{tenant}/experiments")
    def list_experiments(tenant: TenantId, caller: KeyRecord = reader) -> list[ExperimentView]:
        with store.cursor() as cursor:
            return queries.experiments(cursor, tenant)

    @app.get("/v1/tenants/{tenant}/experiments/{key}")
    def get_experiment(tenant: TenantId, key: Key, caller: KeyRecord = reader) -> ExperimentView:
        with store.cursor() as cursor:
            view = queries.experiment(cursor, tenant, key)
        if view is None:
            raise _unknown_experiment(tenant, key)
        return view

    @app.get("/v1/tenants/{tenant}/experiments/{key}/results")
    def get_results(tenant: TenantId, key: Key, caller: KeyRecord = reader) -> Scorecard:
        """The scorecard: every metric, every treatment against the control."""
        with store.cursor() as cursor:
            scorecard = queries.scorecard(cursor, tenant, key)
        if scorecard is None:
            raise _unknown_experiment(tenant, key)
        return scorecard

    @app.post("/v1/tenants/{tenant}/replays", status_code=202)
    def start_replay(
        tenant: TenantId, request: ReplayRequest, caller: KeyRecord = admin
    ) -> dict[str, Any]:
        """Back-fill a metric from the raw log; poll the job for progress and its sums."""
        try:
            return jobs.start(tenant, request)
        except UnknownReplayTarget as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    @app.get("/v1/tenants/{tenant}/replays/{job_id}")
    def get_replay(tenant: TenantId, job_id: str, caller: KeyRecord = reader) -> dict[str, Any]:
        job = jobs.get(tenant, job_id)
        if job is None:
            raise HTTPException(
                status_code=404, detail=f"no replay job '{job_id}' for tenant '{tenant}'"
            )
        return job

    @app.get("/v1/tenants/{tenant}/metrics/{metric}/replayed")
    def get_replayed(
        tenant: TenantId, metric: Key, experiment: Key | None = None, caller: KeyRecord = reader
    ) -> list[dict[str, Any]]:
        """The stored per-variant sums of the metric's latest replay, per experiment."""
        with store.cursor() as cursor:
            return queries.replayed_rows(cursor, tenant, metric, experiment)

    app.include_router(daily_router(store, reader))
    return app
