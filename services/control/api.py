"""The control HTTP API (FastAPI): tenants' keys, experiments, flags, metrics, history, config.

``create_app(backend)`` assembles it: the routes, one ``APIRouter`` per resource, are in
``services.control.routers``; what they share (backend, writer, key checks) is one
``ControlContext`` reached through ``services.control.deps``; requests and answers are
the models of ``schemas.control_api``.

Every route but ``/healthz`` and ``/metrics`` (the operator token,
``services.operator_metrics``) needs ``Authorization: Bearer <key>``; routes under
``/v1/tenants/{tenant}`` only answer keys of that tenant. ``read`` keys read, ``admin``
keys also change things, ``ingest`` keys only fetch the config snapshot. A body over
``MAX_BODY_BYTES`` is 413 before it is parsed or the key checked (``services.http_guard``).
A change is checked against the projection (``commands``), read back as every follower
would read it (``readback``), written to the control topic, and answered once applied
(``writes``); a refused change gets a 4xx whose ``errors`` name each field and reason. A
tenant, an experiment, a flag or a metric shows in ``errors`` the control events about it
that no reader could use (quarantined). OpenAPI is served at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from schemas.errors import FieldError, field_errors
from services.control.backend import ControlBackend
from services.control.config_cache import ConfigCache
from services.control.deps import ControlContext
from services.control.lookups import Refused
from services.control.routers import ROUTERS
from services.control.writes import ControlWriter
from services.control_domain.api_keys import KeyRecord
from services.http_auth import install_key_checks
from services.http_guard import BodyLimit, install_error_handlers
from services.operator_metrics import add_metrics_route


def create_app(
    backend: ControlBackend,
    metrics_registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The control API over ``backend``; ``clock`` paces the tenants' write quotas."""
    app = FastAPI(
        title="liftstream control",
        summary="Tenants' keys, experiments and flags as events; config snapshots for SDKs.",
        version="1",
    )
    app.state.control = ControlContext(
        backend=backend, writer=ControlWriter(backend, clock), config=ConfigCache(backend)
    )
    install_key_checks(app, _lookup(backend))
    app.add_middleware(BodyLimit)
    install_error_handlers(app, "control")
    add_metrics_route(app, metrics_registry or CollectorRegistry())
    app.exception_handler(Refused)(_refused)
    app.exception_handler(RequestValidationError)(_invalid)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _error_body(subject: str, problems: list[FieldError]) -> dict[str, Any]:
    lines = "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in problems)
    return {"detail": f"{subject}: {lines}", "errors": [p.model_dump() for p in problems]}


async def _refused(_request: Request, error: Refused) -> JSONResponse:
    return JSONResponse(_error_body(error.subject, error.problems), status_code=error.status)


async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = field_errors(error.errors(), drop_prefix=("body",))
    return JSONResponse(_error_body("invalid request", problems), status_code=422)


def _lookup(backend: ControlBackend) -> Callable[[str], KeyRecord | None]:
    def lookup(secret_key: str) -> KeyRecord | None:
        with backend.lock:
            return backend.state.keys.authenticate(secret_key)

    return lookup
