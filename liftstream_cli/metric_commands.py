"""``liftstream metric apply -f FILE|list|show NAME|history NAME``: metric definitions
through the control service (creating one gives version 1, each changed definition the
next version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from liftstream_cli.common import (
    JsonOption,
    ReasonOption,
    TenantOption,
    tenant_or_default,
    user_errors,
)
from liftstream_cli.console import out
from liftstream_cli.control_cli import control_client, each, print_answer, render_history
from liftstream_cli.yaml_files import load_model_files
from schemas.control_api import MetricState
from schemas.experiment import MetricDefinition

metric_app = typer.Typer(help="Metric definitions: apply, list, show, history.")


def _render_metric(state: MetricState) -> None:
    metric = state.metric
    out.print(
        f"{metric.name} v{state.version}  {metric.type} of {metric.event}  "
        f"{metric.role}, {metric.direction} is better",
        highlight=False,
    )


def _read_metrics(file: Path) -> list[MetricDefinition]:
    """One metric (a mapping) or several (a list of mappings) from a YAML file."""
    with user_errors():
        return load_model_files(file, MetricDefinition, "metric")


@metric_app.command("apply")
def apply_metric(
    file: Annotated[Path, typer.Option("-f", "--file", help="Metric YAML file (one or a list).")],
    tenant: TenantOption = None,
    reason: ReasonOption = "",
) -> None:
    """Create metrics, or define their next version, from a YAML file."""
    metrics = _read_metrics(file)
    with control_client() as api:
        for metric in metrics:
            answer = api.put_metric(tenant_or_default(tenant), metric, reason)
            if not answer.changed:
                out.print(f"{metric.name}: nothing to change", highlight=False)
            _render_metric(answer.metric)


@metric_app.command("list")
def list_metrics(tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """The tenant's metric definitions with their current version."""
    with control_client() as api:
        states = api.metrics(tenant_or_default(tenant))
    print_answer(states, as_json, each(_render_metric))


@metric_app.command("show")
def show_metric(name: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """One metric's current definition."""
    with control_client() as api:
        state = api.metric(tenant_or_default(tenant), name)
    print_answer(state, as_json, _render_metric)


@metric_app.command("history")
def metric_history(name: str, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """Every version of a metric: author, time, reason and diff."""
    with control_client() as api:
        entries = api.history(tenant_or_default(tenant), name, "metrics")
    print_answer(entries, as_json, render_history)
