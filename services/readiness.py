"""``/readyz`` for the services that read and write Kafka: ready only while they can.

Liveness (``/healthz``) says the process serves; readiness says it can do its job now: its
own check (a loader without error, a caught-up projection) passes and the Kafka broker
accepts a connection. During a broker outage a service stays alive and answers
not-ready, so a load balancer or Kubernetes sends its traffic elsewhere instead of
restarting it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from fastapi import FastAPI, Response

CONNECT_TIMEOUT_S = 1.0


async def broker_answers(bootstrap: str, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether any bootstrap address (``host:port[,host:port…]``) accepts a connection."""
    for address in filter(None, (part.strip() for part in bootstrap.split(","))):
        host, _, port = address.rpartition(":")
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout_s
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def add_readiness_route(
    app: FastAPI, bootstrap: str, own_problem: Callable[[], str | None]
) -> None:
    """``GET /readyz``: 200 when ``own_problem()`` is None and the broker answers; else 503
    with the reason (no addresses: those stay in the log)."""

    @app.get("/readyz")
    async def readyz(response: Response) -> dict[str, str]:
        problem = own_problem()
        if problem is None and not await broker_answers(bootstrap):
            problem = "the Kafka broker does not answer"
        if problem is not None:
            response.status_code = 503
            response.headers["Retry-After"] = "5"
            return {"status": "not ready", "reason": problem}
        return {"status": "ready"}
