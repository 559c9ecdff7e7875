"""Bearer-key authentication and tenant scoping for the platform's HTTP services.

The control, results and collector services each call ``install_key_checks(app, lookup)``,
where ``lookup`` finds a key's record in the ``KeyRing`` they keep from the control
topic; their routes then take the caller's key as a parameter typed by the roles they
allow: ``AdminKey``, ``ReaderKey`` (admin or read), ``AnyKey`` (also ingest) or
``IngestKey`` (ingest or admin); ``AdminKeyOnLoop`` and ``IngestKeyOnLoop`` check on the
event loop instead of a worker thread, for a lookup that never blocks. Each answers 401
without a key, for an unknown key or a revoked one; 403 for a key of another tenant than
the ``{tenant}`` in the path, or without one of the roles.
``KeyChecks(lookup).require(*roles)`` is the same check as a dependency of its own, and
``key_checked_route(*roles)`` a route class that makes it without FastAPI's dependency
solving, for a hot endpoint.
``until_caught_up`` makes an unknown key a 503 (retry) while the service has not yet read
the control topic to its end: a key issued before a restart is not "unknown", just not
read yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute

from schemas.control import Role
from services.control_domain.api_keys import KeyRecord

KeyLookup = Callable[[str], KeyRecord | None]
_BEARER = "bearer "
#: The roles that may send events.
INGEST_ROLES: tuple[Role, ...] = ("ingest", "admin")


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": "Bearer"})


def until_caught_up(lookup: KeyLookup, caught_up: Callable[[], bool]) -> KeyLookup:
    """``lookup``, answering 503 with Retry-After for unknown keys until ``caught_up()``."""

    def checked(secret_key: str) -> KeyRecord | None:
        record = lookup(secret_key)
        if record is None and not caught_up():
            raise HTTPException(
                status_code=503,
                detail="the service is still reading API keys from the control topic; retry",
                headers={"Retry-After": "1"},
            )
        return record

    return checked


class KeyChecks:
    def __init__(self, lookup: KeyLookup) -> None:
        self._lookup = lookup

    def caller(self, request: Request) -> KeyRecord:
        """The valid key the request carries, or 401."""
        header = request.headers.get("authorization", "")
        if not header:
            raise _unauthorized("no API key: send the header 'Authorization: Bearer <key>'")
        if not header.lower().startswith(_BEARER):
            raise _unauthorized("the Authorization header must read 'Bearer <key>'")
        record = self._lookup(header[len(_BEARER) :].strip())
        if record is None:
            raise _unauthorized("unknown API key")
        if record.revoked:
            raise _unauthorized(f"API key {record.key_id} was revoked")
        return record

    def check(self, request: Request, roles: tuple[Role, ...]) -> KeyRecord:
        """The caller's key, of one of ``roles`` (any if none), scoped to ``{tenant}``."""
        record = self.caller(request)
        tenant = request.path_params.get("tenant")
        if tenant is not None and tenant != record.tenant_id:
            raise HTTPException(
                status_code=403,
                detail=f"API key {record.key_id} belongs to another tenant than '{tenant}'",
            )
        if roles and record.role not in roles:
            raise HTTPException(
                status_code=403,
                detail=f"API key {record.key_id} has role {record.role}; this needs "
                f"{' or '.join(roles)}",
            )
        return record

    def require(self, *roles: Role) -> Callable[[Request], KeyRecord]:
        """A dependency: the caller's key, of one of ``roles``, scoped to ``{tenant}``."""

        def dependency(request: Request) -> KeyRecord:
            return self.check(request, roles)

        return dependency


def install_key_checks(app: FastAPI, lookup: KeyLookup) -> None:
    """Check the keys of ``app``'s requests against ``lookup``."""
    app.state.key_checks = KeyChecks(lookup)


def _key_of(*roles: Role) -> Callable[[Request], KeyRecord]:
    def dependency(request: Request) -> KeyRecord:
        checks: KeyChecks = request.app.state.key_checks
        return checks.check(request, roles)

    dependency.__name__ = f"{'_or_'.join(roles)}_key"
    return dependency


def _key_on_loop_of(*roles: Role) -> Callable[[Request], Awaitable[KeyRecord]]:
    async def dependency(request: Request) -> KeyRecord:
        checks: KeyChecks = request.app.state.key_checks
        return checks.check(request, roles)

    dependency.__name__ = f"{'_or_'.join(roles)}_key_on_loop"
    return dependency


AdminKey = Annotated[KeyRecord, Depends(_key_of("admin"))]
ReaderKey = Annotated[KeyRecord, Depends(_key_of("admin", "read"))]
AnyKey = Annotated[KeyRecord, Depends(_key_of("admin", "read", "ingest"))]
IngestKey = Annotated[KeyRecord, Depends(_key_of(*INGEST_ROLES))]
#: The same checks run on the event loop, not in a worker thread: for a service whose key
#: lookup never blocks (a dict lookup under a lock held only briefly), as the collector's;
#: FastAPI hands a plain function to its thread pool, a hop per request.
AdminKeyOnLoop = Annotated[KeyRecord, Depends(_key_on_loop_of("admin"))]
IngestKeyOnLoop = Annotated[KeyRecord, Depends(_key_on_loop_of(*INGEST_ROLES))]


def key_checked_route(*roles: Role) -> type[APIRoute]:
    """A route class for an endpoint ``(request, caller) -> Response`` whose caller must
    hold one of ``roles``: FastAPI documents the route as declared, but its handler checks
    the key on the event loop and awaits the endpoint directly, without FastAPI's
    dependency solving and response handling (~0.1 ms a request: about 5% of the
    collector's 500-event request, docs/benchmarks.md)."""

    class KeyCheckedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            endpoint = self.endpoint

            async def handler(request: Request) -> Response:
                checks: KeyChecks = request.app.state.key_checks
                response: Response = await endpoint(request, checks.check(request, roles))
                return response

            return handler

    return KeyCheckedRoute
