"""``liftstream``: the console script (typer). Each command is a thin layer over the library.

- ``up [--demo]``: run the local platform in the foreground until Ctrl-C / SIGTERM,
  restarting any part that exits (``liftstream_cli.platform``).
- ``status [--json]``: the running platform's parts, their restarts and addresses;
  ``hold PART`` / ``release PART``: keep a part down when it exits, or heal it again.
- ``demo [--units N] [--seed S]``: the checkout-button demo, end to end, on the running
  platform or on one started for the occasion.
- ``apply -f FILE``: validate an experiment file and send it to the control service.
- ``bootstrap-tenant``, ``history``, ``holdout``, ``experiment ...``, ``flag ...``,
  ``key ...``: the control plane (``liftstream_cli.control_commands``).
- ``results EXPERIMENT [--daily|--health] [--scale relative|absolute] [--json]``: the
  experiment's scorecard (with what the pipeline quarantined of it), its days, or its
  pipeline health, from the results service.
- ``shadow results NAME`` / ``shadow gate NAME --max-beyond-noise X``: a shadow test's
  figures and promotion gate (``liftstream_cli.shadow_commands``).
- ``replay --metric M [--since DATE] [--experiment E]``: back-fill a metric from the raw
  log on the results service, with a progress bar, then print its per-variant sums.
- ``import FILE.jsonl|FILE.parquet [--tenant T] [--json]``: backfill events through the
  collector (admin key), up to 10 years old instead of 30 days; a progress bar, then a summary
  (``liftstream_cli.import_events``).
- ``analyze --exposures F --outcomes F -f EXPERIMENT.yaml [--scale S] [--json]``: the same
  scorecard from Parquet or CSV exports (``analytics.offline``), without the platform.
- ``plan --metric conversion|mean --baseline B [--mde D] [--units N]``: sample size per
  arm for a minimum detectable effect, and the effect detectable with the units so far.

Bad input and an absent platform end with a one-paragraph message and exit code 1, never
a traceback.

Longer than 400 lines on purpose: this is the CLI's table of top-level commands (typer
signatures and help); what each command does lives in its own module.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from liftstream_cli import control_commands, rollout_commands, status
from liftstream_cli.common import (
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    USER_ERRORS,
    TenantOption,
    tenant_or_default,
    user_errors,
)
from liftstream_cli.console import err, fail, out
from liftstream_cli.local_settings import load_settings
from liftstream_cli.results_api import ResultsApi
from liftstream_cli.shadow_commands import shadow_app

if TYPE_CHECKING:
    from liftstream_cli.local_settings import Settings
    from liftstream_cli.platform import PlatformSession
    from liftstream_cli.platform_state import PlatformState

app = typer.Typer(
    name="liftstream",
    help="Event-sourced experimentation on Kafka: run the platform, apply experiments, "
    "read results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

app.command("status")(status.status)
app.command("hold")(status.hold)
app.command("release")(status.release)

#: Users the demo simulates: enough to detect its effect at p < 0.01 (see cli/demo.py).
DEFAULT_DEMO_UNITS = 20_000


class ScaleChoice(StrEnum):
    relative = "relative"
    absolute = "absolute"


ScaleOption = Annotated[
    ScaleChoice,
    typer.Option(
        "--scale",
        help="Scale of the headline p-values, adjusted intervals, verdicts, sequential and "
        "Bayesian figures: relative (treatment / control - 1) or absolute (treatment - "
        "control).",
    ),
]


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Once ready, run the demo, then keep running.")
    ] = False,
    units: Annotated[
        int, typer.Option("--units", min=100, help="Demo users.")
    ] = DEFAULT_DEMO_UNITS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the demo simulation.")] = 1,
    brokers: Annotated[
        int,
        typer.Option(
            "--brokers",
            min=1,
            max=9,
            help="Local Kafka brokers: 3 runs a KRaft cluster, topics on 3 replicas, "
            "12 event partitions.",
        ),
    ] = 1,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Stream workers in one consumer group (at most one per event partition).",
        ),
    ] = 1,
) -> None:
    """Run the platform in the foreground: broker(s), stream worker(s), results, control,
    collector, rollout controller and dashboard."""
    from liftstream_cli.platform import PlatformFailure, PlatformSession, PlatformSupervisor
    from liftstream_cli.platform_state import running_platform
    from liftstream_cli.processes import ShutdownRequested, shutdown_on_signals

    existing = running_platform()
    if existing is not None:
        fail(
            f"a platform is already running (results at {existing.results_url}, "
            f"pids {existing.pids}); stop it before starting another"
        )
        raise typer.Exit(EXIT_USER_ERROR)
    settings = load_settings()
    supervisor = PlatformSupervisor(settings, err, brokers=brokers, workers=workers)
    exit_code = 0
    try:
        with shutdown_on_signals():
            try:
                state = supervisor.start()
                out.print(
                    f"liftstream is up\n"
                    f"  Kafka bootstrap   {state.bootstrap} (namespace {state.namespace})\n"
                    f"  topology          {_topology(state)}\n"
                    f"  results service   {state.results_url}\n"
                    f"  control service   {state.control_url} (tenant {state.tenant}: its "
                    "admin key is in the state file)\n"
                    f"  dashboard         {state.dashboard_url} (sign in with an API key)\n"
                    f"  DuckDB            {settings.duckdb_path}\n"
                    f"  logs              {settings.home / 'logs'}\n"
                    f"  state             {settings.home / 'platform.json'}",
                    highlight=False,
                )
                if demo:
                    session = PlatformSession(state, supervisor)
                    _demo_then_keep_running(settings, session, units, seed)
                err.print("running; press Ctrl-C to stop")
                while True:
                    supervisor.check()
                    time.sleep(0.5)
            except ShutdownRequested as signal_name:
                err.print(f"{signal_name}: stopping")
            except PlatformFailure as failure:
                fail(str(failure))
                exit_code = EXIT_USER_ERROR
            except Exception as error:
                fail(f"the platform could not run: {error!r}")
                exit_code = EXIT_USER_ERROR
            finally:
                supervisor.stop()
    except ShutdownRequested:
        supervisor.stop()
    err.print("stopped")
    if exit_code:
        raise typer.Exit(exit_code)


def _topology(state: PlatformState) -> str:
    brokers = (
        f"{state.brokers} local broker{'s' if state.brokers > 1 else ''}"
        if state.brokers
        else "the broker(s) of LIFTSTREAM_BOOTSTRAP"
    )
    return (
        f"{brokers}, {state.partitions} event partitions, replication "
        f"{state.replication_factor}, {state.workers} stream worker"
        f"{'s' if state.workers > 1 else ''}"
    )


def _demo_then_keep_running(
    settings: Settings, session: PlatformSession, units: int, seed: int
) -> None:
    """Run the demo on the platform ``up`` started; a failed demo leaves the platform up."""
    from liftstream_cli.demo import DEMO_TENANT, run_demo
    from liftstream_cli.scorecard_view import render_scorecard

    try:
        scorecard = run_demo(settings, session, err, units=units, seed=seed)
    except USER_ERRORS as error:
        fail(f"the demo failed, the platform keeps running: {error}")
        return
    out.print(render_scorecard(scorecard))
    out.print(
        f"in another terminal: liftstream results {scorecard.experiment_key} "
        f"--tenant {DEMO_TENANT} --json",
        highlight=False,
    )
    if session.state.dashboard_url:
        out.print(
            f"in a browser: {session.state.dashboard_url}/experiments/"
            f"{scorecard.experiment_key} (sign in with the admin key: "
            f"liftstream status --json shows where it is kept)",
            highlight=False,
        )


@app.command()
def demo(
    units: Annotated[int, typer.Option("--units", min=100, help="Simulated users.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation.")] = 1,
) -> None:
    """Apply checkout-button, simulate users, wait for the stream, print the scorecard."""
    from liftstream_cli.demo import run_demo
    from liftstream_cli.platform import platform_session
    from liftstream_cli.processes import ShutdownRequested, shutdown_on_signals
    from liftstream_cli.scorecard_view import render_scorecard

    settings = load_settings()
    try:
        with user_errors(), shutdown_on_signals(), platform_session(settings, err) as session:
            scorecard = run_demo(settings, session, err, units=units, seed=seed)
    except ShutdownRequested as signal_name:
        err.print(f"{signal_name}: demo interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    out.print(render_scorecard(scorecard))


@app.command()
def apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="Experiment YAML file.")],
    tenant: TenantOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit log.")] = "",
) -> None:
    """Validate an experiment file and create it, or define its next version.

    Goes through the control service, with the API key of $LIFTSTREAM_API_KEY or the one
    `liftstream up` recorded; applying an unchanged file changes nothing.
    """
    from liftstream_cli.control import apply_experiment, load_experiment_file

    with user_errors():
        experiment = load_experiment_file(file)
        applied = apply_experiment(experiment, tenant_or_default(tenant), load_settings(), reason)
    if applied.changed:
        out.print(
            f"applied {applied.key} (version {applied.version}, {applied.status}) for tenant "
            f"{applied.tenant_id} by key {applied.author}: control event {applied.event_id}",
            highlight=False,
        )
    else:
        out.print(
            f"{applied.key} (version {applied.version}, {applied.status}) for tenant "
            f"{applied.tenant_id} is already defined so: nothing to change",
            highlight=False,
        )


@app.command()
def results(
    experiment: Annotated[str, typer.Argument(help="Experiment key.")],
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scorecard JSON.")] = False,
    daily: Annotated[
        bool, typer.Option("--daily", help="Cumulative figures and p-values day by day.")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="--daily: first day shown (YYYY-MM-DD).")
    ] = None,
    through: Annotated[
        str | None, typer.Option("--through", help="--daily: last day shown (YYYY-MM-DD).")
    ] = None,
    health: Annotated[
        bool,
        typer.Option(
            "--health",
            help="What the pipeline counted: duplicates, late events, refused messages by "
            "reason, units in several variants, quarantined definitions.",
        ),
    ] = False,
    scale: ScaleOption = ScaleChoice.relative,
) -> None:
    """Show an experiment's scorecard: effects, confidence intervals, p-values, SRM."""
    from liftstream_cli.daily_view import render_daily
    from liftstream_cli.health_view import render_health
    from liftstream_cli.scorecard_view import render_scorecard
    from schemas.results import DailyResults, ExperimentHealth, Scorecard

    if daily and health:
        raise typer.BadParameter("give --daily or --health, not both", param_hint="--health")
    if (since or through) and not daily:
        raise typer.BadParameter("--since and --through go with --daily", param_hint="--daily")
    settings = load_settings()
    tenant_id = tenant_or_default(tenant)
    with user_errors(), ResultsApi(settings.results_url, settings.api_key) as api:
        if daily:
            body = api.daily_json(tenant_id, experiment, since, through)
        elif health:
            body = api.health_json(tenant_id, experiment)
        else:
            body = api.scorecard_json(tenant_id, experiment, scale.value)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    elif daily:
        daily_results = DailyResults.model_validate(body)
        out.print(render_daily(daily_results))
        if daily_results.clamped:
            err.print(f"note: {daily_results.clamped}", style="yellow", highlight=False)
    elif health:
        out.print(render_health(ExperimentHealth.model_validate(body)))
    else:
        scorecard = Scorecard.model_validate(body)
        out.print(render_scorecard(scorecard))
        for error in scorecard.errors:
            out.print(
                f"error ({error.stage}) {error.subject}: {error.reason}",
                style="bold red",
                highlight=False,
            )


