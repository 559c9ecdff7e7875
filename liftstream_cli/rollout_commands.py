"""The CLI's rollout commands (``liftstream rollout ...``), through the control service.

- ``apply -f PLAN.yaml``: create a rollout or give it its next plan version.
- ``list``; ``status R``: where it is and the decision trail; ``explain R [--check N]``:
  the evidence of one decision (the last by default): every guardrail's effect, always-
  valid interval and p-value against its threshold, the health gates, the reasons.
- ``approve R [--step N]``, ``pause R``, ``resume R``, ``abort R``, each ``--reason``.
- ``simulate -f PLAN.yaml --experiment E``: replay a past experiment's log against a plan.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from analytics.rollouts.replay_log import simulate_days
from liftstream.errors import PlatformUnavailableError
from liftstream_cli.common import (
    EXIT_USER_ERROR,
    JsonOption,
    ReasonOption,
    TenantOption,
    tenant_or_default,
    user_errors,
)
from liftstream_cli.console import fail, out
from liftstream_cli.control_cli import control_client, each, print_answer
from liftstream_cli.local_settings import load_settings
from liftstream_cli.results_api import ResultsApi, ResultsServiceError, UnknownExperimentError
from liftstream_cli.yaml_files import load_model_file
from schemas.experiment import Experiment
from schemas.rollout import RolloutPlan

rollout_app = typer.Typer(
    help="Guarded rollouts: apply a plan, watch its decisions, approve, pause, resume, abort."
)
FileOption = Annotated[str, typer.Option("-f", "--file", help="Rollout plan YAML file.")]


def load_plan(file: str) -> RolloutPlan:
    with user_errors():
        return load_model_file(file, RolloutPlan, "rollout plan")


def _path(tenant: str | None, key: str = "") -> str:
    base = f"/v1/tenants/{tenant_or_default(tenant)}/rollouts"
    return f"{base}/{key}" if key else base


def _figure(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def render_state(state: dict[str, Any]) -> None:
    plan = state["plan"]
    steps = " -> ".join(
        f"{step['percent']:g}%{' (approval)' if step['approval'] else ''}" for step in plan["steps"]
    )
    out.print(
        f"[bold]{escape(state['key'])}[/bold] (plan v{plan['version']}): {state['status']}, "
        f"step {state['step']} of {len(plan['steps'])} at {state['percent']:g}% of the segment; "
        f"{state['checks']} checks; steps {steps}",
        highlight=False,
    )
    target = plan["target"]
    what = (
        f"flag {target['flag']} (on vs the held-back off)"
        if target.get("flag")
        else f"{target['experiment']}/{target['variant']}"
    )
    gate = plan.get("entry_gate")
    if gate:
        waiting = "waiting: nobody is served the candidate"
        where = "passed" if state.get("entered", True) else waiting
        out.print(
            f"entry gate: shadow {escape(gate['shadow'])}, mismatch beyond noise below "
            f"{gate['max_mismatch_beyond_noise']:g} with {gate['confidence']:.0%} confidence "
            f"({where})",
            highlight=False,
        )
    out.print(
        f"target {what}; approved steps "
        f"{state['approved_steps'] or 'none'}; automatic rollbacks {state['automatic_rollbacks']}",
        highlight=False,
    )


def render_trail(decisions: list[dict[str, Any]], changes: list[dict[str, Any]]) -> None:
    rows = [
        (
            d["offset"],
            d["occurred_at"],
            d["author"],
            f"check {d['check_index'] + 1}: {d['decision']}",
            f"step {d['step']} {d['percent']:g}%",
            d["reason"],
        )
        for d in decisions
    ] + [
        (
            c["offset"],
            c["occurred_at"],
            c["author"],
            c["type"].removeprefix("rollout_"),
            f"v{c['plan_version']}" + (f" step {c['step']}" if c["step"] else ""),
            c["reason"],
        )
        for c in changes
    ]
    table = Table(title="decision trail")
    for column in ("when", "who", "what", "where", "why"):
        table.add_column(column)
    for _, when, who, what, where, why in sorted(rows):
        table.add_row(when[:19], escape(who), what, where, escape(why))
    out.print(table)


def render_evidence(decision: dict[str, Any]) -> None:
    evidence = decision["evidence"]
    out.print(
        f"check {decision['check_index'] + 1} of plan v{decision['plan_version']} at "
        f"{decision['occurred_at']}: [bold]{decision['decision']}[/bold] (step "
        f"{evidence['step_index'] + 1}, {evidence['percent']:g}%, "
        f"{evidence['seconds_on_step']:.0f} s on it; units control {evidence['units_control']}, "
        f"candidate {evidence['units_treatment']})",
        highlight=False,
    )
    gate = evidence.get("entry_gate")
    if gate:
        out.print(
            f"entry gate: shadow {escape(gate['shadow'])}: "
            + ("allowed" if gate["allowed"] else "not allowed")
            + ("" if gate["available"] else " (unavailable)")
            + f"; {escape(gate['detail'])}",
            highlight=False,
        )
    table = Table(title="guardrails (one-sided always-valid tests, relative unless stated)")
    for column in (
        "metric",
        "role",
        "n control/cand.",
        "control",
        "candidate",
        "effect",
        "interval",
        "p",
        "alpha",
        "threshold",
        "verdict",
    ):
        table.add_column(column)
    for g in evidence["guardrails"]:
        interval = g["interval"]
        table.add_row(
            escape(g["metric"]) + (" (dry run)" if g["dry_run"] else ""),
            g["role"],
            f"{g['n_control']}/{g['n_treatment']}",
            _figure(g["control_mean"]),
            _figure(g["treatment_mean"]),
            _figure(g["effect"]) + ("" if g["scale"] == "relative" else " abs"),
            "-" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]",
            _figure(g["p_value"], 3),
            _figure(g["alpha"], 3),
            _figure(g["threshold"]),
            g["verdict"],
        )
    if evidence["guardrails"] or not gate:  # a check before the entry gate judges none
        out.print(table)
    for gate in evidence["health"]:
        mark = "ok" if gate["ok"] else "FAILED"
        out.print(f"health {gate['gate']}: {mark} ({escape(gate['detail'])})", highlight=False)
    for reason in evidence["reasons"]:
        out.print(f"- {escape(reason)}", highlight=False)


@rollout_app.command("apply")
def apply(file: FileOption, tenant: TenantOption = None, reason: ReasonOption = "") -> None:
    """Create a rollout, or give it its next plan version, from a YAML file."""
    plan = load_plan(file)
    with control_client() as api:
        answer = api.put(_path(tenant, plan.key), plan=plan.model_dump(mode="json"), reason=reason)
    if not answer["changed"]:
        out.print(f"{plan.key}: nothing to change", highlight=False)
    render_state(answer["rollout"])


@rollout_app.command("list")
def list_rollouts(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    with control_client() as api:
        body = api.get(_path(tenant))
    print_answer(body, as_json, each(render_state))


@rollout_app.command("status")
def status(key: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """Where the rollout is, and its decision trail (checks and people's commands)."""
    with control_client() as api:
        state = api.get(_path(tenant, key))
        decisions = api.get(_path(tenant, key) + "/decisions?limit=1000")
    if as_json:
        print_answer({"rollout": state, "decisions": decisions}, True, lambda _: None)
        return
    render_state(state)
    render_trail(decisions, state["changes"])


@rollout_app.command("explain")
def explain(
    key: str,
    check: Annotated[
        int | None, typer.Option("--check", min=1, help="The check number (default: the last).")
    ] = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """The evidence of one decision: guardrails, health gates, reasons."""
    with control_client() as api:
        decisions = api.get(_path(tenant, key) + "/decisions?limit=1000")
    chosen = [d for d in decisions if check is None or d["check_index"] == check - 1]
    if not chosen:
        fail(f"{key}: no decision {'yet' if check is None else f'for check {check}'}")
        raise typer.Exit(EXIT_USER_ERROR)
    print_answer(chosen[-1], as_json, render_evidence)


def _command(action: str) -> Any:
    def command(
        key: str,
        reason: ReasonOption = "",
        step: Annotated[
            int | None, typer.Option("--step", min=1, help="approve: the step (default: next).")
        ] = None,
        tenant: TenantOption = None,
    ) -> None:
        body: dict[str, Any] = {"reason": reason}
        if step is not None:
            body["step"] = step
        with control_client() as api:
            answer = api.post(_path(tenant, key) + f"/{action}", **body)
        render_state(answer["rollout"])

    command.__doc__ = {
        "approve": "Approve the next step's gate (or --step N).",
        "pause": "Hold the rollout on its step (guardrails still roll back).",
        "resume": "Let a paused rollout advance again.",
        "abort": "Stop the rollout and serve the control to everyone.",
    }[action]
    return command


for _action in ("approve", "pause", "resume", "abort"):
    rollout_app.command(_action)(_command(_action))


@rollout_app.command("simulate")
def simulate(
    file: FileOption,
    experiment: Annotated[
        str, typer.Option("--experiment", help="The past experiment whose log is replayed.")
    ],
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            help="The experiment's variant replayed as the candidate (default: the plan's; "
            "for a flag plan, the experiment's only treatment stands for the flag's on value).",
        ),
    ] = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a past experiment's raw log against a plan: one check per day, with the
    evidence of each (approval gates taken as given). A flag plan is replayed against an
    experiment that tested the same change: its control stands for off."""
    plan = load_plan(file)
    tenant_id = tenant_or_default(tenant)
    with control_client() as api:
        definition = api.get(f"/v1/tenants/{tenant_id}/experiments/{experiment}")["experiment"]
    try:
        settings = load_settings()
        with ResultsApi(settings.results_url, settings.api_key) as results:
            daily = results.daily_json(tenant_id, experiment)
    except (PlatformUnavailableError, ResultsServiceError, UnknownExperimentError) as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
    target = Experiment.model_validate(definition)
    candidate = variant or (None if plan.target.is_flag else plan.target.candidate)
    if candidate is not None and candidate not in target.treatment_keys:
        where = "--variant" if variant else f"{file}: target.variant"
        fail(f"{where} '{candidate}' is not a treatment of {experiment}")
        raise typer.Exit(EXIT_USER_ERROR)
    try:
        checks = simulate_days(plan, target, daily["days"], candidate)
    except ValueError as error:
        fail(f"{error} (--variant)")
        raise typer.Exit(EXIT_USER_ERROR) from None
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "day": check.day.isoformat(),
                        "decision": check.outcome.decision,
                        "step": check.outcome.step_index + 1,
                        "percent": check.outcome.percent,
                        "evidence": check.outcome.evidence.model_dump(mode="json"),
                    }
                    for check in checks
                ],
                indent=2,
            )
        )
        return
    if not checks:
        out.print(f"{experiment}: no exposures in the raw log to replay", highlight=False)
        return
    out.print(
        f"{plan.key} replayed against {experiment}: one check at the end of each day "
        "(approval gates taken as given"
        + (", and its shadow entry gate" if plan.entry_gate else "")
        + ")",
        highlight=False,
    )
    for index, check in enumerate(checks):
        outcome = check.outcome
        render_evidence(
            {
                "check_index": index,
                "plan_version": plan.version,
                "occurred_at": check.day.isoformat(),
                "decision": outcome.decision,
                "evidence": outcome.evidence.model_dump(mode="json"),
            }
        )


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
