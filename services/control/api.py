"""The control HTTP API (FastAPI): tenants' keys, experiments, flags, metrics, history, config.

Every route but ``/healthz`` and ``/metrics`` (the operator token,
``services.operator_metrics``) needs ``Authorization: Bearer <key>``; routes under
``/v1/tenants/{tenant}`` only answer keys of that tenant. ``read`` keys read, ``admin``
keys also change things, ``ingest`` keys only fetch the config snapshot. A body over
``MAX_BODY_BYTES`` is 413 before it is parsed or the key checked (``services.http_guard``).
A change is checked against the projection (``commands``), read back as every follower
would read it (``readback``), written to the control topic, and answered once applied; a
refused change gets a 4xx whose ``errors`` name each field and reason. A tenant, an
experiment, a flag or a metric shows in ``errors`` the control events about it that no
reader could use (quarantined). OpenAPI is served at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liftstream.api_keys import KeyRecord
from liftstream.control_state import HistoryEntry, QuarantinedEvent, TenantState
from liftstream.errors import problems_from_details
from schemas.config import ConfigSnapshot
from schemas.control import ControlEvent, Role
from schemas.deadletter import FieldError
from schemas.experiment import Experiment, MetricDefinition
from schemas.flags import Flag
from schemas.identifiers import Key, TenantId
from schemas.limits import CONTROL_WRITE_BURST, CONTROL_WRITES_PER_S, MAX_VERSION, Text
from services.collector.config import Quota
from services.collector.quotas import TenantQuotas
from services.control import commands
from services.control.backend import ControlBackend
from services.control.commands import Author, Refused
from services.control.readback import readable_payload
from services.http_auth import KeyChecks
from services.http_guard import BodyLimit, install_error_handlers
from services.operator_metrics import add_metrics_route


class _Body(BaseModel):
    """A request body: finite numbers only (JSON has no NaN; Python's parser lets it in)."""

    model_config = ConfigDict(allow_inf_nan=False)


class ExperimentWrite(_Body):
    experiment: Experiment
    reason: Text = ""


class FlagWrite(_Body):
    flag: Flag
    reason: Text = ""


class MetricWrite(_Body):
    metric: MetricDefinition
    reason: Text = ""


class ReasonBody(_Body):
    reason: Text = ""


class RampBody(_Body):
    traffic: float = Field(description="Percent of eligible units included, in (0, 100].")
    reason: Text = ""


class FlagRampBody(_Body):
    ramp: float = Field(description="Percent of eligible units served the on value.")
    reason: Text = ""


class RollbackBody(_Body):
    to_version: int = Field(ge=1, le=MAX_VERSION)
    reason: Text = ""


class KillBody(_Body):
    killed: bool = True
    reason: Text = ""


class HoldoutBody(_Body):
    percent: float
    reason: Text = ""


class KeyRequest(_Body):
    role: Role
    label: Text = ""
    reason: Text = ""


class ChangeResult(BaseModel):
    changed: bool = Field(description="False when the request matched the current state.")
    type: str | None = None
    event_id: uuid.UUID | None = None
    offset: int | None = None


_ERRORS = Field(
    default_factory=list,
    description="Control events about this key that no reader could use: skipped, with why.",
)


class ExperimentState(BaseModel):
    tenant_id: str
    key: str
    killed: bool
    versions: list[int]
    experiment: Experiment
    errors: list[QuarantinedEvent] = _ERRORS


class ExperimentChangeResult(ChangeResult):
    experiment: ExperimentState


class FlagState(BaseModel):
    tenant_id: str
    key: str
    killed: bool
    versions: list[int]
    flag: Flag
    errors: list[QuarantinedEvent] = _ERRORS


class FlagChangeResult(ChangeResult):
    flag: FlagState


class MetricState(BaseModel):
    tenant_id: str
    name: str
    version: int
    versions: list[int]
    metric: MetricDefinition
    errors: list[QuarantinedEvent] = _ERRORS


class MetricChangeResult(ChangeResult):
    metric: MetricState


class KeyView(BaseModel):
    key_id: str
    tenant_id: str
    role: Role
    revoked: bool
    label: str


class KeyCreated(KeyView):
    key: str = Field(description="The key itself: shown this once, never stored.")
    event_id: uuid.UUID


class TenantView(BaseModel):
    tenant_id: str
    name: str
    holdout_percent: float
    experiments: int
    flags: int
    errors: list[QuarantinedEvent] = Field(
        default_factory=list,
        description="The tenant's control events no reader could use (the newest), with why.",
    )


def _error_body(subject: str, problems: list[FieldError]) -> dict[str, Any]:
    lines = "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in problems)
    return {"detail": f"{subject}: {lines}", "errors": [p.model_dump() for p in problems]}


def _same_as_path(field: str, in_body: str, in_path: str) -> None:
    """Refuse (422) a body naming another resource than its path."""
    if in_body != in_path:
        reason = f"'{in_body}' differs from '{in_path}' in the path"
        raise Refused(422, "invalid request", [FieldError(field=field, reason=reason)])


def _key_view(record: KeyRecord) -> KeyView:
    return KeyView(
        key_id=record.key_id,
        tenant_id=record.tenant_id,
        role=record.role,
        revoked=record.revoked,
        label=record.label,
    )


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def create_app(
    backend: ControlBackend,
    metrics_registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    app = FastAPI(
        title="liftstream control",
        summary="Tenants' keys, experiments and flags as events; config snapshots for SDKs.",
        version="1",
    )
    app.add_middleware(BodyLimit)
    install_error_handlers(app, "control")
    add_metrics_route(app, metrics_registry or CollectorRegistry())
    checks = KeyChecks(_lookup(backend))
    admin = Depends(checks.require("admin"))
    reader = Depends(checks.require("admin", "read"))
    anyone = Depends(checks.require("admin", "read", "ingest"))
    config_cache: dict[str, tuple[int, str, bytes]] = {}
    write_quotas = TenantQuotas(
        lambda _tenant: Quota(rate_per_s=CONTROL_WRITES_PER_S, burst=CONTROL_WRITE_BURST), clock
    )
    quota_lock = threading.Lock()

    @app.exception_handler(Refused)
    async def refused(_request: Request, error: Refused) -> JSONResponse:
        return JSONResponse(_error_body(error.subject, error.problems), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = problems_from_details(error.errors(), drop_prefix=("body",))
        return JSONResponse(_error_body("invalid request", problems), status_code=422)

    def tenant_state(tenant_id: str) -> TenantState:
        tenant = backend.state.tenant(tenant_id)
        return tenant if tenant is not None else TenantState(tenant_id)

    def write(
        caller: KeyRecord, command: Callable[[Author], ControlEvent | None]
    ) -> tuple[ControlEvent | None, int | None]:
        author = Author(tenant_id=caller.tenant_id, key_id=caller.key_id)
        # Checked before the shared write lock: a tenant over its quota never holds it.
        with quota_lock:
            admission = write_quotas.admit(caller.tenant_id, 1)
        if not admission.allowed:
            raise HTTPException(
                status_code=429,
                detail=f"tenant '{caller.tenant_id}' is over its quota of "
                f"{CONTROL_WRITES_PER_S:g} changes per second (bursts of "
                f"{CONTROL_WRITE_BURST}); retry in {admission.retry_after_header} s",
                headers={"Retry-After": admission.retry_after_header},
            )
        with backend.write_lock:
            with backend.lock:
                try:
                    event = command(author)
                except ValidationError as error:
                    raise Refused(
                        422, "invalid change", problems_from_details(error.errors())
                    ) from None
                if event is None:
                    return None, None
                payload = readable_payload(event, backend.state)
            return event, backend.publish(event, payload)

    def quarantined(tenant_id: str, key: str) -> list[QuarantinedEvent]:
        return tenant_state(tenant_id).quarantined_of(key)

    def unknown(error: Refused, tenant_id: str, key: str) -> Refused:
        """A 404 that also says why, when events about ``key`` were quarantined."""
        for event in quarantined(tenant_id, key):
            error.problems.append(
                FieldError(
                    field="key",
                    reason=f"the control event at offset {event.offset} about '{key}' "
                    f"could not be used and was skipped: {event.reason}",
                )
            )
        return error

    def experiment_state(tenant_id: str, key: str) -> ExperimentState:
        with backend.lock:
            try:
                entry = commands.experiment_entry(backend.state, tenant_id, key)
            except Refused as error:
                raise unknown(error, tenant_id, key) from None
            return ExperimentState(
                tenant_id=tenant_id,
                key=key,
                killed=entry.killed,
                versions=sorted(entry.versions),
                experiment=entry.experiment,
                errors=quarantined(tenant_id, key),
            )

    def flag_state(tenant_id: str, key: str) -> FlagState:
        with backend.lock:
            entry = tenant_state(tenant_id).flags.get(key)
            if entry is None:
                raise unknown(
                    Refused(
                        404,
                        "unknown flag",
                        [
                            FieldError(
                                field="key", reason=f"no flag '{key}' for tenant '{tenant_id}'"
                            )
                        ],
                    ),
                    tenant_id,
                    key,
                )
            return FlagState(
                tenant_id=tenant_id,
                key=key,
                killed=entry.killed,
                versions=sorted(entry.versions),
                flag=entry.flag,
                errors=quarantined(tenant_id, key),
            )

    def metric_state(tenant_id: str, name: str) -> MetricState:
        with backend.lock:
            try:
                entry = commands.metric_entry(backend.state, tenant_id, name)
            except Refused as error:
                raise unknown(error, tenant_id, name) from None
            return MetricState(
                tenant_id=tenant_id,
                name=name,
                version=entry.version,
                versions=sorted(entry.versions),
                metric=entry.metric,
                errors=quarantined(tenant_id, name),
            )

    def metric_result(
        caller: KeyRecord, name: str, command: Callable[[Author], ControlEvent | None]
    ) -> MetricChangeResult:
        event, offset = write(caller, command)
        return MetricChangeResult(
            changed=event is not None,
            type=None if event is None else event.type,
            event_id=None if event is None else event.event_id,
            offset=offset,
            metric=metric_state(caller.tenant_id, name),
        )

    def experiment_result(
        caller: KeyRecord, key: str, command: Callable[[Author], ControlEvent | None]
    ) -> ExperimentChangeResult:
        event, offset = write(caller, command)
        return ExperimentChangeResult(
            changed=event is not None,
            type=None if event is None else event.type,
            event_id=None if event is None else event.event_id,
            offset=offset,
            experiment=experiment_state(caller.tenant_id, key),
        )

    def flag_result(
        caller: KeyRecord, key: str, command: Callable[[Author], ControlEvent | None]
    ) -> FlagChangeResult:
        event, offset = write(caller, command)
        return FlagChangeResult(
            changed=event is not None,
            type=None if event is None else event.type,
            event_id=None if event is None else event.event_id,
            offset=offset,
            flag=flag_state(caller.tenant_id, key),
        )

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        problem = backend.healthy()
        if problem is not None:
            response.status_code = 503
            return {"status": "degraded", "error": problem}
        return {"status": "ok", "next_offset": backend.state.next_offset}

    @app.get("/v1/whoami")
    def whoami(caller: KeyRecord = anyone) -> KeyView:
        """The key the request carries: its id, tenant and role."""
        return _key_view(caller)

    @app.get("/v1/config")
    def config(request: Request, caller: KeyRecord = anyone) -> Response:
        """The caller's tenant's configuration snapshot; 304 when ``If-None-Match`` matches."""
        return tenant_config(caller.tenant_id, request)

    @app.get("/v1/tenants/{tenant}/config", response_model=ConfigSnapshot)
    def tenant_config_route(
        tenant: TenantId, request: Request, caller: KeyRecord = anyone
    ) -> Response:
        return tenant_config(tenant, request)

    def tenant_config(tenant_id: str, request: Request) -> Response:
        with backend.lock:
            tenant = tenant_state(tenant_id)
            cached = config_cache.get(tenant_id)
            if cached is None or cached[0] != tenant.revision:
                body = tenant.snapshot().model_dump_json().encode()
                cached = (tenant.revision, etag_of(body), body)
                config_cache[tenant_id] = cached
        _, etag, body = cached
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @app.get("/v1/tenants/{tenant}")
    def get_tenant(tenant: TenantId, caller: KeyRecord = reader) -> TenantView:
        with backend.lock:
            state = tenant_state(tenant)
            return TenantView(
                tenant_id=tenant,
                name=state.name,
                holdout_percent=state.holdout_percent,
                experiments=len(state.experiments),
                flags=len(state.flags),
                errors=list(state.quarantined),
            )

    @app.put("/v1/tenants/{tenant}/holdout")
    def set_holdout(tenant: TenantId, body: HoldoutBody, caller: KeyRecord = admin) -> ChangeResult:
        """The tenant-wide holdout: this percent of units sees no experiment."""
        event, offset = write(
            caller, lambda a: commands.set_holdout(backend.state, a, body.percent, body.reason)
        )
        return ChangeResult(
            changed=event is not None,
            type=None if event is None else event.type,
            event_id=None if event is None else event.event_id,
            offset=offset,
        )

    @app.get("/v1/tenants/{tenant}/keys")
    def list_keys(tenant: TenantId, caller: KeyRecord = admin) -> list[KeyView]:
        with backend.lock:
            return [_key_view(record) for record in backend.state.keys.of_tenant(tenant)]

    @app.post("/v1/tenants/{tenant}/keys", status_code=201)
    def create_key(tenant: TenantId, body: KeyRequest, caller: KeyRecord = admin) -> KeyCreated:
        """Issue a key; the response holds the key itself, which is never shown again."""
        issued: dict[str, Any] = {}

        def command(author: Author) -> ControlEvent:
            event, key = commands.issue_key(
                backend.state, author, body.role, body.label, body.reason
            )
            issued["key"] = key
            return event

        event, _ = write(caller, command)
        assert event is not None
        return KeyCreated(
            key_id=issued["key"].key_id,
            tenant_id=tenant,
            role=body.role,
            revoked=False,
            label=body.label,
            key=issued["key"].secret_key,
            event_id=event.event_id,
        )

    @app.post("/v1/tenants/{tenant}/keys/{key_id}/revoke")
    def revoke_key(
        tenant: TenantId, key_id: str, body: ReasonBody, caller: KeyRecord = admin
    ) -> KeyView:
        write(caller, lambda a: commands.revoke_key(backend.state, a, key_id, body.reason))
        with backend.lock:
            record = backend.state.keys.get(key_id)
        assert record is not None
        return _key_view(record)

    # Experiments.

    @app.get("/v1/tenants/{tenant}/experiments")
    def list_experiments(tenant: TenantId, caller: KeyRecord = reader) -> list[ExperimentState]:
        with backend.lock:
            keys = sorted(tenant_state(tenant).experiments)
            return [experiment_state(tenant, key) for key in keys]

    @app.post("/v1/tenants/{tenant}/experiments", status_code=201)
    def create_experiment(
        tenant: TenantId, body: ExperimentWrite, caller: KeyRecord = admin
    ) -> ExperimentChangeResult:
        """Create an experiment; 409 if the key is taken."""
        return experiment_result(
            caller,
            body.experiment.key,
            lambda a: commands.define_experiment(
                backend.state,
                a,
                body.experiment,
                status_given="status" in body.experiment.model_fields_set,
                create_only=True,
                reason=body.reason,
            ),
        )

    @app.put("/v1/tenants/{tenant}/experiments/{key}")
    def put_experiment(
        tenant: TenantId, key: Key, body: ExperimentWrite, caller: KeyRecord = admin
    ) -> ExperimentChangeResult:
        """Create, or define a new version (the same definition again changes nothing)."""
        _same_as_path("experiment.key", body.experiment.key, key)
        return experiment_result(
            caller,
            key,
            lambda a: commands.define_experiment(
                backend.state,
                a,
                body.experiment,
                status_given="status" in body.experiment.model_fields_set,
                create_only=False,
                reason=body.reason,
            ),
        )

    @app.get("/v1/tenants/{tenant}/experiments/{key}")
    def get_experiment(tenant: TenantId, key: Key, caller: KeyRecord = reader) -> ExperimentState:
        return experiment_state(tenant, key)

    def lifecycle(action: commands.Action) -> Callable[..., ExperimentChangeResult]:
        def route(
            tenant: TenantId, key: Key, body: ReasonBody, caller: KeyRecord = admin
        ) -> ExperimentChangeResult:
            return experiment_result(
                caller,
                key,
                lambda a: commands.change_status(backend.state, a, key, action, body.reason),
            )

        route.__doc__ = f"{action.capitalize()} the experiment (409 if its status forbids it)."
        return route

    for action in ("start", "pause", "conclude"):
        app.post(
            f"/v1/tenants/{{tenant}}/experiments/{{key}}/{action}",
            name=f"{action}_experiment",
        )(lifecycle(action))  # type: ignore[arg-type]

    @app.post("/v1/tenants/{tenant}/experiments/{key}/ramp")
    def ramp_experiment(
        tenant: TenantId, key: Key, body: RampBody, caller: KeyRecord = admin
    ) -> ExperimentChangeResult:
        """Change the traffic ramp; units already in stay in, on the same variant."""
        return experiment_result(
            caller,
            key,
            lambda a: commands.ramp_experiment(backend.state, a, key, body.traffic, body.reason),
        )

    @app.post("/v1/tenants/{tenant}/experiments/{key}/rollback")
    def roll_back_experiment(
        tenant: TenantId, key: Key, body: RollbackBody, caller: KeyRecord = admin
    ) -> ExperimentChangeResult:
        """Restore an earlier version's configuration as the next version."""
        return experiment_result(
            caller,
            key,
            lambda a: commands.roll_back_experiment(
                backend.state, a, key, body.to_version, body.reason
            ),
        )

    @app.post("/v1/tenants/{tenant}/experiments/{key}/kill")
    def kill_experiment(
        tenant: TenantId, key: Key, body: KillBody, caller: KeyRecord = admin
    ) -> ExperimentChangeResult:
        """The kill switch: nobody is assigned while set (``killed: false`` clears it)."""
        return experiment_result(
            caller,
            key,
            lambda a: commands.set_kill_switch(backend.state, a, key, body.killed, body.reason),
        )

    @app.get("/v1/tenants/{tenant}/experiments/{key}/history")
    def experiment_history(
        tenant: TenantId, key: Key, caller: KeyRecord = reader
    ) -> list[HistoryEntry]:
        """Every change: author (key id), time, reason and the diff of the configuration."""
        experiment_state(tenant, key)
        with backend.lock:
            return tenant_state(tenant).history_of(key)

    # Flags.

    @app.get("/v1/tenants/{tenant}/flags")
    def list_flags(tenant: TenantId, caller: KeyRecord = reader) -> list[FlagState]:
        with backend.lock:
            return [flag_state(tenant, key) for key in sorted(tenant_state(tenant).flags)]

    @app.post("/v1/tenants/{tenant}/flags", status_code=201)
    def create_flag(
        tenant: TenantId, body: FlagWrite, caller: KeyRecord = admin
    ) -> FlagChangeResult:
        return flag_result(
            caller,
            body.flag.key,
            lambda a: commands.define_flag(
                backend.state, a, body.flag, create_only=True, reason=body.reason
            ),
        )

    @app.put("/v1/tenants/{tenant}/flags/{key}")
    def put_flag(
        tenant: TenantId, key: Key, body: FlagWrite, caller: KeyRecord = admin
    ) -> FlagChangeResult:
        _same_as_path("flag.key", body.flag.key, key)
        return flag_result(
            caller,
            key,
            lambda a: commands.define_flag(
                backend.state, a, body.flag, create_only=False, reason=body.reason
            ),
        )

    @app.get("/v1/tenants/{tenant}/flags/{key}")
    def get_flag(tenant: TenantId, key: Key, caller: KeyRecord = reader) -> FlagState:
        return flag_state(tenant, key)

    @app.post("/v1/tenants/{tenant}/flags/{key}/ramp")
    def ramp_flag(
        tenant: TenantId, key: Key, body: FlagRampBody, caller: KeyRecord = admin
    ) -> FlagChangeResult:
        return flag_result(
            caller,
            key,
            lambda a: commands.ramp_flag(backend.state, a, key, body.ramp, body.reason),
        )

    @app.post("/v1/tenants/{tenant}/flags/{key}/kill")
    def kill_flag(
        tenant: TenantId, key: Key, body: KillBody, caller: KeyRecord = admin
    ) -> FlagChangeResult:
        """The kill switch: everyone gets the off value while set."""
        return flag_result(
            caller,
            key,
            lambda a: commands.set_kill_switch(backend.state, a, key, body.killed, body.reason),
        )

    @app.get("/v1/tenants/{tenant}/flags/{key}/history")
    def flag_history(tenant: TenantId, key: Key, caller: KeyRecord = reader) -> list[HistoryEntry]:
        flag_state(tenant, key)
        with backend.lock:
            return tenant_state(tenant).history_of(key)

    # Metrics.

    @app.get("/v1/tenants/{tenant}/metrics")
    def list_metrics(tenant: TenantId, caller: KeyRecord = reader) -> list[MetricState]:
        with backend.lock:
            return [metric_state(tenant, name) for name in sorted(tenant_state(tenant).metrics)]

    @app.post("/v1/tenants/{tenant}/metrics", status_code=201)
    def create_metric(
        tenant: TenantId, body: MetricWrite, caller: KeyRecord = admin
    ) -> MetricChangeResult:
        """Create a metric (version 1); 409 if the name is taken."""
        return metric_result(
            caller,
            body.metric.name,
            lambda a: commands.define_metric(
                backend.state, a, body.metric, create_only=True, reason=body.reason
            ),
        )

    @app.put("/v1/tenants/{tenant}/metrics/{name}")
    def put_metric(
        tenant: TenantId, name: Key, body: MetricWrite, caller: KeyRecord = admin
    ) -> MetricChangeResult:
        """Create, or define the next version (the same definition again changes nothing)."""
        _same_as_path("metric.name", body.metric.name, name)
        return metric_result(
            caller,
            name,
            lambda a: commands.define_metric(
                backend.state, a, body.metric, create_only=False, reason=body.reason
            ),
        )

    @app.get("/v1/tenants/{tenant}/metrics/{name}")
    def get_metric(tenant: TenantId, name: Key, caller: KeyRecord = reader) -> MetricState:
        return metric_state(tenant, name)

    @app.get("/v1/tenants/{tenant}/metrics/{name}/history")
    def metric_history(
        tenant: TenantId, name: Key, caller: KeyRecord = reader
    ) -> list[HistoryEntry]:
        """Every version: author (key id), time, reason and the diff of the definition."""
        metric_state(tenant, name)
        with backend.lock:
            return tenant_state(tenant).metric_history_of(name)

    return app


def _lookup(backend: ControlBackend) -> Callable[[str], KeyRecord | None]:
    def lookup(secret_key: str) -> KeyRecord | None:
        with backend.lock:
            return backend.state.keys.authenticate(secret_key)

    return lookup
