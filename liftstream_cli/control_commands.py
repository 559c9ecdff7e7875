"""The CLI's control-plane commands: tenants, keys, experiments, flags, metrics, history.

- ``bootstrap-tenant TENANT``: create a tenant and print its first admin key, once
  (operator command: writes to the control topic directly).
- ``history KEY [--flag] [--json]``: every change with author, time, reason and diff.
- ``experiment list|show|start|pause|conclude|ramp|rollback|kill``.
- ``flag apply -f FILE|list|show|ramp|kill``.
- ``metric apply -f FILE|list|show NAME|history NAME``.
- ``key create|list|revoke``; ``holdout PERCENT``.

Everything but ``bootstrap-tenant`` goes through the control service with the API key of
``LIFTSTREAM_API_KEY`` or, by default, the one ``liftstream up`` recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.settings import default_tenant, load_settings
from liftstream_cli.console import fail, out
from liftstream_cli.control_api import AccessDeniedError, ControlApi, ControlServiceError
from liftstream_cli.yaml_files import load_yaml_file
from schemas.control import Role
from schemas.deadletter import FieldError
from schemas.experiment import MetricDefinition
from schemas.flags import Flag

EXIT_USER_ERROR = 1
_ERRORS = (
    InvalidInputError,
    PlatformUnavailableError,
    AccessDeniedError,
    ControlServiceError,
    TimeoutError,
)

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant id (default: $LIFTSTREAM_TENANT, else 'demo')."),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why: kept in the audit log.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]

experiment_app = typer.Typer(help="Experiments: list, show, start, pause, ramp, roll back...")
flag_app = typer.Typer(help="Feature flags: apply, list, show, ramp, kill.")
metric_app = typer.Typer(help="Metric definitions: apply, list, show, history.")
key_app = typer.Typer(help="API keys of a tenant: create, list, revoke.")


@contextmanager
def _control() -> Iterator[ControlApi]:
    """A client of the control service; errors become a message and exit code 1."""
    try:
        settings = load_settings()
        with ControlApi(settings.control_url, settings.api_key) as api:
            yield api
    except _ERRORS as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None


def _print(body: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        render(body)


def _tenant(tenant: str | None) -> str:
    return tenant or default_tenant()


def bootstrap_tenant(
    tenant: Annotated[str, typer.Argument(help="The new tenant's id.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
) -> None:
    """Create a tenant and print its first admin key (shown once, stored only hashed)."""
    from services.control_domain.tenants import bootstrap_tenant as create

    try:
        issued = create(load_settings(), tenant, name=name)
    except _ERRORS as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
    out.print(
        f"created tenant {tenant}; its admin key (shown once, keep it safe):", highlight=False
    )
    typer.echo(issued.key.secret_key)


def history(
    key: Annotated[str, typer.Argument(help="Experiment (or, with --flag, flag) key.")],
    tenant: TenantOption = None,
    flag: Annotated[bool, typer.Option("--flag", help="KEY is a flag.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every change of an experiment or flag: author, time, reason and diff."""
    with _control() as api:
        entries = api.history(_tenant(tenant), key, "flags" if flag else "experiments")
    _print(entries, as_json, _render_history)


