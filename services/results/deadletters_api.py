"""``GET /v1/tenants/{tenant}/deadletters``: the tenant's refused messages, counted by stage
and field with one reason each (most frequent first), as the experiment health page
counts them (``analytics.health``), for the dashboard's dead-letters page."""

from __future__ import annotations

from fastapi import APIRouter

from analytics.health import rejected_by_reason, total_rejected
from analytics.store import AnalyticsStore
from schemas.identifiers import TenantId
from schemas.limits import QUERY_BUDGET_S
from schemas.results import TenantRejections
from services.http_auth import ReaderKey
from services.results.read_slots import ReadSlots

__all__ = ["deadletters_router"]


def deadletters_router(
    store: AnalyticsStore, query_budget_s: float = QUERY_BUDGET_S, slots: ReadSlots | None = None
) -> APIRouter:
    """The route over ``store``, for a read key of the path's tenant (a heavy read: it
    holds one of the tenant's ``slots``)."""
    router = APIRouter()
    read_slots = slots or ReadSlots()

    @router.get("/v1/tenants/{tenant}/deadletters")
    def deadletters(tenant: TenantId, caller: ReaderKey) -> TenantRejections:
        with read_slots.slot(tenant), store.cursor(query_budget_s) as cursor:
            return TenantRejections(
                tenant_id=tenant,
                rejected=total_rejected(cursor, tenant),
                by_reason=rejected_by_reason(cursor, tenant),
            )

    return router
