"""The control API's dependencies, as ``Annotated`` types for route signatures.

``create_app`` keeps one ``ControlContext`` in ``app.state``; routes ask for the parts
they need: ``BackendDep`` (the projection and the control topic), ``WriterDep`` (makes
changes), ``ConfigCacheDep``; and for the caller's key by the roles a route allows:
``AdminKey`` (changes), ``ReaderKey`` (``admin`` or ``read``) and ``AnyKey`` (also
``ingest``), which under ``/v1/tenants/{tenant}`` answer only keys of that tenant
(``services.http_auth``). The dependencies that only reach into ``app.state`` are
``async``: FastAPI runs them on the event loop rather than in its thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request

from services.control.backend import ControlBackend
from services.control.config_cache import ConfigCache
from services.control.writes import ControlWriter
from services.http_auth import AdminKey, AnyKey, ReaderKey

__all__ = [
    "AdminKey",
    "AnyKey",
    "BackendDep",
    "ConfigCacheDep",
    "ContextDep",
    "ControlContext",
    "ReaderKey",
    "WriterDep",
]


@dataclass(frozen=True)
class ControlContext:
    """What every route of one control app shares."""

    backend: ControlBackend
    writer: ControlWriter
    config: ConfigCache


async def get_context(request: Request) -> ControlContext:
    return cast(ControlContext, request.app.state.control)


ContextDep = Annotated[ControlContext, Depends(get_context)]


async def get_backend(context: ContextDep) -> ControlBackend:
    return context.backend


async def get_writer(context: ContextDep) -> ControlWriter:
    return context.writer


async def get_config_cache(context: ContextDep) -> ConfigCache:
    return context.config


BackendDep = Annotated[ControlBackend, Depends(get_backend)]
WriterDep = Annotated[ControlWriter, Depends(get_writer)]
ConfigCacheDep = Annotated[ConfigCache, Depends(get_config_cache)]
