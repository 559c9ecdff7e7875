"""The CLI's HTTP client of the results service: health, loading progress and scorecards.

Every failure becomes an error a person can act on: no service configured or reachable
(``PlatformUnavailableError``), an experiment the service does not know
(``UnknownExperimentError``), or another refusal with the service's own explanation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from liftstream_cli.service_client import ServiceClient, detail
from schemas.results import LoadProgress

NO_PLATFORM_HINT = "start one with `liftstream up`, or set LIFTSTREAM_RESULTS_URL"


class UnknownExperimentError(LookupError):
    """The results service has no such experiment for the tenant."""


class ResultsServiceError(RuntimeError):
    """The results service answered with an error other than 'not found'."""


class ResultsApi(ServiceClient):
    service = "results service"
    hint = NO_PLATFORM_HINT
    unknown = "no liftstream platform is running"

    def __init__(self, base_url: str, api_key: str = "", timeout_s: float = 10.0) -> None:
        super().__init__(base_url, api_key, timeout_s)

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz").status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    def progress(self) -> LoadProgress:
        return LoadProgress.model_validate(self._get_json("/v1/progress"))

    def scorecard_json(
        self, tenant_id: str, experiment_key: str, scale: str = "relative"
    ) -> dict[str, Any]:
        """The scorecard as the service sent it (see ``schemas.results.Scorecard``), its
        headline figures on ``scale``."""
        path = f"/v1/tenants/{tenant_id}/experiments/{experiment_key}/results?scale={scale}"
        try:
            return self._get_json(path)
        except UnknownExperimentError as error:
            raise UnknownExperimentError(
                f"no experiment '{experiment_key}' for tenant '{tenant_id}' ({error}); "
                f"`liftstream apply -f FILE --tenant {tenant_id}` defines one"
            ) from None

    def health_json(self, tenant_id: str, experiment_key: str) -> dict[str, Any]:
        """What the pipeline counted for the experiment (``schemas.results.ExperimentHealth``)."""
        return self._get_json(f"/v1/tenants/{tenant_id}/experiments/{experiment_key}/health")

    def daily_json(
        self,
        tenant_id: str,
        experiment_key: str,
        since: str | None = None,
        through: str | None = None,
    ) -> dict[str, Any]:
        """The daily cumulative snapshots (see ``schemas.results.DailyResults``), from
        ``since`` through ``through`` (days, as the service reads them) if given."""
        query = urlencode({k: v for k, v in (("since", since), ("through", through)) if v})
        path = f"/v1/tenants/{tenant_id}/experiments/{experiment_key}/daily"
        return self._get_json(f"{path}?{query}" if query else path)

    def shadow_json(
        self, tenant_id: str, name: str, since: str | None = None, confidence: float = 0.95
    ) -> dict[str, Any]:
        """A shadow test's results (``schemas.shadow.ShadowResults``)."""
        query = urlencode({"confidence": confidence, **({"since": since} if since else {})})
        return self._get_json(f"/v1/tenants/{tenant_id}/shadows/{name}?{query}")

    def shadow_gate_json(
        self,
        tenant_id: str,
        name: str,
        max_beyond_noise: float,
        since: str | None = None,
        confidence: float = 0.95,
    ) -> dict[str, Any]:
        """A shadow test's promotion gate (``schemas.shadow.ShadowGate``)."""
        query = urlencode(
            {
                "max_beyond_noise": max_beyond_noise,
                "confidence": confidence,
                **({"since": since} if since else {}),
            }
        )
        return self._get_json(f"/v1/tenants/{tenant_id}/shadows/{name}/gate?{query}")

    def start_replay(self, tenant_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Start a replay job (``services.results.replay_jobs``); its first document."""
        return self._json("POST", f"/v1/tenants/{tenant_id}/replays", request)

    def replay_job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        return self._get_json(f"/v1/tenants/{tenant_id}/replays/{job_id}")

    def _get_json(self, path: str) -> dict[str, Any]:
        return self._json("GET", path)

    def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._send(method, path, json=body)
        if response.status_code == httpx.codes.NOT_FOUND:
            raise UnknownExperimentError(detail(response))
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            raise ResultsServiceError(
                f"the results service refused the API key: {detail(response)}; set "
                "LIFTSTREAM_API_KEY to a read or admin key of the tenant (admin to replay)"
            )
        if response.is_error:
            raise ResultsServiceError(
                f"the results service refused {path}: HTTP {response.status_code}: "
                f"{detail(response)}"
            )
        body = response.json()
        if not isinstance(body, dict):
            raise ResultsServiceError(f"the results service sent {type(body).__name__} for {path}")
        return body
