"""The dashboard's way to the platform: the results and control services' HTTP APIs,
called with the signed-in user's own key.

The dashboard computes no figure and decides no right itself: every number on a page is
what the results API answered (the same JSON as ``liftstream results --json``), and every
read and change is checked by the services (tenant, role) as for any other client. A
refusal comes back as ``ApiError`` with the service's status and explanation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_TIMEOUT_S = 10.0


class ApiError(Exception):
    """A service refused or could not answer; ``status`` is what the page should answer."""

    def __init__(self, status: int, detail: str, service: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.service = service


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:2000]
    return str(body)[:500]


class PlatformApi:
    """Async clients of both services, shared by every request (connection pooling); each
    call names the key it acts with."""

    def __init__(
        self,
        results_url: str,
        control_url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.results_url = results_url.rstrip("/")
        self.control_url = control_url.rstrip("/")
        self._results = httpx.AsyncClient(
            base_url=self.results_url, timeout=timeout_s, transport=transport
        )
        self._control = httpx.AsyncClient(
            base_url=self.control_url, timeout=timeout_s, transport=transport
        )

    async def close(self) -> None:
        await self._results.aclose()
        await self._control.aclose()

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        key: str,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        client = self._results if service == "results" else self._control
        try:
            response = await client.request(
                method,
                path,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.HTTPError as error:
            raise ApiError(
                502, f"the {service} service does not answer ({type(error).__name__})", service
            ) from None
        if response.is_error:
            status = response.status_code
            raise ApiError(status if status < 500 else 502, _detail(response), service)
        return response.json()

    async def _read(self, service: str, key: str, tenant: str, *parts: str, **params: str) -> Any:
        path = _path("v1", "tenants", tenant, *parts)
        return await self._call(service, "GET", path, key, params=params or None)

    # Control service.

    async def whoami(self, key: str) -> dict[str, Any]:
        return await self._call("control", "GET", "/v1/whoami", key)

    async def control_experiments(self, key: str, tenant: str) -> list[dict[str, Any]]:
        return await self._read("control", key, tenant, "experiments")

    async def control_experiment(self, key: str, tenant: str, experiment: str) -> dict[str, Any]:
        return await self._read("control", key, tenant, "experiments", experiment)

    async def history(self, key: str, tenant: str, kind: str, name: str) -> list[dict[str, Any]]:
        return await self._read("control", key, tenant, kind, name, "history")

    async def flags(self, key: str, tenant: str) -> list[dict[str, Any]]:
        return await self._read("control", key, tenant, "flags")

    async def flag(self, key: str, tenant: str, flag: str) -> dict[str, Any]:
        return await self._read("control", key, tenant, "flags", flag)

    async def flag_action(
        self, key: str, tenant: str, flag: str, action: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        path = _path("v1", "tenants", tenant, "flags", flag, action)
        return await self._call("control", "POST", path, key, body=body)

    async def rollouts(self, key: str, tenant: str) -> list[dict[str, Any]]:
        return await self._read("control", key, tenant, "rollouts")

    async def rollout(self, key: str, tenant: str, rollout: str) -> dict[str, Any]:
        return await self._read("control", key, tenant, "rollouts", rollout)

    async def rollout_decisions(
        self, key: str, tenant: str, rollout: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        return await self._read(
            "control", key, tenant, "rollouts", rollout, "decisions", limit=str(limit)
        )

    async def rollout_action(
        self, key: str, tenant: str, rollout: str, action: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        path = _path("v1", "tenants", tenant, "rollouts", rollout, action)
        return await self._call("control", "POST", path, key, body=body)

    # Results service.

    async def experiments(self, key: str, tenant: str) -> list[dict[str, Any]]:
        return await self._read("results", key, tenant, "experiments")

    async def scorecard(
        self, key: str, tenant: str, experiment: str, scale: str = "relative"
    ) -> dict[str, Any]:
        return await self._read(
            "results", key, tenant, "experiments", experiment, "results", scale=scale
        )

    async def daily(self, key: str, tenant: str, experiment: str) -> dict[str, Any]:
        return await self._read("results", key, tenant, "experiments", experiment, "daily")

    async def health(self, key: str, tenant: str, experiment: str) -> dict[str, Any]:
        return await self._read("results", key, tenant, "experiments", experiment, "health")

    async def deadletters(self, key: str, tenant: str) -> dict[str, Any]:
        return await self._read("results", key, tenant, "deadletters")

    async def shadow(self, key: str, tenant: str, name: str) -> dict[str, Any]:
        return await self._read("results", key, tenant, "shadows", name)
