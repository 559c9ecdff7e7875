"""The control API's dependencies, as ``Annotated`` types for route signatures.

``create_app`` keeps one ``ControlContext`` in ``app.state``; routes ask for the parts
they need: ``BackendDep`` (the projection and the control topic), ``WriterDep`` (makes
changes), ``ConfigCacheDep``, and the caller's key by the roles a route allows:
``AdminKey`` (changes), ``ReaderKey`` (``admin`` or ``read``) and ``AnyKey`` (also
``ingest``). A key route under ``/v1/tenants/{tenant}`` answers only keys of that
tenant (``services.http_auth``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request

from services.control.backend import ControlBackend
from services.control.config_cache import ConfigCache
from services.control.writes import ControlWriter
from services.control_domain.api_keys import KeyRecord
from services.http_auth import KeyChecks

KeyCheck = Callable[[Request], KeyRecord]


@dataclass(frozen=True)
class ControlContext:
    """What every route of one control app shares."""

    backend: ControlBackend
    writer: ControlWriter
    config: ConfigCache
    admin: KeyCheck
    reader: KeyCheck
    anyone: KeyCheck

    @classmethod
    def of(cls, backend: ControlBackend, writer: ControlWriter) -> ControlContext:
        def lookup(secret_key: str) -> KeyRecord | None:
            with backend.lock:
                return backend.state.keys.authenticate(secret_key)

        checks = KeyChecks(lookup)
        return cls(
            backend=backend,
            writer=writer,
            config=ConfigCache(backend),
            admin=checks.require("admin"),
            reader=checks.require("admin", "read"),
            anyone=checks.require("admin", "read", "ingest"),
        )


def get_context(request: Request) -> ControlContext:
    return cast(ControlContext, request.app.state.control)


ContextDep = Annotated[ControlContext, Depends(get_context)]


def get_backend(context: ContextDep) -> ControlBackend:
    return context.backend


def get_writer(context: ContextDep) -> ControlWriter:
    return context.writer


def get_config_cache(context: ContextDep) -> ConfigCache:
    return context.config


BackendDep = Annotated[ControlBackend, Depends(get_backend)]
WriterDep = Annotated[ControlWriter, Depends(get_writer)]
ConfigCacheDep = Annotated[ConfigCache, Depends(get_config_cache)]


def admin_key(request: Request, context: ContextDep) -> KeyRecord:
    return context.admin(request)


def reader_key(request: Request, context: ContextDep) -> KeyRecord:
    return context.reader(request)


def any_key(request: Request, context: ContextDep) -> KeyRecord:
    return context.anyone(request)


AdminKey = Annotated[KeyRecord, Depends(admin_key)]
ReaderKey = Annotated[KeyRecord, Depends(reader_key)]
AnyKey = Annotated[KeyRecord, Depends(any_key)]
