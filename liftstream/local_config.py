"""Local evaluation of a tenant's configuration snapshot, kept fresh by polling.

``ConfigEvaluator`` compiles a ``ConfigSnapshot`` once: ``variant(key, unit, attributes)``
for experiments (None unless running and not killed; then overrides, holdout, layer,
targeting and the hash, see ``liftstream.targeting``) and ``flag(key, unit, attributes,
default)`` for flags (the off value when killed; overrides, targeting, then the ramp and
the holdback). The tenant-wide holdout applies to experiments, not to flags.

``ConfigPoller`` fetches ``GET /v1/config`` every ``interval_s`` with ``If-None-Match``
(a 304 costs nothing), swaps in a newly compiled evaluator when the snapshot changed, and
keeps serving the last good one while the control API is unreachable or answers badly.
``add_listener(fn)`` calls ``fn(old, new)`` for each snapshot installed (the OpenFeature
provider's configuration-changed events). With ``stream=True`` it listens to
``GET /v1/config/stream`` (Server-Sent Events) instead of polling, so a change (a
rollout's rollback, a kill switch) is served within a fraction of a second; while the
stream is down it polls with the ETag and reconnects with back-off (1 s doubling to
``interval_s``), always serving the last good snapshot.

    with ConfigPoller(control_url, api_key, interval_s=30) as config:
        variant = config.variant("checkout-button", "user-42", {"country": "de"})
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import JsonValue, ValidationError

from liftstream.assignment import TRAFFIC_SALT, PrefixedBucket
from liftstream.targeting import Attributes, ExperimentTargeting, Holdout, compile_rule
from schemas.config import ConfigSnapshot, FlagConfig
from schemas.experiment import Experiment
from schemas.flags import OFF_VARIANT, ON_VARIANT

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0
#: Longer than the server's keep-alive (15 s): a silent stream is a dead one.
STREAM_READ_TIMEOUT_S = 45.0


#: Why a flag served what it did (``FlagEvaluator.resolve``): ``ramp`` is the traffic
#: bucket against the ramp (on, or off outside it), ``holdback`` the bucket in the holdback.
FlagState = Literal["killed", "override", "untargeted", "ramp", "holdback"]


class FlagEvaluator:
    __slots__ = (
        "_bucket",
        "_holdback_from",
        "_killed",
        "_off",
        "_on",
        "_overrides",
        "_ramp",
        "_rule",
        "config",
    )

    def __init__(self, config: FlagConfig) -> None:
        self.config = config
        flag = config.flag
        self._killed = config.killed
        self._on, self._off = flag.on_value, flag.off_value
        self._overrides = dict(flag.overrides)
        self._rule = None if flag.targeting is None else compile_rule(flag.targeting)
        self._ramp = flag.ramp / 100
        #: Buckets at or above this are the holdback (above every bucket when there is none).
        self._holdback_from = 1.0 - flag.holdback / 100 if flag.holdback > 0 else 2.0
        self._bucket = PrefixedBucket(flag.hash_seed, flag.key, TRAFFIC_SALT)

    def value(self, unit_id: str, attributes: Attributes | None = None) -> JsonValue:
        return self._on if self.resolve(unit_id, attributes)[0] else self._off

    def resolve(self, unit_id: str, attributes: Attributes | None = None) -> tuple[bool, FlagState]:
        """Whether the unit gets the on value, and what decided it."""
        if self._killed:
            return False, "killed"
        forced = self._overrides.get(unit_id)
        if forced is not None:
            return forced == "on", "override"
        if self._rule is not None and not self._rule(attributes or {}):
            return False, "untargeted"
        position = self._bucket(unit_id)
        if position >= self._holdback_from:
            return False, "holdback"
        return position < self._ramp, "ramp"

    def exposure(self, on: bool, state: FlagState) -> str | None:
        """The variant (``on``/``off`` of the flag's key) this evaluation is logged as, or
        None when the unit is not one of the flag's comparison: a forced unit, a unit in
        the ramp, one in the holdback; the rest of the rule only while the flag has no
        holdback and is on for someone (nobody on: nothing to compare, and a unit logged
        off before a rollout would count as seen in both arms once it is on)."""
        if state == "override":
            return ON_VARIANT if on else OFF_VARIANT
        if state == "holdback":
            return OFF_VARIANT
        if state != "ramp":
            return None
        if on:
            return ON_VARIANT
        return OFF_VARIANT if self._holdback_from > 1.0 and self._ramp > 0 else None


class ConfigEvaluator:
    """One snapshot, compiled for fast local evaluation."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        holdout = (
            Holdout(snapshot.tenant_id, snapshot.holdout_percent)
            if snapshot.holdout_percent > 0
            else None
        )
        self._experiments = {
            entry.experiment.key: ExperimentTargeting(entry.experiment, holdout)
            for entry in snapshot.experiments
            if entry.experiment.status == "running" and not entry.killed
        }
        self._definitions = {
            entry.experiment.key: entry.experiment for entry in snapshot.experiments
        }
        self._flags = {entry.flag.key: FlagEvaluator(entry) for entry in snapshot.flags}

    def flag_evaluator(self, key: str) -> FlagEvaluator | None:
        return self._flags.get(key)

    def experiment(self, key: str) -> Experiment | None:
        return self._definitions.get(key)

    def is_running(self, key: str) -> bool:
        """Whether experiment ``key`` is running and not killed (it assigns units)."""
        return key in self._experiments

    def variant(self, key: str, unit_id: str, attributes: Attributes | None = None) -> str | None:
        """The unit's variant of experiment ``key``, or None (not in it, or not running)."""
        targeting = self._experiments.get(key)
        return None if targeting is None else targeting.variant(unit_id, attributes)

    def flag(
        self, key: str, unit_id: str, attributes: Attributes | None = None, default: Any = None
    ) -> JsonValue:
        """The flag's value for the unit; ``default`` for a flag the snapshot lacks."""
        evaluator = self._flags.get(key)
        return default if evaluator is None else evaluator.value(unit_id, attributes)


