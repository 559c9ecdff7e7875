"""``GET /healthz``: whether the service can serve (no key needed; no private detail)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.control.deps import BackendDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(response: Response, backend: BackendDep) -> dict[str, Any]:
    problem = backend.healthy()
    if problem is not None:
        response.status_code = 503
        return {"status": "degraded", "error": problem}
    return {"status": "ok", "next_offset": backend.state.next_offset}