@app.command()
def replay(
    metric: Annotated[str, typer.Option("--metric", help="Metric name to back-fill.")],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only units first exposed at or after this date/time."),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="One experiment (default: all).")
    ] = None,
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job's JSON.")] = False,
) -> None:
    """Back-fill a metric defined after its events were sent, from the raw log.

    Needs an admin key. Scorecards then use the replayed sums for metrics the stream does
    not keep (mean, ratio, capped, windowed, CUPED).
    """
    from liftstream_cli.replay import parse_since, run_replay, sums_table

    settings = load_settings()
    with user_errors():
        instant = parse_since(since)
    with user_errors(), ResultsApi(settings.results_url, settings.api_key) as api:
        job = run_replay(api, tenant_or_default(tenant), metric, instant, experiment)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    elif job.get("note"):
        err.print(job["note"], style="yellow", highlight=False)
    else:
        out.print(sums_table(job))


@app.command("import")
def import_events(
    file: Annotated[Path, typer.Argument(help="Events as JSON Lines (.jsonl) or Parquet.")],
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Backfill events older than live ingest takes (30 days), e.g. an existing experiment's
    logs: the collector's validation, de-duplication and dead letters, taking events
    up to 10 years old.

    Needs the tenant's admin key. Streams and replays see the events.
    """
    from liftstream_cli.import_events import CollectorImport, run_import, summary_table

    settings = load_settings()
    with user_errors():
        api = CollectorImport(settings.collector_url, settings.api_key, tenant_or_default(tenant))
        try:
            summary = run_import(api, file)
        finally:
            api.close()
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2))
    else:
        out.print(summary_table(summary))


@app.command()
def analyze(
    exposures: Annotated[
        Path, typer.Option("--exposures", help="Exposures export (.parquet or CSV).")
    ],
    outcomes: Annotated[
        Path, typer.Option("--outcomes", help="Outcomes export (.parquet or CSV).")
    ],
    file: Annotated[Path, typer.Option("-f", "--file", help="Experiment YAML file.")],
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scorecard JSON.")] = False,
    scale: ScaleOption = ScaleChoice.relative,
) -> None:
    """Score an experiment from exported exposures and outcomes (warehouse data), via DuckDB.

    Same attribution and statistics as `liftstream results`; no platform needed.
    """
    from analytics.offline import offline_scorecard
    from liftstream_cli.control import load_experiment_file
    from liftstream_cli.scorecard_view import render_scorecard

    with user_errors():
        experiment = load_experiment_file(file)
        scorecard = offline_scorecard(
            exposures, outcomes, experiment, tenant_or_default(tenant), scale=scale.value
        )
    if as_json:
        typer.echo(scorecard.model_dump_json(indent=2))
    else:
        out.print(render_scorecard(scorecard))


@app.command()
def plan(
    metric: Annotated[str, typer.Option("--metric", help="conversion or mean.")],
    baseline: Annotated[
        float, typer.Option("--baseline", help="Control conversion rate (0.1) or mean.")
    ],
    mde: Annotated[
        float | None, typer.Option("--mde", help="Minimum detectable effect (absolute).")
    ] = None,
    relative: Annotated[
        bool, typer.Option("--relative", help="--mde is relative to the baseline (0.05 = 5%).")
    ] = False,
    std: Annotated[
        float | None, typer.Option("--std", help="Per-unit standard deviation (mean metrics).")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Two-sided significance level.")] = 0.05,
    power: Annotated[float, typer.Option("--power", help="Power to detect the effect.")] = 0.8,
    ratio: Annotated[
        float, typer.Option("--ratio", help="Treatment units per control unit.")
    ] = 1.0,
    units: Annotated[
        int | None, typer.Option("--units", help="Control units so far: what can they detect?")
    ] = None,
) -> None:
    """Sample size for a minimum detectable effect; the effect detectable so far."""
    from liftstream_cli.plan import PlanInputError, PlanRequest, plan_text

    if metric not in ("conversion", "mean"):
        fail(f"--metric: '{metric}' is not one of conversion, mean")
        raise typer.Exit(EXIT_USER_ERROR)
    request = PlanRequest(
        metric=metric,  # type: ignore[arg-type]
        baseline=baseline,
        mde=mde,
        relative=relative,
        std=std,
        alpha=alpha,
        power=power,
        ratio=ratio,
        units=units,
    )
    try:
        text = plan_text(request)
    except PlanInputError as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None
    out.print(text, highlight=False, soft_wrap=True)


control_commands.register(app)
app.add_typer(shadow_app, name="shadow")
rollout_commands.register(app)
