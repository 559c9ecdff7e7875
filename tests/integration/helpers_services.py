"""One HTTP service (``python -m services.X --port 0 ...``) as a subprocess of a test.

``start`` waits until the service prints ``<name> ready at URL`` and answers ``/healthz``;
``stop`` sends SIGTERM (then SIGKILL) and returns the exit code. Output goes to a log file
whose tail failing assertions show.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Self

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Answers while a service does not know an API key yet: 401 (unknown) or, until it has
#: read the control topic to its end after starting, 503 with Retry-After.
KEY_NOT_KNOWN_YET = (httpx.codes.UNAUTHORIZED, httpx.codes.SERVICE_UNAVAILABLE)


class ServiceProcess:
    def __init__(
        self,
        module: str,
        name: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.module = module
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = env
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ready = re.compile(rf"{re.escape(name)} ready at (http://\S+)")

    def start(self, timeout: float = 60.0) -> Self:
        """Start the process; return once it prints its URL and answers ``/healthz``."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", "0", *self.args],
            cwd=REPO_ROOT,
            env={**(self.env or os.environ), "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self.url:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} did not start:\n{self.log_tail()}")
            with self.log_path.open("rb") as log:
                log.seek(offset)
                match = self._ready.search(log.read().decode(errors="replace"))
            if match:
                self.url = match.group(1)
            else:
                time.sleep(0.1)
        while httpx.get(f"{self.url}/healthz").status_code != httpx.codes.OK:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} is not healthy:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.url = ""
        return self.process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
