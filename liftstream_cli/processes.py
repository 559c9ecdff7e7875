"""The local supervisor's processes: signals, starting children, stopping them.

``shutdown_on_signals`` turns SIGTERM/SIGINT into ``ShutdownRequested``;
``signals_deferred`` holds them while stopping; ``terminate`` stops a child's process
group (SIGTERM, a grace period, SIGKILL); ``die_with_parent_hook`` makes a child die with
the supervisor on Linux; ``module_command`` and ``tail`` build a child's command line and
read the end of its log.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType


class ShutdownRequested(BaseException):
    """SIGTERM or SIGINT arrived; unwinds to the code that stops the platform.

    A ``BaseException``, like ``KeyboardInterrupt``, so that a library's ``except
    Exception`` cannot swallow it.
    """


@contextlib.contextmanager
def shutdown_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``ShutdownRequested`` in the main thread while inside."""

    def request_shutdown(signum: int, _frame: FrameType | None) -> None:
        raise ShutdownRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_shutdown) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while stopping, so a second Ctrl-C cannot strand a process."""
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to manage
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    # The group may hold stragglers even when the leader is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


_PR_SET_PDEATHSIG = 1


def die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook giving the child SIGTERM if the supervisor dies (Linux), else None.

    libc is loaded here, in the parent, so the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return die_with_parent


def module_command(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


def tail(path: Path, lines: int = 20, offset: int = 0) -> str:
    """The last ``lines`` of ``path`` from ``offset`` on (this run's output)."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"
