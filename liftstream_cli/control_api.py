"""HTTP client of the control service, for the CLI and for services automating changes.

Each method answers the model of ``schemas.control_api`` the route answers (a
``ChangeResult`` with the changed experiment, flag or metric for a change); request
bodies are built with its request models. ``get``, ``post`` and ``put`` reach any other
route and answer its raw JSON.

Every failure becomes an error a person can act on: no control service configured or
reachable (``PlatformUnavailableError``), no or a refused API key (``AccessDeniedError``),
a change the control plane refuses (``InvalidInputError`` listing each field and reason),
or anything else the service answers (``ControlServiceError``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from liftstream.errors import InvalidInputError
from liftstream_cli.service_client import ServiceClient, detail, json_or_none
from schemas.control import Role
from schemas.control_api import (
    ChangeResult,
    ControlRequest,
    ExperimentChangeResult,
    ExperimentState,
    FlagChangeResult,
    FlagRampBody,
    FlagState,
    HistoryEntry,
    HoldoutBody,
    KeyCreated,
    KeyRequest,
    KeyView,
    KillBody,
    MetricChangeResult,
    MetricState,
    RampBody,
    ReasonBody,
    RollbackBody,
    TenantView,
)
from schemas.errors import FieldError
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag

Answer = TypeVar("Answer")
StatusAction = Literal["start", "pause", "conclude"]
HistoryKind = Literal["experiments", "flags", "metrics"]

NO_CONTROL_HINT = "start the platform with `liftstream up`, or set LIFTSTREAM_CONTROL_URL"
NO_KEY_HINT = (
    "set LIFTSTREAM_API_KEY to a key of the tenant (`liftstream up` records the demo "
    "tenant's admin key; `liftstream bootstrap-tenant` prints a new tenant's first key)"
)


class AccessDeniedError(PermissionError):
    """The control service refused the API key (401) or its rights (403)."""


class ControlServiceError(RuntimeError):
    """The control service answered with an error the caller cannot fix by editing input."""


class ControlApi(ServiceClient):
    service = "control service"
    hint = NO_CONTROL_HINT

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 20.0) -> None:
        if base_url and not api_key:
            raise AccessDeniedError(f"no API key: {NO_KEY_HINT}")
        super().__init__(base_url, api_key, timeout_s)

    # Reads.

    def whoami(self) -> KeyView:
        """The key this client sends: its id, tenant and role."""
        return self._read(KeyView, "GET", "/v1/whoami")

    def tenant(self, tenant_id: str) -> TenantView:
        return self._read(TenantView, "GET", _tenant(tenant_id))

    def experiments(self, tenant_id: str) -> list[ExperimentState]:
        return self._read(list[ExperimentState], "GET", _tenant(tenant_id, "experiments"))

    def experiment(self, tenant_id: str, key: str) -> ExperimentState:
        return self._read(ExperimentState, "GET", _tenant(tenant_id, "experiments", key))

    def flags(self, tenant_id: str) -> list[FlagState]:
        return self._read(list[FlagState], "GET", _tenant(tenant_id, "flags"))

    def flag(self, tenant_id: str, key: str) -> FlagState:
        return self._read(FlagState, "GET", _tenant(tenant_id, "flags", key))

    def metrics(self, tenant_id: str) -> list[MetricState]:
        return self._read(list[MetricState], "GET", _tenant(tenant_id, "metrics"))

    def metric(self, tenant_id: str, name: str) -> MetricState:
        return self._read(MetricState, "GET", _tenant(tenant_id, "metrics", name))

    def history(
        self, tenant_id: str, key: str, kind: HistoryKind = "experiments"
    ) -> list[HistoryEntry]:
        """Every change of the experiment, flag or metric ``key``: author, time, reason, diff."""
        return self._read(list[HistoryEntry], "GET", _tenant(tenant_id, kind, key, "history"))

    def keys(self, tenant_id: str) -> list[KeyView]:
        return self._read(list[KeyView], "GET", _tenant(tenant_id, "keys"))

    # Changes: each answers once the control plane applied it (or found nothing to change).

    def put_experiment(
        self, tenant_id: str, experiment: Experiment, reason: str
    ) -> ExperimentChangeResult:
        """Create the experiment or define its new version (a no-op if unchanged)."""
        body = {
            "experiment": experiment.model_dump(mode="json", exclude_unset=True),
            "reason": reason,
        }
        # Defaults the file left out must stay unset, so that ``status`` is only checked
        # when the file gives one; required fields are always set.
        path = _tenant(tenant_id, "experiments", experiment.key)
        return self._read(ExperimentChangeResult, "PUT", path, body)

    def set_status(
        self, tenant_id: str, key: str, action: StatusAction, reason: str
    ) -> ExperimentChangeResult:
        """Start, pause or conclude the experiment."""
        return self._change_experiment(tenant_id, key, action, ReasonBody, reason=reason)

    def ramp_experiment(
        self, tenant_id: str, key: str, traffic: float, reason: str
    ) -> ExperimentChangeResult:
        return self._change_experiment(
            tenant_id, key, "ramp", RampBody, traffic=traffic, reason=reason
        )

    def roll_back_experiment(
        self, tenant_id: str, key: str, to_version: int, reason: str
    ) -> ExperimentChangeResult:
        return self._change_experiment(
            tenant_id, key, "rollback", RollbackBody, to_version=to_version, reason=reason
        )

    def kill_experiment(
        self, tenant_id: str, key: str, killed: bool, reason: str
    ) -> ExperimentChangeResult:
        return self._change_experiment(
            tenant_id, key, "kill", KillBody, killed=killed, reason=reason
        )

    def put_flag(self, tenant_id: str, flag: Flag, reason: str) -> FlagChangeResult:
        body = {"flag": flag.model_dump(mode="json"), "reason": reason}
        return self._read(FlagChangeResult, "PUT", _tenant(tenant_id, "flags", flag.key), body)

    def ramp_flag(self, tenant_id: str, key: str, ramp: float, reason: str) -> FlagChangeResult:
        body = _body(FlagRampBody, ramp=ramp, reason=reason)
        path = _tenant(tenant_id, "flags", key, "ramp")
        return self._read(FlagChangeResult, "POST", path, body)

    def kill_flag(self, tenant_id: str, key: str, killed: bool, reason: str) -> FlagChangeResult:
        body = _body(KillBody, killed=killed, reason=reason)
        return self._read(FlagChangeResult, "POST", _tenant(tenant_id, "flags", key, "kill"), body)

    def put_metric(
        self, tenant_id: str, metric: MetricDefinition, reason: str
    ) -> MetricChangeResult:
        body = {"metric": metric.model_dump(mode="json"), "reason": reason}
        path = _tenant(tenant_id, "metrics", metric.name)
        return self._read(MetricChangeResult, "PUT", path, body)

    def create_key(self, tenant_id: str, role: Role, label: str, reason: str) -> KeyCreated:
        """Issue a key; the answer holds the key itself, shown this once."""
        body = _body(KeyRequest, role=role, label=label, reason=reason)
        return self._read(KeyCreated, "POST", _tenant(tenant_id, "keys"), body)

    def revoke_key(self, tenant_id: str, key_id: str, reason: str) -> KeyView:
        body = _body(ReasonBody, reason=reason)
        return self._read(KeyView, "POST", _tenant(tenant_id, "keys", key_id, "revoke"), body)

    def set_holdout(self, tenant_id: str, percent: float, reason: str) -> ChangeResult:
        body = _body(HoldoutBody, percent=percent, reason=reason)
        return self._read(ChangeResult, "PUT", _tenant(tenant_id, "holdout"), body)

    # Any other route, as raw JSON.

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, **body: Any) -> Any:
        return self._call("POST", path, json=body)

    def put(self, path: str, **body: Any) -> Any:
        return self._call("PUT", path, json=body)

    def _change_experiment(
        self, tenant_id: str, key: str, action: str, model: type[ControlRequest], **fields: Any
    ) -> ExperimentChangeResult:
        path = _tenant(tenant_id, "experiments", key, action)
        return self._read(ExperimentChangeResult, "POST", path, _body(model, **fields))

    def _read(self, answer: type[Answer], method: str, path: str, json: Any = None) -> Answer:
        """The answer to ``method path``, read as ``answer``."""
        body = self._call(method, path, json)
        try:
            return TypeAdapter(answer).validate_python(body)
        except ValidationError as error:
            raise ControlServiceError(
                f"the control service answered {method} {path} with something this client "
                f"cannot read (another version?): {error.error_count()} problems, the first: "
                f"{error.errors()[0]['msg']}"
            ) from None

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._send(method, path, json=json)
        if response.status_code in (401, 403):
            raise AccessDeniedError(
                f"the control service refused the API key: {detail(response)}; {NO_KEY_HINT}"
            )
        if response.is_error:
            body = json_or_none(response)
            errors = body.get("errors") if isinstance(body, dict) else None
            if 400 <= response.status_code < 500 and isinstance(errors, list) and errors:
                subject = str(body.get("detail", "refused")).split(":", 1)[0]
                raise InvalidInputError(
                    f"the control service refused {method} {path} ({subject})",
                    [FieldError.model_validate(error) for error in errors],
                )
            raise ControlServiceError(
                f"the control service refused {method} {path}: HTTP {response.status_code}: "
                f"{detail(response)}"
            )
        return response.json()


def _tenant(tenant_id: str, *parts: str) -> str:
    return "/".join(("/v1/tenants", tenant_id, *parts))


def _body(model: type[ControlRequest], **fields: Any) -> dict[str, Any]:
    """``fields`` as the request body ``model`` describes; InvalidInputError if they are not
    one (a NaN, say), before anything is sent."""
    try:
        return model.model_validate(fields).model_dump(mode="json")
    except ValidationError as error:
        raise InvalidInputError.from_validation("invalid request", error) from None