class ConfigPoller:
    """The tenant's snapshot from the control service, refreshed on a background thread."""

    def __init__(
        self,
        control_url: str,
        api_key: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        *,
        stream: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self.stream = stream
        #: True while the config stream is connected.
        self.streaming = False
        #: ``time.time()`` when the current snapshot was installed.
        self.installed_at: float | None = None
        self._response: httpx.Response | None = None
        self._http = httpx.Client(
            base_url=control_url.rstrip("/"),
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
        )
        self._evaluator: ConfigEvaluator | None = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.fetches = 0
        self._listeners: list[Callable[[ConfigEvaluator | None, ConfigEvaluator], None]] = []

    def add_listener(
        self, listener: Callable[[ConfigEvaluator | None, ConfigEvaluator], None]
    ) -> None:
        """Call ``listener(old, new)`` (on the fetching thread) each time a new snapshot
        is installed; a listener that raises is logged and does not stop the others."""
        self._listeners.append(listener)

    def remove_listener(
        self, listener: Callable[[ConfigEvaluator | None, ConfigEvaluator], None]
    ) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _install(self, evaluator: ConfigEvaluator) -> None:
        old, self._evaluator = self._evaluator, evaluator
        self.installed_at = time.time()
        for listener in list(self._listeners):
            try:
                listener(old, evaluator)
            except Exception:
                log.exception("a configuration listener failed")

    @property
    def evaluator(self) -> ConfigEvaluator | None:
        """The last good snapshot, compiled; None until one was fetched."""
        return self._evaluator

    def refresh(self) -> bool:
        """Fetch now; True if a new snapshot was installed. Never raises for a bad answer."""
        headers = {"If-None-Match": self._etag} if self._etag else {}
        self.fetches += 1
        try:
            response = self._http.get("/v1/config", headers=headers)
        except httpx.HTTPError as error:
            return self._failed(f"the control API did not answer: {error}")
        if response.status_code == httpx.codes.NOT_MODIFIED:
            self.last_error = None
            return False
        if response.status_code != httpx.codes.OK:
            return self._failed(f"the control API answered {response.status_code}: {response.text}")
        return self._install_body(response.content, response.headers.get("etag"))

    def _install_body(self, body: bytes | str, etag: str | None) -> bool:
        try:
            evaluator = ConfigEvaluator(ConfigSnapshot.model_validate_json(body))
        except ValidationError as error:
            return self._failed(f"the control API sent an invalid snapshot: {error}")
        self._etag = etag
        self._install(evaluator)
        self.last_error = None
        return True

    def _failed(self, reason: str) -> bool:
        self.last_error = reason
        log.warning("%s; keeping the last good configuration", reason)
        return False

    def start(self) -> ConfigPoller:
        """Fetch once now, then every ``interval_s`` on a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="liftstream-config", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        if self.stream:
            self._run_stream()
            return
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def _run_stream(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 1.0
            except (httpx.HTTPError, ValueError, OSError) as error:
                if self._stop.is_set():
                    return  # stop() closed the stream
                self._failed(f"the config stream broke: {error}")
            self.streaming = False
            if self._stop.wait(backoff):
                return
            self.refresh()  # the ETag fallback while the stream is down
            backoff = min(max(self.interval_s, 1.0), backoff * 2)

    def _listen(self) -> None:
        """Read the stream until it ends, installing each snapshot it sends."""
        timeout = httpx.Timeout(5.0, read=STREAM_READ_TIMEOUT_S)
        with self._http.stream("GET", "/v1/config/stream", timeout=timeout) as response:
            if response.status_code != httpx.codes.OK:
                response.read()
                raise ValueError(f"answered {response.status_code}: {response.text[:200]}")
            self._response = response
            self.streaming = True
            kind, etag, data = "message", None, []
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    if kind == "config" and data:
                        self._install_body("\n".join(data), etag)
                    kind, etag, data = "message", None, []
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "id":
                        etag = value
                    elif name == "data":
                        data.append(value)

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # closing from another thread: best effort
                response.close()
        if self._thread is not None:
            self._thread.join(5.0 if self.stream else self.interval_s + 10)
        self._http.close()

    def __enter__(self) -> ConfigPoller:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def variant(self, key: str, unit_id: str, attributes: Attributes | None = None) -> str | None:
        evaluator = self._evaluator
        return None if evaluator is None else evaluator.variant(key, unit_id, attributes)

    def flag(
        self, key: str, unit_id: str, attributes: Attributes | None = None, default: Any = None
    ) -> JsonValue:
        evaluator = self._evaluator
        if evaluator is None:
            return default
        return evaluator.flag(key, unit_id, attributes, default)
