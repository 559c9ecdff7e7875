"""Start what is not running of the local platform, watch it, and stop it cleanly.

``liftstream up`` and ``liftstream demo`` share this: the broker (unless
``LIFTSTREAM_BOOTSTRAP`` names one that answers), the catalog's topics, the stream worker
(``python -m services.stream``), the results service (``python -m services.results``),
the control service (``python -m services.control``) and the HTTP collector
(``python -m services.collector``, recorded as ``collector_url``). Once the services answer
``/healthz``, the local ``demo`` tenant and an admin key for this machine exist
(``liftstream.tenants.local_admin_key``) and both services accept that key, the platform
is recorded, key included, in ``$LIFTSTREAM_HOME/platform.json`` (mode 0600) so other
commands find it. Stopping goes in reverse order: SIGTERM, a grace period, then SIGKILL;
platform.json is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console

from liftstream.cli.results_api import ResultsApi
from liftstream.settings import (
    DEFAULT_TENANT,
    Settings,
    platform_state_file,
    read_platform_state,
)
from liftstream.tenants import local_admin_key, write_private_json

READY_TIMEOUT_S = 180.0
KEY_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0
_POLL_S = 0.3


class PlatformFailure(RuntimeError):
    """A part of the platform did not start, or died while running."""


class ShutdownRequested(BaseException):
    """SIGTERM or SIGINT arrived; unwinds to the code that stops the platform.

    A ``BaseException``, like ``KeyboardInterrupt``, so that a library's ``except
    Exception`` cannot swallow it.
    """


@dataclass(frozen=True)
class PlatformState:
    """Where a running platform is; what platform.json holds."""

    bootstrap: str
    results_url: str
    namespace: str
    pids: dict[str, int]
    logs: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    control_url: str = ""
    #: The local tenant's admin key, for this machine's CLI.
    api_key: str = ""
    tenant: str = ""
    collector_url: str = ""


def running_platform() -> PlatformState | None:
    """The platform recorded in platform.json if its processes live and it answers."""
    state: dict[str, Any] = read_platform_state()
    try:
        recorded = PlatformState(
            bootstrap=str(state["bootstrap"]),
            results_url=str(state["results_url"]),
            namespace=str(state.get("namespace", "")),
            pids={str(name): int(pid) for name, pid in dict(state["pids"]).items()},
            logs=dict(state.get("logs", {})),
            started_at=str(state.get("started_at", "")),
            control_url=str(state.get("control_url", "")),
            api_key=str(state.get("api_key", "")),
            tenant=str(state.get("tenant", "")),
            collector_url=str(state.get("collector_url", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not recorded.results_url or not recorded.pids:
        return None
    if not all(_alive(pid) for pid in recorded.pids.values()):
        return None
    with ResultsApi(recorded.results_url, timeout_s=3.0) as api:
        return recorded if api.healthy() else None


@dataclass
class _Child:
    name: str
    description: str
    process: subprocess.Popen[bytes]
    log_file: Path
    log_offset: int  # where this run's output starts in the (appended) log file


class PlatformSupervisor:
    """Starts the platform's processes, notices when one dies, stops them all."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.log_dir = settings.home / "logs"
        self.state: PlatformState | None = None
        self._broker: Any = None  # services.broker.LocalKafka when this supervisor started it
        self._children: list[_Child] = []

    def start(self) -> PlatformState:
        """Start every part; on any failure stop what was started and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PlatformState:
        from services.broker import LocalKafka, ensure_topics, wait_for_broker

        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = os.environ.get("LIFTSTREAM_BOOTSTRAP", "")
        if bootstrap:
            self.console.print(f"using the Kafka broker at {bootstrap} (LIFTSTREAM_BOOTSTRAP)")
            if not wait_for_broker(bootstrap, timeout=15.0):
                raise PlatformFailure(f"LIFTSTREAM_BOOTSTRAP={bootstrap} does not answer")
        else:
            kafka_dir = self.settings.home / "kafka"
            with self.console.status(f"starting the Kafka broker (data in {kafka_dir})"):
                self._broker = LocalKafka(kafka_dir)
                self._broker.start()
            bootstrap = self._broker.bootstrap
            self.console.print(f"Kafka broker ready at {bootstrap}")
        ensure_topics(bootstrap, self.settings.topics)

        env = self._child_env(bootstrap)
        self._spawn("stream", "the stream worker", [sys.executable, "-m", "services.stream"], env)
        db = str(self.settings.duckdb_path)
        results = self._spawn(
            "results",
            "the results service",
            [sys.executable, "-m", "services.results", "--port", "0", "--db", db],
            env,
        )
        control_db = str(self.settings.home / "control.duckdb")
        control = self._spawn(
            "control",
            "the control service",
            [sys.executable, "-m", "services.control", "--port", "0", "--db", control_db],
            env,
        )
        collector = self._spawn(
            "collector",
            "the HTTP collector",
            [sys.executable, "-m", "services.collector", "--port", "0"],
            env,
        )
        # Each service binds port 0 and announces the port it got: no window in which
        # another process can take a port chosen here.
        with self.console.status("waiting for the results and control services to answer"):
            results_url = self._wait_for_announced_url(results, "results service")
            control_url = self._wait_for_announced_url(control, "control service")
            collector_url = self._wait_for_announced_url(collector, "collector")
            self._wait_until_healthy(results_url, "results")
            self._wait_until_healthy(control_url, "control")
            self._wait_until_healthy(collector_url, "collector")
        with self.console.status(f"preparing the local '{DEFAULT_TENANT}' tenant's admin key"):
            api_key = local_admin_key(replace(self.settings, bootstrap=bootstrap), DEFAULT_TENANT)
            self._wait_until_key_accepted(results_url, control_url, api_key)

        pids = {"supervisor": os.getpid()}
        if self._broker is not None:
            pids["broker"] = self._broker.process.pid
        pids.update({child.name: child.process.pid for child in self._children})
        logs = {child.name: str(child.log_file) for child in self._children}
        if self._broker is not None:
            logs["broker"] = str(self._broker.log_file)
        self.state = PlatformState(
            bootstrap=bootstrap,
            results_url=results_url,
            namespace=self.settings.namespace,
            pids=pids,
            logs=logs,
            started_at=datetime.now(UTC).isoformat(),
            control_url=control_url,
            api_key=api_key,
            tenant=DEFAULT_TENANT,
            collector_url=collector_url,
        )
        write_private_json(platform_state_file(), self.state.__dict__)
        return self.state

    def _child_env(self, bootstrap: str) -> dict[str, str]:
        return {
            **os.environ,
            "LIFTSTREAM_BOOTSTRAP": bootstrap,
            "LIFTSTREAM_NAMESPACE": self.settings.namespace,
            "LIFTSTREAM_PARTITIONS": str(self.settings.partitions),
            "LIFTSTREAM_HOME": str(self.settings.home),
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(
        self, name: str, description: str, command: list[str], env: dict[str, str]
    ) -> _Child:
        log_file = self.log_dir / f"{name}.log"
        with log_file.open("ab") as log:
            log_offset = log.tell()
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own process group: Ctrl-C reaches the supervisor only, which then
                # stops the parts in order.
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        child = _Child(name, description, process, log_file, log_offset)
        self._children.append(child)
        return child

    def _wait_for_announced_url(self, child: _Child, announced_name: str) -> str:
        """The URL in the child's ``<announced_name> ready at URL`` line of this run's log."""
        pattern = re.compile(
            rb"^" + re.escape(announced_name.encode()) + rb" ready at (http://\S+)$", re.M
        )

        def announced() -> str | None:
            with child.log_file.open("rb") as log:
                log.seek(child.log_offset)
                found = pattern.search(log.read())
            return found.group(1).decode() if found else None

        return self._poll(
            announced, f"{child.description} did not announce its URL", child.log_file
        )

    def _wait_until_healthy(self, url: str, name: str) -> None:
        with httpx.Client(base_url=url, timeout=2.0) as http:
            self._poll(
                lambda: _answers(http, "/healthz") or None,
                f"the {name} service did not answer {url}/healthz",
                self.log_dir / f"{name}.log",
            )

    def _poll(
        self,
        attempt: Callable[[], Any],
        failure: str,
        log_file: Path,
        timeout: float = READY_TIMEOUT_S,
    ) -> Any:
        """``attempt()`` until it returns something; meanwhile fail if a part has died."""
        deadline = time.monotonic() + timeout
        while (result := attempt()) is None:
            self.check()
            if time.monotonic() > deadline:
                raise PlatformFailure(f"{failure} within {timeout:.0f}s; see {log_file}")
            time.sleep(_POLL_S)
        return result

    def _wait_until_key_accepted(self, results_url: str, control_url: str, api_key: str) -> None:
        """Both services learn keys from the control topic; wait until they know this one."""
        checks = [(results_url, "/v1/progress", "results"), (control_url, "/v1/whoami", "control")]
        headers = {"Authorization": f"Bearer {api_key}"}
        for url, path, name in checks:
            with httpx.Client(base_url=url, timeout=2.0, headers=headers) as http:
                self._poll(
                    lambda http=http, path=path: _answers(http, path) or None,  # type: ignore[misc]
                    f"{url} did not accept the local admin key",
                    self.log_dir / f"{name}.log",
                    KEY_TIMEOUT_S,
                )

    def check(self) -> None:
        """Raise ``PlatformFailure`` (with its last log lines) if a part has exited."""
        for child in self._children:
            code = child.process.poll()
            if code is not None:
                raise PlatformFailure(
                    f"{child.description} exited unexpectedly (exit code {code}); "
                    f"last lines of {child.log_file}:\n{_tail(child.log_file)}"
                )
        broker = self._broker
        if broker is not None and broker.process is not None and broker.process.poll() is not None:
            raise PlatformFailure(
                f"the Kafka broker exited unexpectedly (exit code {broker.process.returncode}); "
                f"last lines of {broker.log_file}:\n{_tail(broker.log_file)}"
            )

    def stop(self) -> None:
        """Stop every part, newest first; remove platform.json. Safe to call twice."""
        with _signals_deferred():
            if self.state is not None:
                with contextlib.suppress(FileNotFoundError):
                    platform_state_file().unlink()
                self.state = None
            for child in reversed(self._children):
                if child.process.poll() is None:
                    self.console.print(f"stopping {child.description}")
                _terminate(child.process, STOP_GRACE_S)
            self._children.clear()
            if self._broker is not None:
                if self._broker.process is not None and self._broker.process.poll() is None:
                    self.console.print("stopping the Kafka broker")
                self._broker.stop(timeout=STOP_GRACE_S)
                self._broker = None

    def __enter__(self) -> PlatformState:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class PlatformSession:
    """A platform to use: the running one, or one started for this session."""

    state: PlatformState
    supervisor: PlatformSupervisor | None

    def check(self) -> None:
        if self.supervisor is not None:
            self.supervisor.check()


@contextlib.contextmanager
def platform_session(settings: Settings, console: Console) -> Iterator[PlatformSession]:
    """Use the platform ``liftstream up`` runs, or start one until the block ends."""
    existing = running_platform()
    if existing is not None:
        console.print(f"using the platform running since {existing.started_at}")
        yield PlatformSession(existing, None)
        return
    console.print("no platform is running: starting one for this command")
    supervisor = PlatformSupervisor(settings, console)
    with supervisor as state:
        yield PlatformSession(state, supervisor)


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
def _signals_deferred() -> Iterator[None]:
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


def _terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PR_SET_PDEATHSIG = 1


def _die_with_parent_hook() -> Callable[[], None] | None:
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


def _answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
