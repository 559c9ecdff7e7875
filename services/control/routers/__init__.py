"""The control API's routes, one ``APIRouter`` per resource; ``create_app`` includes
``ROUTERS`` in order. A new resource gets its own module here."""

from fastapi import APIRouter

from services.control.routers import (
    config,
    config_stream,
    experiments,
    flags,
    health,
    holdout,
    keys,
    metrics,
    rollouts,
    tenants,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    keys.whoami_router,
    config_stream.router,
    config.router,
    tenants.router,
    holdout.router,
    keys.router,
    experiments.router,
    flags.router,
    metrics.router,
    rollouts.router,
)
