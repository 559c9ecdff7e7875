"""``GET /v1/tenants/{tenant}/shadows/{name}`` and ``.../gate``: a shadow test's results and
its promotion gate, from the raw log (``analytics.shadow``).

The results read at most ``MAX_SHADOW_OBSERVATIONS`` observations (the newest) and
resample at most ``MAX_LATENCY_PAIRS`` latency pairs, holding one of the tenant's heavy-read
slots; the gate counts comparisons only (no resampling). A name with no observation at all
is a 404, so that a typo does not read as "no mismatches".

The gate also answers the operator's service token (``LIFTSTREAM_SERVICE_TOKEN``), for
any tenant: the rollout controller reads entry gates with it and holds no tenant's key.
It is accepted on this read-only route only; without the variable, only tenants' keys.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AwareDatetime

from analytics.shadow import gate_from_observations, read_observations, shadow_results
from analytics.store import AnalyticsStore
from schemas.identifiers import Key, TenantId
from schemas.limits import QUERY_BUDGET_S
from schemas.shadow import ShadowGate, ShadowResults
from services.http_auth import KeyChecks, ReaderKey
from services.results.read_slots import ReadSlots
from services.settings import ServiceSettings, load

__all__ = ["shadow_router"]

Since = Annotated[
    AwareDatetime | None,
    Query(description="Only observations at or after this time (ISO 8601 with a zone)."),
]
Confidence = Annotated[
    float, Query(gt=0.5, lt=1, description="Confidence level of every interval.")
]


def _unknown(tenant: str, name: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail=f"no observation of shadow test '{name}' for tenant '{tenant}' "
        "(none sent, none loaded yet, or none since the time asked)",
    )


def _gate_reader(service_token: str | None) -> Any:
    """A dependency: the operator's service token, or a read key of the path's tenant."""

    def dependency(request: Request) -> str:
        header = request.headers.get("authorization", "")
        given = header[len("bearer ") :].strip() if header.lower().startswith("bearer ") else ""
        if service_token and given and hmac.compare_digest(given.encode(), service_token.encode()):
            return "service"
        checks: KeyChecks = request.app.state.key_checks
        return checks.check(request, ("admin", "read")).key_id

    return Depends(dependency)


def shadow_router(
    store: AnalyticsStore,
    query_budget_s: float = QUERY_BUDGET_S,
    read_slots: ReadSlots | None = None,
    service_token: str | None = None,
) -> APIRouter:
    """The routes over ``store``, for a read key of the path's tenant (the gate also for
    ``service_token``, default ``LIFTSTREAM_SERVICE_TOKEN``)."""
    router = APIRouter()
    slots = read_slots or ReadSlots()
    token = service_token if service_token is not None else load(ServiceSettings).service_token
    gate_reader = _gate_reader(token or None)

    @router.get("/v1/tenants/{tenant}/shadows/{name}")
    def get_shadow(
        tenant: TenantId,
        name: Key,
        caller: ReaderKey,
        since: Since = None,
        confidence: Confidence = 0.95,
    ) -> ShadowResults:
        """Mismatch rate, noise floor, mismatch beyond noise, error and timeout rates,
        and latency ratios (median, p99) of shadow test ``name``."""
        with slots.slot(tenant):
            with store.cursor(query_budget_s) as cursor:
                observations, malformed = read_observations(cursor, tenant, name, since)
            if not observations and not malformed:
                raise _unknown(tenant, name)
            return shadow_results(
                tenant,
                name,
                observations,
                malformed=malformed,
                since=since,
                confidence=confidence,
            )

    @router.get("/v1/tenants/{tenant}/shadows/{name}/gate")
    def get_gate(
        tenant: TenantId,
        name: Key,
        max_beyond_noise: Annotated[
            float,
            Query(ge=0, le=1, description="The largest mismatch rate beyond noise allowed."),
        ],
        since: Since = None,
        confidence: Confidence = 0.95,
        caller: str = gate_reader,
    ) -> ShadowGate:
        """Whether the candidate may be promoted: the one-sided ``confidence`` upper
        bound of its mismatch rate beyond the noise floor is below ``max_beyond_noise``."""
        with store.cursor(query_budget_s) as cursor:
            observations, malformed = read_observations(cursor, tenant, name, since)
        if not observations and not malformed:
            raise _unknown(tenant, name)
        return gate_from_observations(name, observations, max_beyond_noise, confidence)

    return router
