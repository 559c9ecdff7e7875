"""Shadow tests in the SDK: run a candidate beside the code it may replace, off the caller's path.

    price = client.shadow(
        "pricing-v2",
        primary=lambda: old_price(cart),
        candidate=lambda: new_price(cart),
        sample=0.05,
    )

In the spirit of GitHub's Scientist: the caller always gets the primary's result (or its
exception), measured on the caller's thread. On a ``sample`` of calls the candidate is
handed to a small pool of worker threads; on a ``noise`` share the primary itself runs
again there (Diffy's primary/secondary), which measures how often the primary disagrees
with itself: the noise floor. A worker compares the two (``compare``, ``==`` by default;
two exceptions agree when their classes and arguments do) and logs one outcome event,
``schemas.shadow.SHADOW_EVENT``, whose properties are a ``ShadowObservation``. The
observations reach the client in bursts (every ``FLUSH_INTERVAL_S`` or
``FLUSH_OBSERVATIONS``), each with the time it was made: the SDK's sender threads wake
once per burst, not once per shadow, which is what keeps the caller's tail latency down
(``bench/shadow_overhead.py``).

The caller never waits for a shadow: the pool's queue is bounded, and a call that finds
it full drops its shadow and counts it (``ShadowRunner.stats``). A run past ``timeout_s``
is logged as timed out; a worker stuck in one is replaced (at most ``max_abandoned``
times, so a candidate that hangs forever costs threads only up to that bound). The
candidate's exceptions are caught and recorded by class name (never the message, which may
hold user data). The primary's result object is compared as returned: a caller that
mutates it straight away races the comparison.

Observations are spread over ``UNITS_PER_SHADOW`` synthetic units (``shadow:NAME:i``), so
they use several partitions and add no units to any experiment.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from liftstream.errors import InvalidInputError
from schemas.errors import FieldError
from schemas.shadow import MAX_ERROR_NAME_CHARS, MAX_SHADOW_MS

log: Final = logging.getLogger(__name__)

T = TypeVar("T")
#: Logs one observation: (unit id, value, properties, when).
Emit = Callable[[str, float, dict[str, Any], datetime], None]

UNITS_PER_SHADOW: Final = 16
#: Observations are handed to the client in bursts, at most this often (or when this
#: many are waiting): one wake of the SDK's sender per burst, not per observation.
FLUSH_INTERVAL_S: Final = 0.25
FLUSH_OBSERVATIONS: Final = 256
_WATCH_S: Final = 0.05
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}\Z")


@dataclass
class ShadowStats:
    """Counts of one shadow test in this process."""

    candidate_runs: int = 0  # handed to the pool
    secondary_runs: int = 0
    dropped: int = 0  # the queue was full
    logged: int = 0
    timed_out: int = 0
    log_failures: int = 0


@dataclass(frozen=True)
class ShadowPool:
    """Sizes of the pool that runs shadows: ``workers`` threads, a queue of ``max_queue``
    waiting runs, at most ``max_abandoned`` workers replaced after a timeout; ``seed``
    makes the sampling reproducible (tests)."""

    workers: int = 2
    max_queue: int = 1000
    max_abandoned: int = 8
    seed: int | None = None


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    ms: float = 0.0


@dataclass
class _Task:
    name: str
    run: str
    other: Callable[[], Any]
    compare: Callable[[Any, Any], Any]
    primary: _Outcome
    timeout_s: float
    deadline: float = 0.0
    replaced: bool = False  # its worker was replaced by the watchdog
    _claimed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> bool:
        """True for the first of the worker and the watchdog to finish this task."""
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True


def _invalid(name: str, reason: str) -> InvalidInputError:
    return InvalidInputError("invalid shadow", [FieldError(field=name, reason=reason)])


def _share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(name, f"must be a number between 0 and 1, got {value!r}")
    if not 0 <= value <= 1:
        raise _invalid(name, f"must be between 0 and 1, got {value!r}")
    return float(value)


def _error_name(error: BaseException | None) -> str | None:
    return None if error is None else type(error).__qualname__[:MAX_ERROR_NAME_CHARS]


def _ms(seconds: float) -> float:
    return round(min(seconds * 1000.0, MAX_SHADOW_MS), 3)


def _timed(fn: Callable[[], Any]) -> _Outcome:
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as error:
        return _Outcome(error=error, ms=_ms(time.perf_counter() - start))
    return _Outcome(value=value, ms=_ms(time.perf_counter() - start))


class ShadowRunner:
    """Runs shadows for one client: sampling on the caller's thread, the rest in a pool."""

    def __init__(self, emit: Emit, pool: ShadowPool | None = None) -> None:
        pool = pool or ShadowPool()
        if pool.workers < 1 or pool.max_queue < 1 or pool.max_abandoned < 0:
            raise _invalid("shadow_pool", "workers and max_queue must be >= 1")
        self.pool = pool
        self._emit = emit
        # Drawn on callers' threads only, so a seed fixes which calls are sampled.
        self._random = random.Random(pool.seed).random
        self._units = itertools.count()
        #: (name, unit, value, properties, when, timed out), waiting for ``_flush``.
        self._pending: deque[tuple[str, str, float, dict[str, Any], datetime, bool]] = deque()
        self._flushed_at = time.monotonic()
        self._queue: queue.Queue[_Task | None] = queue.Queue(pool.max_queue)
        self._lock = threading.Lock()
        self._running: dict[int, _Task] = {}
        self._workers: list[threading.Thread] = []
        self._abandoned = 0
        self._closed = False
        self._started = False
        self._stop = threading.Event()
        self._names: set[str] = set()
        self.stats: dict[str, ShadowStats] = {}

    def run(
        self,
        name: str,
        primary: Callable[[], T],
        candidate: Callable[[], Any],
        compare: Callable[[Any, Any], Any] | None = None,
        sample: float = 0.05,
        noise: float | None = None,
        timeout_s: float = 1.0,
    ) -> T:
        """The primary's result (or exception); maybe a shadow run of the candidate or of
        the primary again, queued for the pool. ``noise`` defaults to ``sample / 2``."""
        if name not in self._names:
            self._check(name, primary, candidate)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not 0 < timeout_s <= MAX_SHADOW_MS / 1000
        ):
            raise _invalid("timeout_s", f"must be > 0 and at most 3600 s, got {timeout_s!r}")
        candidate_share = _share("sample", sample)
        noise_share = candidate_share / 2 if noise is None else _share("noise", noise)
        if candidate_share + noise_share > 1:
            raise _invalid("noise", "sample + noise must be at most 1")
        draw = self._random()
        if draw >= candidate_share + noise_share or self._closed:
            return primary()
        run = "candidate" if draw < candidate_share else "secondary"
        observed = _timed(primary)
        self._submit(
            _Task(
                name,
                run,
                candidate if run == "candidate" else primary,
                compare or operator.eq,
                observed,
                timeout_s,
            )
        )
        if observed.error is not None:
            raise observed.error
        return observed.value  # type: ignore[no-any-return]

    def _check(self, name: str, primary: Callable[[], Any], candidate: Callable[[], Any]) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise _invalid("name", f"{name!r} is not a key (a-z, 0-9, '_', '.', '-'; at most 100)")
        for label, fn in (("primary", primary), ("candidate", candidate)):
            if not callable(fn):
                raise _invalid(label, "must be a callable taking no arguments")
        with self._lock:
            self._names.add(name)
            self.stats.setdefault(name, ShadowStats())

    def _submit(self, task: _Task) -> None:
        stats = self.stats[task.name]
        if not self._started:
            self._start()
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            with self._lock:
                stats.dropped += 1
            return
        with self._lock:
            if task.run == "candidate":
                stats.candidate_runs += 1
            else:
                stats.secondary_runs += 1

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            for _ in range(self.pool.workers):
                self._spawn()
            threading.Thread(
                target=self._watch, name="liftstream-shadow-watch", daemon=True
            ).start()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, name="liftstream-shadow", daemon=True)
        self._workers.append(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            task = self._queue.get()
            if task is None:
                return
            task.deadline = time.monotonic() + task.timeout_s
            with self._lock:
                self._running[me] = task
            other = _timed(task.other)
            with self._lock:
                self._running.pop(me, None)
            if task.claim():
                if other.ms > task.timeout_s * 1000:
                    self._log(task, None)
                else:
                    self._log(task, other)
            if task.replaced:
                return  # the watchdog replaced this worker while it was stuck

    def _watch(self) -> None:
        while not self._stop.wait(_WATCH_S):
            now = time.monotonic()
            if self._pending and (
                now - self._flushed_at >= FLUSH_INTERVAL_S
                or len(self._pending) >= FLUSH_OBSERVATIONS
            ):
                self._flush()
            with self._lock:
                late = [(ident, t) for ident, t in self._running.items() if now > t.deadline]
            for ident, task in late:
                if not task.claim():
                    continue
                self._log(task, None)
                with self._lock:
                    self._running.pop(ident, None)
                    if self._abandoned < self.pool.max_abandoned and not self._closed:
                        self._abandoned += 1
                        task.replaced = True
                        self._spawn()

    def _log(self, task: _Task, other: _Outcome | None) -> None:
        """Compare and log one observation; ``other`` None: it timed out."""
        primary = task.primary
        match: bool | None = None
        compare_error: str | None = None
        if other is not None:
            if primary.error is not None or other.error is not None:
                match = (
                    primary.error is not None
                    and other.error is not None
                    and type(primary.error) is type(other.error)
                    and primary.error.args == other.error.args
                )
            else:
                try:
                    match = bool(task.compare(primary.value, other.value))
                except Exception as error:
                    compare_error = _error_name(error)
        properties: dict[str, Any] = {
            "shadow": task.name,
            "run": task.run,
            "match": match,
            "primary_ms": primary.ms,
            "other_ms": None if other is None else other.ms,
            "primary_error": _error_name(primary.error),
            "other_error": None if other is None else _error_name(other.error),
            "timed_out": other is None,
            "compare_error": compare_error,
        }
        unit = f"shadow:{task.name}:{next(self._units) % UNITS_PER_SHADOW}"
        value = 1.0 if match is False else 0.0
        self._pending.append((task.name, unit, value, properties, datetime.now(UTC), other is None))

    def _flush(self) -> None:
        """Hand every waiting observation to the client (``deque.popleft`` is atomic, so
        the watchdog and ``wait_idle`` may both flush: each observation goes once)."""
        self._flushed_at = time.monotonic()
        while True:
            try:
                name, unit, value, properties, when, timed_out = self._pending.popleft()
            except IndexError:
                return
            stats = self.stats[name]
            try:
                self._emit(unit, value, properties, when)
            except Exception:
                log.warning("could not log an observation of shadow %s", name, exc_info=True)
                with self._lock:
                    stats.log_failures += 1
                continue
            with self._lock:
                stats.logged += 1
                if timed_out:
                    stats.timed_out += 1

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued shadow finished and was handed to the client (tests,
        and ``close``); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                busy = bool(self._running)
            if self._queue.empty() and not busy:
                self._flush()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def close(self, timeout: float | None = None) -> None:
        """Stop sampling, let queued shadows finish for at most ``timeout`` s, stop the
        pool. Shadows still queued then are dropped."""
        self._closed = True
        if not self._started:
            return
        self.wait_idle(timeout)
        self._stop.set()
        self._flush()
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                with self._lock:
                    self.stats[task.name].dropped += 1
        for _ in self._workers:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
