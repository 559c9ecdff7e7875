"""The CLI's two rich consoles: results on stdout, progress and errors on stderr."""

from __future__ import annotations

from rich.console import Console

#: What a command produces (tables, JSON).
out = Console()
#: What it says along the way, and why it failed.
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print an error the user can act on, without markup interpretation or wrapping."""
    err.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
