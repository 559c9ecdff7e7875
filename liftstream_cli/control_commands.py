"""The CLI's control-plane commands: tenants, keys, experiments, flags, metrics, history.

- ``bootstrap-tenant TENANT``: create a tenant and print its first admin key, once
  (operator command: writes to the control topic directly).
- ``history KEY [--flag] [--json]``: every change with author, time, reason and diff.
- ``experiment list|show|start|pause|conclude|ramp|rollback|kill``.
- ``flag apply -f FILE|list|show|ramp|kill``.
- ``metric apply -f FILE|list|show NAME|history NAME``.
- ``key create|list|revoke``; ``holdout PERCENT``.

Everything but ``bootstrap-tenant`` goes through the control service with the API key of
``LIFTSTREAM_API_KEY`` or, by default, the one ``liftstream up`` recorded
(``control_cli``). The metric commands are in ``metric_commands``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, cast, get_args

import typer
from rich.markup import escape
from rich.table import Table

from liftstream_cli.common import (
    EXIT_USER_ERROR,
    USER_ERRORS,
    JsonOption,
    ReasonOption,
    TenantOption,
    tenant_or_default,
    user_errors,
)
from liftstream_cli.console import fail, out
from liftstream_cli.control_api import ControlApi
from liftstream_cli.control_cli import control_client, each, print_answer, render_history
from liftstream_cli.local_settings import load_settings
from liftstream_cli.metric_commands import metric_app
from liftstream_cli.yaml_files import load_model_file
from schemas.control import Role
from schemas.control_api import (
    ExperimentChangeResult,
    ExperimentState,
    FlagChangeResult,
    FlagState,
    KeyView,
)
from schemas.flags import Flag

#: A key's role (``schemas.control.Role``) as a typer choice.
RoleChoice = StrEnum("RoleChoice", {role: role for role in get_args(Role)})  # type: ignore[misc]

experiment_app = typer.Typer(help="Experiments: list, show, start, pause, ramp, roll back...")
flag_app = typer.Typer(help="Feature flags: apply, list, show, ramp, kill.")
key_app = typer.Typer(help="API keys of a tenant: create, list, revoke.")


def bootstrap_tenant(
    tenant: Annotated[str, typer.Argument(help="The new tenant's id.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
) -> None:
    """Create a tenant and print its first admin key (shown once, stored only hashed)."""
    from services.control_domain.tenants import bootstrap_tenant as create

    try:
        issued = create(load_settings(), tenant, name=name)
    except USER_ERRORS as error:
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
    with control_client() as api:
        entries = api.history(tenant_or_default(tenant), key, "flags" if flag else "experiments")
    print_answer(entries, as_json, render_history)


def _render_experiment(state: ExperimentState) -> None:
    experiment = state.experiment
    killed = "  [red]KILLED[/red]" if state.killed else ""
    weights = ", ".join(f"{v.key} {v.weight:g}%" for v in experiment.variants)
    out.print(
        f"{experiment.key} v{experiment.version}  {experiment.status}{killed}  "
        f"traffic {experiment.traffic:g}%  " + escape(f"[{weights}]"),
        highlight=False,
    )


@experiment_app.command("list")
def list_experiments(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """The tenant's experiments with status, version, traffic and weights."""
    with control_client() as api:
        states = api.experiments(tenant_or_default(tenant))
    print_answer(states, as_json, each(_render_experiment))