def _render_history(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        version = f" v{entry['version']}" if entry.get("version") else ""
        out.print(
            f"[bold]{entry['occurred_at']}[/bold]  {entry['type']}{version}  by "
            f"{entry['author']}" + (f"  ({entry['reason']})" if entry["reason"] else ""),
            highlight=False,
        )
        for change in entry["diff"]:
            if change["before"] is None and isinstance(change["after"], dict):
                out.print("    created", highlight=False)
                continue
            label = change["field"] or "(all)"
            before, after = json.dumps(change["before"]), json.dumps(change["after"])
            out.print(f"    {label}: {before} -> {after}", highlight=False, markup=False)


def _render_experiment(state: dict[str, Any]) -> None:
    experiment = state["experiment"]
    killed = "  [red]KILLED[/red]" if state["killed"] else ""
    weights = ", ".join(f"{v['key']} {v['weight']:g}%" for v in experiment["variants"])
    out.print(
        f"{experiment['key']} v{experiment['version']}  {experiment['status']}{killed}  "
        f"traffic {experiment['traffic']:g}%  " + escape(f"[{weights}]"),
        highlight=False,
    )


@experiment_app.command("list")
def list_experiments(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """The tenant's experiments with status, version, traffic and weights."""
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/experiments")
    _print(body, as_json, lambda states: [_render_experiment(s) for s in states])


@experiment_app.command("show")
def show_experiment(key: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """One experiment's current definition."""
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/experiments/{key}")
    _print(body, as_json, _render_experiment)


def _act(kind: str, key: str, tenant: str | None, action: str, **body: Any) -> None:
    with _control() as api:
        answer = api.act(_tenant(tenant), kind, key, action, **body)
    state = answer.get("experiment") or answer.get("flag")
    if not answer["changed"]:
        out.print(f"{key}: nothing to change", highlight=False)
    elif kind == "experiments":
        _render_experiment(state)
    else:
        _render_flag(state)


@experiment_app.command("start")
def start(key: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Start (or resume) an experiment: units are assigned."""
    _act("experiments", key, tenant, "start", reason=reason)


@experiment_app.command("pause")
def pause(key: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Pause a running experiment: nobody is assigned until it starts again."""
    _act("experiments", key, tenant, "pause", reason=reason)


@experiment_app.command("conclude")
def conclude(key: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Conclude an experiment for good."""
    _act("experiments", key, tenant, "conclude", reason=reason)


@experiment_app.command("ramp")
def ramp(
    key: str,
    traffic: Annotated[float, typer.Argument(help="Percent of eligible units, (0, 100].")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Change the traffic ramp (units already in stay in, on the same variant)."""
    _act("experiments", key, tenant, "ramp", traffic=traffic, reason=reason)


@experiment_app.command("rollback")
def rollback(
    key: str,
    to_version: Annotated[int, typer.Argument(help="The version to restore.")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Restore an earlier version's configuration as the next version."""
    _act("experiments", key, tenant, "rollback", to_version=to_version, reason=reason)


@experiment_app.command("kill")
def kill_experiment(
    key: str,
    tenant: TenantOption = None,
    reason: ReasonOption = "",
    undo: Annotated[bool, typer.Option("--undo", help="Clear the kill switch.")] = False,
) -> None:
    """Kill switch: nobody is assigned to the experiment, at once."""
    _act("experiments", key, tenant, "kill", killed=not undo, reason=reason)


def _render_flag(state: dict[str, Any]) -> None:
    flag = state["flag"]
    killed = "  [red]KILLED[/red]" if state["killed"] else ""
    out.print(
        f"{flag['key']} v{flag['version']}  ramp {flag['ramp']:g}%{killed}  on "
        f"{json.dumps(flag['on_value'])} / off {json.dumps(flag['off_value'])}",
        highlight=False,
    )


@flag_app.command("apply")
def apply_flag(
    file: Annotated[Path, typer.Option("-f", "--file", help="Flag YAML file.")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Create a flag, or define its next version, from a YAML file."""
    subject = f"{file} is not a valid flag"
    try:
        flag = Flag.model_validate(load_yaml_file(file, subject))
    except InvalidInputError as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
    except ValidationError as error:
        fail(str(InvalidInputError.from_validation(f"{file} is not a valid flag", error)))
        raise typer.Exit(EXIT_USER_ERROR) from None
    with _control() as api:
        answer = api.put_flag(_tenant(tenant), flag, reason)
    if not answer["changed"]:
        out.print(f"{flag.key}: nothing to change", highlight=False)
    _render_flag(answer["flag"])


@flag_app.command("list")
def list_flags(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/flags")
    _print(body, as_json, lambda states: [_render_flag(s) for s in states])


@flag_app.command("show")
def show_flag(key: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/flags/{key}")
    _print(body, as_json, _render_flag)


@flag_app.command("ramp")
def ramp_flag(
    key: str,
    percent: Annotated[float, typer.Argument(help="Percent of eligible units on, [0, 100].")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Serve the on value to this percent of eligible units (monotonic)."""
    _act("flags", key, tenant, "ramp", ramp=percent, reason=reason)


@flag_app.command("kill")
def kill_flag(
    key: str,
    tenant: TenantOption = None,
    reason: ReasonOption = "",
    undo: Annotated[bool, typer.Option("--undo", help="Clear the kill switch.")] = False,
) -> None:
    """Kill switch: everyone gets the off value, at once."""
    _act("flags", key, tenant, "kill", killed=not undo, reason=reason)


def _render_metric(state: dict[str, Any]) -> None:
    metric = state["metric"]
    out.print(
        f"{metric['name']} v{state['version']}  {metric['type']} of {metric['event']}  "
        f"{metric['role']}, {metric['direction']} is better",
        highlight=False,
    )


def _read_metrics(file: Path) -> list[MetricDefinition]:
    """One metric (a mapping) or several (a list of mappings) from a YAML file."""
    try:
        loaded = load_yaml_file(file, f"{file} is not a valid metric file")
    except InvalidInputError as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
    documents = loaded if isinstance(loaded, list) else [loaded]
    metrics = []
    for index, document in enumerate(documents):
        where = f"{file} (metric {index + 1})" if isinstance(loaded, list) else str(file)
        try:
            metrics.append(MetricDefinition.model_validate(document))
        except ValidationError as error:
            fail(str(InvalidInputError.from_validation(f"{where} is not a valid metric", error)))
            raise typer.Exit(EXIT_USER_ERROR) from None
    return metrics


@metric_app.command("apply")
def apply_metric(
    file: Annotated[Path, typer.Option("-f", "--file", help="Metric YAML file (one or a list).")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Create metrics, or define their next version, from a YAML file."""
    metrics = _read_metrics(file)
    with _control() as api:
        for metric in metrics:
            answer = api.put(
                f"/v1/tenants/{_tenant(tenant)}/metrics/{metric.name}",
                metric=metric.model_dump(mode="json"),
                reason=reason,
            )
            if not answer["changed"]:
                out.print(f"{metric.name}: nothing to change", highlight=False)
            _render_metric(answer["metric"])


@metric_app.command("list")
def list_metrics(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """The tenant's metric definitions with their current version."""
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/metrics")
    _print(body, as_json, lambda states: [_render_metric(s) for s in states])


@metric_app.command("show")
def show_metric(name: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """One metric's current definition."""
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/metrics/{name}")
    _print(body, as_json, _render_metric)


@metric_app.command("history")
def metric_history(name: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """Every version of a metric: author, time, reason and diff."""
    with _control() as api:
        entries = api.history(_tenant(tenant), name, "metrics")
    _print(entries, as_json, _render_history)


@key_app.command("create")
def create_key(
    role: Annotated[str, typer.Argument(help="admin, ingest or read.")],
    tenant: TenantOption = None,
    label: Annotated[str, typer.Option("--label", help="What the key is for.")] = "",
    reason: ReasonOption = "",
) -> None:
    """Issue a key and print it (shown once, stored only hashed)."""
    if role not in ("admin", "ingest", "read"):
        fail(
            str(
                InvalidInputError(
                    "invalid key request",
                    [FieldError(field="role", reason=f"'{role}' is not admin, ingest or read")],
                )
            )
        )
        raise typer.Exit(EXIT_USER_ERROR)
    wanted: Role = role  # type: ignore[assignment]
    with _control() as api:
        body = api.post(
            f"/v1/tenants/{_tenant(tenant)}/keys", role=wanted, label=label, reason=reason
        )
    out.print(f"key {body['key_id']} ({role}); the key, shown once:", highlight=False)
    typer.echo(body["key"])


@key_app.command("list")
def list_keys(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with _control() as api:
        body = api.get(f"/v1/tenants/{_tenant(tenant)}/keys")

    def render(keys: list[dict[str, Any]]) -> None:
        table = Table("key id", "role", "revoked", "label")
        for key in keys:
            table.add_row(key["key_id"], key["role"], "yes" if key["revoked"] else "", key["label"])
        out.print(table)

    _print(body, as_json, render)


@key_app.command("revoke")
def revoke_key(key_id: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Revoke a key: every service refuses it from now on."""
    with _control() as api:
        api.post(f"/v1/tenants/{_tenant(tenant)}/keys/{key_id}/revoke", reason=reason)
    out.print(f"revoked {key_id}", highlight=False)


def holdout(
    percent: Annotated[float, typer.Argument(help="Percent of units kept out, [0, 100].")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Set the tenant-wide holdout: these units see no experiment."""
    with _control() as api:
        api.put(f"/v1/tenants/{_tenant(tenant)}/holdout", percent=percent, reason=reason)
    out.print(f"holdout {percent:g}% for tenant {_tenant(tenant)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the ``liftstream`` app."""
    app.command("bootstrap-tenant")(bootstrap_tenant)
    app.command()(history)
    app.command()(holdout)
    app.add_typer(experiment_app, name="experiment")
    app.add_typer(flag_app, name="flag")
    app.add_typer(metric_app, name="metric")
    app.add_typer(key_app, name="key")
