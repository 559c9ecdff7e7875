"""What the CLI's control-plane commands share: a client of the control service whose
errors become a message and exit code 1 (``control_client``), and printing its answers (a
``schemas.control_api`` model or a list of them) as JSON or as text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from pydantic_core import to_jsonable_python

from liftstream_cli.common import EXIT_USER_ERROR, USER_ERRORS
from liftstream_cli.console import fail, out
from liftstream_cli.control_api import ControlApi
from liftstream_cli.local_settings import load_settings
from schemas.control_api import HistoryEntry

Answer = TypeVar("Answer")


@contextmanager
def control_client() -> Iterator[ControlApi]:
    """A client of the control service; errors become a message and exit code 1."""
    try:
        settings = load_settings()
        with ControlApi(settings.control_url, settings.api_key) as api:
            yield api
    except USER_ERRORS as error:
        fail(str(error))
        raise typer.Exit(EXIT_USER_ERROR) from None


def print_answer(answer: Answer, as_json: bool, render: Callable[[Answer], None]) -> None:
    """``answer`` (a model or a list of them) as JSON, or as ``render`` shows it."""
    if as_json:
        typer.echo(json.dumps(to_jsonable_python(answer), indent=2))
    else:
        render(answer)


def each(render: Callable[[Answer], None]) -> Callable[[list[Answer]], None]:
    def render_all(answers: list[Answer]) -> None:
        for answer in answers:
            render(answer)

    return render_all


def render_history(entries: list[HistoryEntry]) -> None:
    for entry in entries:
        version = f" v{entry.version}" if entry.version else ""
        occurred_at = to_jsonable_python(entry.occurred_at)
        out.print(
            f"[bold]{occurred_at}[/bold]  {entry.type}{version}  by "
            f"{entry.author}" + (f"  ({entry.reason})" if entry.reason else ""),
            highlight=False,
        )
        for change in entry.diff:
            if change.before is None and isinstance(change.after, dict):
                out.print("    created", highlight=False)
                continue
            label = change.field or "(all)"
            before, after = json.dumps(change.before), json.dumps(change.after)
            out.print(f"    {label}: {before} -> {after}", highlight=False, markup=False)
