"""HTTP client of the control service, for the CLI and for services automating changes.

Every failure becomes an error a person can act on: no control service configured or
reachable (``PlatformUnavailableError``), no or a refused API key (``AccessDeniedError``),
a change the control plane refuses (``InvalidInputError`` listing each field and reason),
or anything else the service answers (``ControlServiceError``).
"""

from __future__ import annotations

from typing import Any

import httpx

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from schemas.deadletter import FieldError
from schemas.experiment import Experiment
from schemas.flags import Flag

NO_CONTROL_HINT = "start the platform with `liftstream up`, or set LIFTSTREAM_CONTROL_URL"
NO_KEY_HINT = (
    "set LIFTSTREAM_API_KEY to a key of the tenant (`liftstream up` records the demo "
    "tenant's admin key; `liftstream bootstrap-tenant` prints a new tenant's first key)"
)


class AccessDeniedError(PermissionError):
    """The control service refused the API key (401) or its rights (403)."""


class ControlServiceError(RuntimeError):
    """The control service answered with an error the caller cannot fix by editing input."""


class ControlApi:
    def __init__(self, base_url: str, api_key: str, timeout_s: float = 20.0) -> None:
        if not base_url:
            raise PlatformUnavailableError(f"no control service is known: {NO_CONTROL_HINT}")
        if not api_key:
            raise AccessDeniedError(f"no API key: {NO_KEY_HINT}")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/v1/whoami")

    def put_experiment(self, tenant_id: str, experiment: Experiment, reason: str) -> dict[str, Any]:
        """Create the experiment or define its new version (a no-op if unchanged)."""
        body = {
            "experiment": experiment.model_dump(mode="json", exclude_unset=True),
            "reason": reason,
        }
        # Defaults the file left out must stay unset, so that ``status`` is only checked
        # when the file gives one; required fields are always set.
        return self._call("PUT", f"/v1/tenants/{tenant_id}/experiments/{experiment.key}", json=body)

    def put_flag(self, tenant_id: str, flag: Flag, reason: str) -> dict[str, Any]:
        body = {"flag": flag.model_dump(mode="json"), "reason": reason}
        return self._call("PUT", f"/v1/tenants/{tenant_id}/flags/{flag.key}", json=body)

    def act(self, tenant_id: str, kind: str, key: str, action: str, **body: Any) -> dict[str, Any]:
        """POST ``/v1/tenants/{tenant}/{kind}/{key}/{action}`` (start, pause, ramp, kill...)."""
        return self._call("POST", f"/v1/tenants/{tenant_id}/{kind}/{key}/{action}", json=body)

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, **body: Any) -> Any:
        return self._call("POST", path, json=body)

    def put(self, path: str, **body: Any) -> Any:
        return self._call("PUT", path, json=body)

    def history(self, tenant_id: str, key: str, kind: str = "experiments") -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/tenants/{tenant_id}/{kind}/{key}/history"))

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as error:
            raise PlatformUnavailableError(
                f"the control service at {self.base_url} does not answer ({error}): "
                f"{NO_CONTROL_HINT}"
            ) from None
        if response.status_code in (401, 403):
            raise AccessDeniedError(
                f"the control service refused the API key: {_detail(response)}; {NO_KEY_HINT}"
            )
        if response.is_error:
            body = _json(response)
            errors = body.get("errors") if isinstance(body, dict) else None
            if 400 <= response.status_code < 500 and isinstance(errors, list) and errors:
                subject = str(body.get("detail", "refused")).split(":", 1)[0]
                raise InvalidInputError(
                    f"the control service refused {method} {path} ({subject})",
                    [FieldError.model_validate(error) for error in errors],
                )
            raise ControlServiceError(
                f"the control service refused {method} {path}: HTTP {response.status_code}: "
                f"{_detail(response)}"
            )
        return response.json()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text.strip() or response.reason_phrase
