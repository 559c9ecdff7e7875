"""``liftstream status``: what the running platform is made of, and how it has been healing.

Reads platform.json, which the supervisor of ``liftstream up`` rewrites whenever it
restarts a part: each part's pid, whether it runs now, its restarts since ``up`` started
and its log; the services' addresses and the supervisor's Prometheus endpoint.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from liftstream.cli.console import fail, out

EXIT_NOT_RUNNING = 1


def status(
    as_json: Annotated[bool, typer.Option("--json", help="The same, as JSON.")] = False,
) -> None:
    """Show the running platform's parts, their restarts and addresses."""
    from liftstream.cli.platform import alive, running_platform

    state = running_platform()
    if state is None:
        fail("no liftstream platform is running (start one with `liftstream up`)")
        raise typer.Exit(EXIT_NOT_RUNNING)
    parts = {
        name: {
            "pid": pid,
            "running": alive(pid),
            "restarts": state.restarts.get(name, 0),
            "log": state.logs.get(name, ""),
        }
        for name, pid in state.pids.items()
    }
    if as_json:
        document = {
            "started_at": state.started_at,
            "bootstrap": state.bootstrap,
            "results_url": state.results_url,
            "control_url": state.control_url,
            "collector_url": state.collector_url,
            "metrics_url": state.metrics_url,
            "parts": parts,
        }
        out.print_json(json.dumps(document))
        return
    table = Table(title=f"liftstream, up since {state.started_at}")
    for column in ("part", "pid", "state", "restarts", "log"):
        table.add_column(column)
    for name, part in parts.items():
        table.add_row(
            name,
            str(part["pid"]),
            "running" if part["running"] else "down (restarting)",
            str(part["restarts"]),
            str(part["log"]),
        )
    out.print(table)
    out.print(
        f"Kafka {state.bootstrap}  results {state.results_url}  control {state.control_url}  "
        f"collector {state.collector_url}\nsupervisor metrics {state.metrics_url}",
        highlight=False,
    )
