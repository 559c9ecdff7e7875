"""Helpers for tests that run ``liftstream`` as a real process (signals, children, output).

- ``LiftstreamProcess``: ``liftstream ARGS`` in its own process group, output to files,
  with ``wait_for_output`` and ``stop`` (SIGTERM, then SIGKILL of the whole group).
- ``processes_of_namespace``: pids of live processes whose environment names the test's
  topic namespace: whatever ``liftstream`` started and left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LIFTSTREAM = [sys.executable, "-m", "liftstream_cli"]


class LiftstreamProcess:
    def __init__(self, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_file = log_dir / "stdout.txt"
        self.stderr_file = log_dir / "stderr.txt"
        with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
            self.process = subprocess.Popen(
                [*LIFTSTREAM, *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {}), "COLUMNS": "160"},
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_file.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"liftstream exited ({self.process.returncode}) before printing {text!r}:\n"
                    f"{self.stdout}\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.stdout}\n{self.stderr}")
            time.sleep(0.5)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """For test cleanup: whatever state it is in, leave nothing of it running."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def processes_of_namespace(namespace: str) -> list[int]:
    """Live processes started with ``LIFTSTREAM_NAMESPACE=<namespace>``, except this one."""
    marker = f"LIFTSTREAM_NAMESPACE={namespace}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, PermissionError, ProcessLookupError, IndexError):
            continue
        if marker in environment and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(namespace: str, timeout: float = 30.0) -> list[int]:
    """The namespace's processes still alive after ``timeout`` (empty when all ended)."""
    deadline = time.monotonic() + timeout
    while (left := processes_of_namespace(namespace)) and time.monotonic() < deadline:
        time.sleep(0.3)
    return left
