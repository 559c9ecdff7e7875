"""``liftstream shadow results NAME`` and ``liftstream shadow gate NAME``: a shadow test's
figures and its promotion gate, from the results service.

- ``results NAME [--tenant T] [--since TIME] [--confidence C] [--json]``: mismatch rate,
  noise floor, mismatch beyond noise, error and timeout rates, latency ratios.
- ``gate NAME --max-beyond-noise X [--confidence C] [--json]``: whether the candidate may
  be promoted; exit 0 when allowed, 3 when not (so a script or pipeline can gate on it).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from liftstream_cli.common import (
    EXIT_NOT_ALLOWED,
    JsonOption,
    TenantOption,
    tenant_or_default,
    user_errors,
)
from liftstream_cli.console import fail, out
from liftstream_cli.local_settings import load_settings
from liftstream_cli.results_api import ResultsApi
from schemas.shadow import ShadowGate, ShadowLatency, ShadowRate, ShadowResults

shadow_app = typer.Typer(help="Shadow tests: results and the promotion gate.")

SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only observations from this time (ISO 8601 with a zone)."),
]
ConfidenceOption = Annotated[
    float, typer.Option("--confidence", help="Confidence level of the intervals (0.5, 1).")
]


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3%}" if signed else f"{value:.3%}"


def _rate_row(label: str, rate: ShadowRate) -> list[str]:
    interval = "-" if rate.low is None else f"[{_percent(rate.low)}, {_percent(rate.high)}]"
    return [label, _percent(rate.rate), interval, f"{rate.count:,} / {rate.n:,}"]


def _latency_rows(table: Table, label: str, rows: list[ShadowLatency]) -> None:
    for row in rows:
        name = f"{label} p{round(row.quantile * 100)}"
        if row.ratio is None:
            table.add_row(name, "-", "-", row.reason or "-")
            continue
        table.add_row(
            name,
            f"x {row.ratio:.3f}",
            f"[{row.low:.3f}, {row.high:.3f}]" if row.low is not None else "-",
            f"{row.primary_ms:.2f} ms → {row.other_ms:.2f} ms ({row.pairs:,} pairs)",
        )


def render_shadow(results: ShadowResults) -> Table:
    """The figures as one table: rates with their intervals, then latency ratios."""
    table = Table(
        title=f"shadow test {results.shadow} · tenant {results.tenant_id} · "
        f"{results.observations:,} observations ({results.malformed} malformed) · "
        f"{results.confidence:.0%} intervals",
        box=box.SIMPLE_HEAD,
    )
    for column, justify in (("", "left"), ("rate", "right"), ("interval", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("count / runs")
    table.add_row(*_rate_row("mismatch (candidate)", results.mismatch))
    table.add_row(*_rate_row("noise floor (primary twice)", results.noise))
    beyond = results.beyond_noise
    table.add_row(
        "mismatch beyond noise",
        _percent(beyond.estimate, signed=True),
        "-"
        if beyond.low is None
        else f"[{_percent(beyond.low, True)}, {_percent(beyond.high, True)}]",
        beyond.reason or "",
        style="bold",
    )
    table.add_row(*_rate_row("primary errors", results.primary_errors))
    table.add_row(*_rate_row("candidate errors", results.candidate_errors))
    table.add_row(*_rate_row("candidate timeouts", results.candidate_timeouts))
    _latency_rows(table, "latency candidate/primary", results.latency)
    _latency_rows(table, "latency secondary/primary", results.noise_latency)
    return table


@shadow_app.command("results")
def results(
    name: Annotated[str, typer.Argument(help="The shadow test's name.")],
    tenant: TenantOption = None,
    since: SinceOption = None,
    confidence: ConfidenceOption = 0.95,
    as_json: JsonOption = False,
) -> None:
    """Mismatch rate, noise floor, mismatch beyond noise, errors and latency ratios."""
    settings = load_settings()
    with user_errors(), ResultsApi(settings.results_url, settings.api_key) as api:
        body = api.shadow_json(tenant_or_default(tenant), name, since, confidence)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    out.print(render_shadow(ShadowResults.model_validate(body)))


@shadow_app.command("gate")
def gate(
    name: Annotated[str, typer.Argument(help="The shadow test's name.")],
    max_beyond_noise: Annotated[
        float,
        typer.Option(
            "--max-beyond-noise", help="Largest mismatch rate beyond noise allowed, e.g. 0.001."
        ),
    ],
    tenant: TenantOption = None,
    since: SinceOption = None,
    confidence: ConfidenceOption = 0.95,
    as_json: JsonOption = False,
) -> None:
    """Whether the candidate may be promoted (exit 0) or not yet (exit 3)."""
    settings = load_settings()
    with user_errors(), ResultsApi(settings.results_url, settings.api_key) as api:
        body = api.shadow_gate_json(
            tenant_or_default(tenant), name, max_beyond_noise, since, confidence
        )
    decision = ShadowGate.model_validate(body)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    elif decision.allowed:
        out.print(f"promotion allowed: {decision.reason}", highlight=False)
    else:
        fail(f"promotion not allowed: {decision.reason}")
    if not decision.allowed:
        raise typer.Exit(EXIT_NOT_ALLOWED)