@experiment_app.command("show")
def show_experiment(key: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """One experiment's current definition."""
    with control_client() as api:
        state = api.experiment(tenant_or_default(tenant), key)
    print_answer(state, as_json, _render_experiment)


def _experiment_change(
    key: str, tenant: str | None, change: Callable[[ControlApi, str], ExperimentChangeResult]
) -> None:
    with control_client() as api:
        answer = change(api, tenant_or_default(tenant))
    if answer.changed:
        _render_experiment(answer.experiment)
    else:
        out.print(f"{key}: nothing to change", highlight=False)


def _flag_change(
    key: str, tenant: str | None, change: Callable[[ControlApi, str], FlagChangeResult]
) -> None:
    with control_client() as api:
        answer = change(api, tenant_or_default(tenant))
    if answer.changed:
        _render_flag(answer.flag)
    else:
        out.print(f"{key}: nothing to change", highlight=False)


@experiment_app.command("start")
def start(key: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Start (or resume) an experiment: units are assigned."""
    _experiment_change(key, tenant, lambda api, t: api.set_status(t, key, "start", reason))


@experiment_app.command("pause")
def pause(key: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Pause a running experiment: nobody is assigned until it starts again."""
    _experiment_change(key, tenant, lambda api, t: api.set_status(t, key, "pause", reason))


@experiment_app.command("conclude")
def conclude(key: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Conclude an experiment for good."""
    _experiment_change(key, tenant, lambda api, t: api.set_status(t, key, "conclude", reason))


@experiment_app.command("ramp")
def ramp(
    key: str,
    traffic: Annotated[float, typer.Argument(help="Percent of eligible units, (0, 100].")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Change the traffic ramp (units already in stay in, on the same variant)."""
    _experiment_change(key, tenant, lambda api, t: api.ramp_experiment(t, key, traffic, reason))


@experiment_app.command("rollback")
def rollback(
    key: str,
    to_version: Annotated[int, typer.Argument(help="The version to restore.")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Restore an earlier version's configuration as the next version."""
    _experiment_change(
        key, tenant, lambda api, t: api.roll_back_experiment(t, key, to_version, reason)
    )


@experiment_app.command("kill")
def kill_experiment(
    key: str,
    tenant: TenantOption = None,
    reason: ReasonOption = "",
    undo: Annotated[bool, typer.Option("--undo", help="Clear the kill switch.")] = False,
) -> None:
    """Kill switch: nobody is assigned to the experiment, at once."""
    _experiment_change(key, tenant, lambda api, t: api.kill_experiment(t, key, not undo, reason))


def _render_flag(state: FlagState) -> None:
    flag = state.flag
    killed = "  [red]KILLED[/red]" if state.killed else ""
    held = f" (holdback {flag.holdback:g}%)" if flag.holdback else ""
    out.print(
        f"{flag.key} v{flag.version}  ramp {flag.ramp:g}%{held}{killed}  on "
        f"{json.dumps(flag.on_value)} / off {json.dumps(flag.off_value)}",
        highlight=False,
    )


@flag_app.command("apply")
def apply_flag(
    file: Annotated[Path, typer.Option("-f", "--file", help="Flag YAML file.")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Create a flag, or define its next version, from a YAML file."""
    with user_errors():
        flag = load_model_file(file, Flag, "flag")
    with control_client() as api:
        answer = api.put_flag(tenant_or_default(tenant), flag, reason)
    if not answer.changed:
        out.print(f"{flag.key}: nothing to change", highlight=False)
    _render_flag(answer.flag)


@flag_app.command("list")
def list_flags(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with control_client() as api:
        states = api.flags(tenant_or_default(tenant))
    print_answer(states, as_json, each(_render_flag))


@flag_app.command("show")
def show_flag(key: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with control_client() as api:
        state = api.flag(tenant_or_default(tenant), key)
    print_answer(state, as_json, _render_flag)


@flag_app.command("ramp")
def ramp_flag(
    key: str,
    percent: Annotated[float, typer.Argument(help="Percent of eligible units on, [0, 100].")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Serve the on value to this percent of eligible units (monotonic)."""
    _flag_change(key, tenant, lambda api, t: api.ramp_flag(t, key, percent, reason))


@flag_app.command("kill")
def kill_flag(
    key: str,
    tenant: TenantOption = None,
    reason: ReasonOption = "",
    undo: Annotated[bool, typer.Option("--undo", help="Clear the kill switch.")] = False,
) -> None:
    """Kill switch: everyone gets the off value, at once."""
    _flag_change(key, tenant, lambda api, t: api.kill_flag(t, key, not undo, reason))


@key_app.command("create")
def create_key(
    role: Annotated[RoleChoice, typer.Argument(help="The key's rights.")],
    tenant: TenantOption = None,
    label: Annotated[str, typer.Option("--label", help="What the key is for.")] = "",
    reason: ReasonOption = "",
) -> None:
    """Issue a key and print it (shown once, stored only hashed)."""
    with control_client() as api:
        created = api.create_key(tenant_or_default(tenant), cast(Role, role.value), label, reason)
    out.print(f"key {created.key_id} ({role.value}); the key, shown once:", highlight=False)
    typer.echo(created.key)


@key_app.command("list")
def list_keys(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with control_client() as api:
        keys = api.keys(tenant_or_default(tenant))

    def render(keys: list[KeyView]) -> None:
        table = Table("key id", "role", "revoked", "label")
        for key in keys:
            table.add_row(key.key_id, key.role, "yes" if key.revoked else "", key.label)
        out.print(table)

    print_answer(keys, as_json, render)


@key_app.command("revoke")
def revoke_key(key_id: str, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Revoke a key: every service refuses it from now on."""
    with control_client() as api:
        api.revoke_key(tenant_or_default(tenant), key_id, reason)
    out.print(f"revoked {key_id}", highlight=False)


def holdout(
    percent: Annotated[float, typer.Argument(help="Percent of units kept out, [0, 100].")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Set the tenant-wide holdout: these units see no experiment."""
    with control_client() as api:
        api.set_holdout(tenant_or_default(tenant), percent, reason)
    out.print(f"holdout {percent:g}% for tenant {tenant_or_default(tenant)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the ``liftstream`` app."""
    app.command("bootstrap-tenant")(bootstrap_tenant)
    app.command()(history)
    app.command()(holdout)
    app.add_typer(experiment_app, name="experiment")
    app.add_typer(flag_app, name="flag")
    app.add_typer(metric_app, name="metric")
    app.add_typer(key_app, name="key")
