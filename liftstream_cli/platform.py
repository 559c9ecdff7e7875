"""Start what is not running of the local platform, watch it, and stop it cleanly.

(The recorded state and holds are ``platform_state``; signals and child processes
``processes``.)

``liftstream up`` and ``liftstream demo`` share this: the broker (unless
``LIFTSTREAM_BOOTSTRAP`` names one that answers), the catalog's topics, the stream worker
(``python -m services.stream``), the results service (``python -m services.results``),
the control service (``python -m services.control``), the HTTP collector
(``python -m services.collector``, recorded as ``collector_url``), the rollout
controller (``python -m services.controller``, ``controller_url``; the control service and
it share the operator's webhook secret, ``webhook_secret``; it reads shadow entry gates
from the results service with a service token made per run) and, once the results and
control services answer, the web dashboard (``python -m services.dashboard``,
``dashboard_url``). Once the services answer
``/healthz``, the local ``demo`` tenant and an admin key for this machine exist
(``services.control_domain.tenants.local_admin_key``) and both services accept that key,
the platform is recorded, key included, in ``$LIFTSTREAM_HOME/platform.json`` (mode 0600)
so other commands find it. Stopping goes in reverse order: SIGTERM, a grace period, then SIGKILL;
platform.json is removed.

While it runs, the supervisor heals: ``check()`` (called twice a second by ``liftstream
up``) starts again any part that exited, the broker included, after a back-off, and gives
up on a part only after repeated fast failures (``restarts.py``), raising
``PlatformFailure`` with the part's last log lines. A restarted HTTP service binds the
port it had (so clients and platform.json stay right), the broker its ports and data
directory. Restarts are logged, counted in platform.json (``liftstream status``) and served
as Prometheus metrics on the supervisor's loopback ``metrics_url``.

Scaled out (``liftstream up --brokers 3 --workers 4``): a local Kafka cluster of that many
KRaft nodes (``services.broker.cluster``; parts ``broker-1``.., each healed alone while
the others serve) with every topic on three replicas, ``min.insync.replicas`` 2 and 12
event partitions (``services.broker.topology``; the environment's settings win), and that
many stream workers (``stream-1``..) in one consumer group sharing the partitions.

Longer than 400 lines on purpose: ``PlatformSupervisor`` is one state machine (start,
watch, heal, stop) whose steps share its children and their state; the recorded state
and holds live in ``platform_state``, signals and child processes in ``processes``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from liftstream_cli.local_settings import DEFAULT_TENANT, Settings, platform_state_file
from liftstream_cli.platform_state import (
    PlatformState,
    held_parts,
    release_part,
    running_platform,
    webhook_secret,
)
from liftstream_cli.processes import (
    die_with_parent_hook,
    module_command,
    signals_deferred,
    tail,
    terminate,
)
from liftstream_cli.restarts import GiveUp, Restart, RestartPolicy, RestartTracker
from liftstream_cli.supervisor_metrics import SupervisorMetrics
from services.broker.topology import cluster_settings
from services.control_domain.tenants import local_admin_key, write_private_json
from services.settings import (
    METRICS_TOKEN_ENV,
    SERVICE_TOKEN_ENV,
    WEBHOOK_ALLOW_ENV,
    WEBHOOK_SECRET_ENV,
)

READY_TIMEOUT_S = 180.0
#: Most local brokers ``liftstream up --brokers`` starts.
MAX_BROKERS = 9
KEY_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0
_POLL_S = 0.3
LOOPBACK = "127.0.0.0/8,::1"


class PlatformFailure(RuntimeError):
    """A part of the platform did not start, or died while running."""


@dataclass
class _Child:
    name: str
    description: str
    process: subprocess.Popen[bytes]
    log_file: Path
    log_offset: int  # where this run's output starts in the (appended) log file
    #: How to start it again: the command, given the port to bind (HTTP services).
    command: Callable[[int], list[str]]
    env: dict[str, str]
    #: HTTP services: the name in their ``<name> ready at URL`` line, and the port they got.
    announced_name: str = ""
    port: int = 0
    started_at: float = field(default_factory=time.monotonic)
    tracker: RestartTracker = field(default_factory=RestartTracker)
    #: Set while the part is down and waiting for its back-off to pass.
    pending: Restart | None = None


class PlatformSupervisor:
    """Starts the platform's processes, notices when one dies, stops them all."""

    def __init__(
        self,
        settings: Settings,
        console: Console,
        policy: RestartPolicy | None = None,
        *,
        brokers: int = 1,
        workers: int = 1,
    ) -> None:
        if not 1 <= brokers <= MAX_BROKERS:
            raise PlatformFailure(f"--brokers: must be between 1 and {MAX_BROKERS}, got {brokers}")
        if workers < 1:
            raise PlatformFailure(f"--workers: must be at least 1, got {workers}")
        self.settings = settings
        self.console = console
        self.log_dir = settings.home / "logs"
        self.state: PlatformState | None = None
        self.policy = policy or RestartPolicy()
        self.brokers = brokers
        self.workers = workers
        #: The local Kafka nodes this supervisor started, by part name ("broker", or
        #: "broker-1".. of a cluster): ``services.broker.LocalKafka`` objects.
        self._brokers: dict[str, Any] = {}
        self._cluster: Any = None  # services.broker.LocalKafkaCluster of a local cluster
        self._broker_trackers: dict[str, RestartTracker] = {}
        self._partitions = 0
        self._children: list[_Child] = []
        self._metrics: SupervisorMetrics | None = None
        self._metrics_token = os.environ.get(METRICS_TOKEN_ENV) or secrets.token_urlsafe(24)
        self._service_token = os.environ.get(SERVICE_TOKEN_ENV) or secrets.token_urlsafe(24)

    def start(self) -> PlatformState:
        """Start every part; on any failure stop what was started and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PlatformState:
        from services.broker import ensure_topics, wait_for_broker
        from services.broker.topics import end_offsets

        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for part in held_parts(self.settings.home):  # holds belong to the run that set them
            release_part(self.settings.home, part)
        bootstrap = os.environ.get("LIFTSTREAM_BOOTSTRAP", "")
        if bootstrap:
            self.console.print(f"using the Kafka broker at {bootstrap} (LIFTSTREAM_BOOTSTRAP)")
            if self.brokers > 1:
                self.console.print(
                    f"--brokers {self.brokers} ignored: the platform uses LIFTSTREAM_BOOTSTRAP "
                    "(replication from LIFTSTREAM_REPLICATION_FACTOR)"
                )
                self.brokers = 1
            if not wait_for_broker(bootstrap, timeout=15.0):
                raise PlatformFailure(f"LIFTSTREAM_BOOTSTRAP={bootstrap} does not answer")
        else:
            bootstrap = self._start_brokers()
            self.settings = cluster_settings(self.settings, self.brokers)
        ensure_topics(bootstrap, self.settings.topics)
        exposures = self.settings.topics.exposures
        partitions = len(end_offsets(bootstrap, [exposures])[exposures])
        if self.workers > partitions:
            raise PlatformFailure(
                f"--workers {self.workers}: more than the {partitions} partitions of "
                f"{exposures}; the extra workers would get none (set LIFTSTREAM_PARTITIONS "
                "for a new namespace)"
            )
        self._partitions = partitions

        env = self._child_env(bootstrap)
        # Each worker's web server (health, metrics) takes a free port and announces it;
        # a restarted worker binds the same one again.
        workers = [
            self._spawn(
                name,
                "the stream worker" if self.workers == 1 else f"the stream worker {name}",
                lambda port: module_command("services.stream", "--web-port", str(port)),
                env,
                announced_name="stream worker",
            )
            for name in self._worker_names()
        ]
        db = str(self.settings.duckdb_path)
        results = self._spawn(
            "results",
            "the results service",
            lambda port: module_command("services.results", "--port", str(port), "--db", db),
            env,
            announced_name="results service",
        )
        control_db = str(self.settings.home / "control.duckdb")
        control = self._spawn(
            "control",
            "the control service",
            lambda port: module_command(
                "services.control", "--port", str(port), "--db", control_db
            ),
            env,
            announced_name="control service",
        )
        collector = self._spawn(
            "collector",
            "the HTTP collector",
            lambda port: module_command("services.collector", "--port", str(port)),
            env,
            announced_name="collector",
        )
        # Each service binds port 0 and announces the port it got: no window in which
        # another process can take a port chosen here.
        with self.console.status("waiting for the results and control services to answer"):
            results_url = self._wait_for_announced_url(results)
            # The controller asks the results service for rollouts' shadow entry gates.
            controller = self._spawn(
                "controller",
                "the rollout controller",
                lambda port: module_command("services.controller", "--port", str(port)),
                {**env, "LIFTSTREAM_CONTROLLER_RESULTS_URL": results_url},
                announced_name="controller",
            )
            control_url = self._wait_for_announced_url(control)
            collector_url = self._wait_for_announced_url(collector)
            controller_url = self._wait_for_announced_url(controller)
            stream_urls = {worker.name: self._wait_for_announced_url(worker) for worker in workers}
            self._wait_until_healthy(results_url, "results")
            self._wait_until_healthy(control_url, "control")
            self._wait_until_healthy(collector_url, "collector")
            self._wait_until_healthy(controller_url, "controller")
        # The dashboard asks the results and control services, so it starts once they answer.
        dashboard_env = {
            **env,
            "LIFTSTREAM_RESULTS_URL": results_url,
            "LIFTSTREAM_CONTROL_URL": control_url,
        }
        dashboard = self._spawn(
            "dashboard",
            "the web dashboard",
            lambda port: module_command("services.dashboard", "--port", str(port)),
            dashboard_env,
            announced_name="dashboard",
        )
        with self.console.status("waiting for the dashboard to answer"):
            dashboard_url = self._wait_for_announced_url(dashboard)
            self._wait_until_healthy(dashboard_url, "dashboard")
        with self.console.status(f"preparing the local '{DEFAULT_TENANT}' tenant's admin key"):
            api_key = local_admin_key(replace(self.settings, bootstrap=bootstrap), DEFAULT_TENANT)
            self._wait_until_key_accepted(results_url, control_url, api_key)

        self._metrics = SupervisorMetrics.serve([*self._part_names()])
        self.state = PlatformState(
            bootstrap=bootstrap,
            results_url=results_url,
            namespace=self.settings.namespace,
            pids=self._pids(),
            logs=self._logs(),
            started_at=datetime.now(UTC).isoformat(),
            control_url=control_url,
            api_key=api_key,
            tenant=DEFAULT_TENANT,
            collector_url=collector_url,
            restarts=self._restarts(),
            metrics_url=self._metrics.url,
            metrics_token=self._metrics_token,
            controller_url=controller_url,
            dashboard_url=dashboard_url,
            brokers=len(self._brokers),
            workers=self.workers,
            partitions=self._partitions,
            replication_factor=self.settings.replication_factor,
            stream_urls=stream_urls,
        )
        self._record_state()
        return self.state

    def _start_brokers(self) -> str:
        """Start the local broker (or cluster); return its bootstrap address."""
        from services.broker import LocalKafka
        from services.broker.cluster import LocalKafkaCluster

        if self.brokers == 1:
            kafka_dir = self.settings.home / "kafka"
            with self.console.status(f"starting the Kafka broker (data in {kafka_dir})"):
                broker = LocalKafka(kafka_dir)
                self._brokers["broker"] = broker
                broker.start()
            self.console.print(f"Kafka broker ready at {broker.bootstrap}")
            self._broker_trackers["broker"] = RestartTracker(self.policy)
            return str(broker.bootstrap)
        cluster_dir = self.settings.home / f"kafka-cluster-{self.brokers}"
        with self.console.status(
            f"starting a Kafka cluster of {self.brokers} brokers (data in {cluster_dir})"
        ):
            self._cluster = LocalKafkaCluster(cluster_dir, self.brokers)
            self._cluster.start(timeout=READY_TIMEOUT_S)
        for index, node in enumerate(self._cluster.nodes, start=1):
            self._brokers[f"broker-{index}"] = node
            self._broker_trackers[f"broker-{index}"] = RestartTracker(self.policy)
        self.console.print(
            f"Kafka cluster of {self.brokers} brokers ready at {self._cluster.bootstrap}"
        )
        return str(self._cluster.bootstrap)

    def _worker_names(self) -> list[str]:
        if self.workers == 1:
            return ["stream"]
        return [f"stream-{index}" for index in range(1, self.workers + 1)]

    def _part_names(self) -> list[str]:
        return [*self._brokers, *self._child_names()]

    def _child_names(self) -> list[str]:
        return [child.name for child in self._children]

    def _pids(self) -> dict[str, int]:
        pids = {"supervisor": os.getpid()}
        for name, broker in self._brokers.items():
            if broker.process is not None:
                pids[name] = broker.process.pid
        pids.update({child.name: child.process.pid for child in self._children})
        return pids

    def _logs(self) -> dict[str, str]:
        logs = {child.name: str(child.log_file) for child in self._children}
        logs.update({name: str(broker.log_file) for name, broker in self._brokers.items()})
        return logs

    def _restarts(self) -> dict[str, int]:
        restarts = {child.name: child.tracker.restarts for child in self._children}
        restarts.update({name: t.restarts for name, t in self._broker_trackers.items()})
        return restarts

    def _record_state(self) -> None:
        if self.state is None:
            return
        self.state = replace(self.state, pids=self._pids(), restarts=self._restarts())
        write_private_json(platform_state_file(), self.state.__dict__)

    def _child_env(self, bootstrap: str) -> dict[str, str]:
        return {
            **os.environ,
            "LIFTSTREAM_BOOTSTRAP": bootstrap,
            "LIFTSTREAM_NAMESPACE": self.settings.namespace,
            "LIFTSTREAM_PARTITIONS": str(self.settings.partitions),
            "LIFTSTREAM_REPLICATION_FACTOR": str(self.settings.replication_factor),
            "LIFTSTREAM_HOME": str(self.settings.home),
            METRICS_TOKEN_ENV: self._metrics_token,
            WEBHOOK_SECRET_ENV: webhook_secret(self.settings.home),
            SERVICE_TOKEN_ENV: self._service_token,
            # The local platform's webhook receivers are local: loopback is allowed.
            WEBHOOK_ALLOW_ENV: os.environ.get(WEBHOOK_ALLOW_ENV) or LOOPBACK,
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(
        self,
        name: str,
        description: str,
        command: Callable[[int], list[str]],
        env: dict[str, str],
        announced_name: str = "",
    ) -> _Child:
        log_file = self.log_dir / f"{name}.log"
        process, log_offset = self._launch(command(0), env, log_file)
        child = _Child(
            name, description, process, log_file, log_offset, command, env, announced_name
        )
        self._children.append(child)
        return child

    @staticmethod
    def _launch(
        command: list[str], env: dict[str, str], log_file: Path
    ) -> tuple[subprocess.Popen[bytes], int]:
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
                preexec_fn=die_with_parent_hook(),
            )
        return process, log_offset

    def _wait_for_announced_url(self, child: _Child) -> str:
        """The URL in the child's ``<announced_name> ready at URL`` line of this run's log;
        the port it got is kept, so that a restart binds it again."""
        url = self._poll(
            lambda: _announced_url(child),
            f"{child.description} did not announce its URL",
            child.log_file,
        )
        child.port = int(url.rsplit(":", 1)[1])
        return str(url)

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
        """Heal: start again what exited once its back-off has passed; raise
        ``PlatformFailure`` (with the part's last log lines) for a part given up on.
        A part an operator holds (``liftstream hold``) is left down until released."""
        now = time.monotonic()
        held = held_parts(self.settings.home)
        for name, broker in self._brokers.items():
            exited = broker.process is not None and broker.process.poll() is not None
            if exited and name not in held:
                self._restart_broker(name, broker)
        for child in self._children:
            if child.pending is None:
                code = child.process.poll()
                if code is None:
                    continue
                child.pending = self._after_exit(
                    child.tracker,
                    child.description,
                    code,
                    now - child.started_at,
                    child.log_file,
                    child.log_offset,
                )
                self._count_exit(child.name)
            if child.pending is not None and now >= child.pending.at and child.name not in held:
                self._restart(child)

    def _after_exit(
        self,
        tracker: RestartTracker,
        description: str,
        code: int | None,
        ran_s: float,
        log_file: Path,
        log_offset: int = 0,
    ) -> Restart:
        decision = tracker.exited(time.monotonic())
        if isinstance(decision, GiveUp):
            raise PlatformFailure(
                f"{description} exited {decision.exits} times within "
                f"{decision.window_s:.0f}s (last exit code {code}); giving up. "
                f"Last lines of {log_file}:\n{tail(log_file, offset=log_offset)}"
            )
        wait_s = max(0.0, decision.at - time.monotonic())
        self.console.print(
            f"{description} exited (code {code}) after {ran_s:.1f}s; starting it again in "
            f"{wait_s:.1f}s (exit {decision.streak} within {tracker.policy.window_s:.0f}s)"
        )
        return decision

    def _restart(self, child: _Child) -> None:
        from services.broker.local import port_is_free

        port = child.port if child.port and port_is_free(child.port) else 0
        child.process, child.log_offset = self._launch(
            child.command(port), child.env, child.log_file
        )
        child.started_at = time.monotonic()
        child.pending = None
        child.tracker.restarted()
        if child.announced_name and port != child.port:
            self._follow_new_port(child)
        self._count_restart(child.name)
        self.console.print(
            f"restarted {child.description} (pid {child.process.pid}, "
            f"restart {child.tracker.restarts})"
        )

    def _follow_new_port(self, child: _Child) -> None:
        """The old port was taken: wait for the new URL and record it for other commands."""
        url = self._wait_for_announced_url(child)
        if self.state is not None:
            field_name = {
                "results": "results_url",
                "control": "control_url",
                "controller": "controller_url",
                "dashboard": "dashboard_url",
            }.get(child.name, "collector_url")
            self.state = replace(self.state, **{field_name: url})

    def _restart_broker(self, name: str, broker: Any) -> None:
        """Start a broker again on its ports and data directory (blocking: nothing flows
        without a lone broker; a cluster's node rejoins its replicas)."""
        from services.broker.local import BrokerError

        description = "the Kafka broker" if name == "broker" else f"the Kafka {name}"
        tracker = self._broker_trackers[name]
        code = broker.process.returncode
        restart = self._after_exit(
            tracker, description, code, time.monotonic() - broker.started_at, broker.log_file
        )
        self._count_exit(name)
        time.sleep(max(0.0, restart.at - time.monotonic()))
        try:
            broker.start()
        except BrokerError as error:
            self.console.print(f"{description} did not start again: {error}")
            return  # its process has exited: the next check counts it and backs off
        tracker.restarted()
        self._count_restart(name)
        self.console.print(f"restarted {description} at {broker.bootstrap}")

    def _count_exit(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.part_down(name)

    def _count_restart(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.restarted(name)
        self._record_state()

    def stop(self) -> None:
        """Stop every part, newest first; remove platform.json. Safe to call twice."""
        with signals_deferred():
            if self.state is not None:
                with contextlib.suppress(FileNotFoundError):
                    platform_state_file().unlink()
                self.state = None
            for child in reversed(self._children):
                if child.process.poll() is None:
                    self.console.print(f"stopping {child.description}")
                terminate(child.process, STOP_GRACE_S)
            self._children.clear()
            running = [
                name
                for name, broker in self._brokers.items()
                if broker.process is not None and broker.process.poll() is None
            ]
            if running:
                self.console.print(f"stopping the Kafka {', '.join(running)}")
            if self._cluster is not None:
                self._cluster.stop(timeout=STOP_GRACE_S)
            for broker in self._brokers.values():
                broker.stop(timeout=STOP_GRACE_S)
            self._brokers.clear()
            self._cluster = None
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None

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


def _announced_url(child: _Child) -> str | None:
    pattern = re.compile(
        rb"^" + re.escape(child.announced_name.encode()) + rb" ready at (http://\S+)$", re.M
    )
    with child.log_file.open("rb") as log:
        log.seek(child.log_offset)
        found = pattern.search(log.read())
    return found.group(1).decode() if found else None


def _answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False
