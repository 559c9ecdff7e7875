"""``GET /v1/tenants/{tenant}/shadows/{name}`` and ``.../gate``: a shadow test's results and
its promotion gate, from the raw log (``analytics.shadow``).

The results read at most ``MAX_SHADOW_OBSERVATIONS`` observations (the newest) and
resample at most ``MAX_LATENCY_PAIRS`` latency pairs, holding one of the tenant's heavy-read
slots; the gate counts comparisons only (no resampling). A name with no observation at all
is a 404, so that a typo does not read as "no mismatches".
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime

from analytics.shadow import gate_from_observations, read_observations, shadow_results
from analytics.store import AnalyticsStore
from schemas.identifiers import Key, TenantId
from schemas.limits import QUERY_BUDGET_S
from schemas.shadow import ShadowGate, ShadowResults
from services.http_auth import ReaderKey
from services.results.read_slots import ReadSlots

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


def shadow_router(
    store: AnalyticsStore,
    query_budget_s: float = QUERY_BUDGET_S,
    read_slots: ReadSlots | None = None,
) -> APIRouter:
    """The routes over ``store``, for a read key of the path's tenant."""
    router = APIRouter()
    slots = read_slots or ReadSlots()

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
        caller: ReaderKey,
        since: Since = None,
        confidence: Confidence = 0.95,
    ) -> ShadowGate:
        """Whether the candidate may be promoted: the one-sided ``confidence`` upper
        bound of its mismatch rate beyond the noise floor is below ``max_beyond_noise``."""
        with store.cursor(query_budget_s) as cursor:
            observations, malformed = read_observations(cursor, tenant, name, since)
        if not observations and not malformed:
            raise _unknown(tenant, name)
        return gate_from_observations(name, observations, max_beyond_noise, confidence)

    return router
