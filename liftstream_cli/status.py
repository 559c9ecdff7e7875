"""``liftstream status``, ``hold`` and ``release``: the running platform's parts, seen and
steered by an operator.

``status`` reads platform.json, which the supervisor of ``liftstream up`` rewrites whenever
it restarts a part: each part's pid, whether it runs now (or is held), its restarts since
``up`` started and its log; the services' addresses and the supervisor's Prometheus
endpoint. ``hold PART`` asks the supervisor not to start PART again when it exits (for
maintenance, or to keep the broker down for an outage drill); ``release PART`` lets it
heal PART again. A hold is a file in ``$LIFTSTREAM_HOME/holds/``, so it survives the CLI.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from liftstream_cli.console import err, fail, out
from liftstream_cli.local_settings import load_settings

if TYPE_CHECKING:
    from liftstream_cli.platform_state import PlatformState

EXIT_NOT_RUNNING = 1


def status(
    as_json: Annotated[bool, typer.Option("--json", help="The same, as JSON.")] = False,
) -> None:
    """Show the running platform's parts, their restarts and addresses."""
    from liftstream_cli.platform_state import alive, held_parts

    state = _running()
    held = held_parts(load_settings().home)
    parts = {
        name: {
            "pid": pid,
            "running": alive(pid),
            "restarts": state.restarts.get(name, 0),
            "held": name in held,
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
            "controller_url": state.controller_url,
            "metrics_url": state.metrics_url,
            "dashboard_url": state.dashboard_url,
            "stream_urls": state.stream_urls,
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
            "running" if part["running"] else "held" if part["held"] else "down (restarting)",
            str(part["restarts"]),
            str(part["log"]),
        )
    out.print(table)
    out.print(
        f"Kafka {state.bootstrap}  results {state.results_url}  control {state.control_url}  "
        f"collector {state.collector_url}  controller {state.controller_url}\n"
        f"dashboard {state.dashboard_url}  "
        f"supervisor metrics {state.metrics_url}"
        + "".join(f"\n{name} {url}" for name, url in state.stream_urls.items()),
        highlight=False,
    )


def hold(
    part: Annotated[
        str,
        typer.Argument(
            help="broker, stream, results, control, collector or controller (a cluster's "
            "broker-1.., several workers' stream-1..)."
        ),
    ],
) -> None:
    """Do not start PART again when it exits, until `liftstream release PART`."""
    from liftstream_cli.platform_state import hold_part

    state = _running()
    _check_part(part, state.pids)
    hold_part(load_settings().home, part)
    err.print(f"{part} is held: if it exits, the supervisor leaves it down")


def release(
    part: Annotated[str, typer.Argument(help="A part held with `liftstream hold`.")],
) -> None:
    """Let the supervisor start PART again (at once, if it is down)."""
    from liftstream_cli.platform_state import release_part

    state = _running()
    _check_part(part, state.pids)
    release_part(load_settings().home, part)
    err.print(f"{part} is released: the supervisor heals it again")


def _running() -> PlatformState:
    from liftstream_cli.platform_state import running_platform

    state = running_platform()
    if state is None:
        fail("no liftstream platform is running (start one with `liftstream up`)")
        raise typer.Exit(EXIT_NOT_RUNNING)
    return state


def _check_part(part: str, pids: dict[str, int]) -> None:
    parts = sorted(name for name in pids if name != "supervisor")
    if part not in parts:
        fail(f"part: no part named {part!r}; this platform has {', '.join(parts)}")
        raise typer.Exit(EXIT_NOT_RUNNING)
