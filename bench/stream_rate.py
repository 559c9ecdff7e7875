"""Stream worker throughput beside the raw consume rate, where its time goes, its memory.

``python -m bench.stream_rate [--events 500000] [--repeat 3]`` (broker from
``LIFTSTREAM_BOOTSTRAP``) runs one ``python -m services.stream`` worker several times,
each on a fresh namespace (5 events per unit on average: about 100k units for 500k events):

1. the rate runs (``--repeat``): the events are on the topics first; the baseline is a
   bare aiokafka consumer reading them (``bench.kafka_baseline``) just before the worker
   starts and again just after it stops (their mean: this shared machine's speed drifts
   by a third from minute to minute); the worker's rate is counted from its first
   progress mark to the mark covering the end offsets, so process start-up, the group
   join and the first fetch are excluded (the time from spawn is printed too). The
   median ratio of the runs is the figure;
2. the idle-start run (``--idle-start-events``, 200k): the worker starts on empty
   topics; once its RSS is steady (the idle RSS) py-spy attaches (``record --format
   raw``; cProfile from process start if py-spy is missing), then the events arrive.
   The top functions by own time are printed.

Memory per million units tracked: the first rate run's peak RSS (``VmHWM``) minus the idle
RSS, divided by its units; and the slope of peak RSS between the two runs' unit counts,
which cancels fixed costs such as fetch buffers.

``--batched N``: each rate run is done twice, the same events on single-event messages
and on batch messages (JSON arrays of up to N events of one partition, in the same
order; ``schemas/events.py``), and both rates are printed (in events/s; the raw consume
baseline reads the single-event topics). Progress marks count messages, so a batched
run's event rate is its message rate times the events per message.

``--engines aiokafka,faust --batched N [--single-events M]``: each repeat, back to back,
the bare aiokafka consumer on the events as single-event messages (the baseline), each
engine on batch messages of N (their order reversed every other repeat, so the machine's
drift favours neither), and the ``--single-engines`` (Faust) on M events as single-event
messages; then that repeat's ratios Faust-batched / aiokafka-batched and Faust-batched /
baseline, and their median over the repeats. Compare only ratios of one repeat.

``--engines aiokafka,faust --memory-events 500000,1500000,2500000``: memory per million
units for each engine, on the same events (batch messages with ``--batched``): one run per
event count and engine, and each engine's idle RSS on empty topics; the least-squares slope
of peak RSS over the runs' unit counts is the figure (fixed costs such as fetch and stream
buffers cancel; a few hundred thousand units make the per-unit part dominate), printed
beside (peak - idle) / units of the largest run.
"""

from __future__ import annotations

import argparse
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import orjson
from kafka import KafkaConsumer, TopicPartition

from bench.bulk_produce import Message, produce_bulk
from bench.kafka_baseline import raw_consume_rate
from liftstream.settings import Settings
from schemas.partitioning import partition_for
from services.broker.topics import delete_namespace_topics, ensure_topics

REPO_ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
PUBLISH_INTERVAL = 0.2
EXPERIMENTS = {"checkout": ("control", "treatment"), "banner": ("a", "b", "c")}
OUTCOMES = ("purchase", "page_view", "add_to_cart")
TOP = 15


def bench_messages(settings: Settings, events: int, seed: int = 7) -> tuple[list[Message], int]:
    """About ``events`` events of units that see 1-2 experiments and have 0-6 outcomes,
    in event-time order; returns the messages and the number of units."""
    kinds, units = _generated(events, seed)
    topics = (settings.topics.exposures, settings.topics.outcomes)
    return [(topics[kind], key, value) for kind, key, value in kinds], units


_last_generated: tuple[tuple[int, int], tuple[list[tuple[int, bytes, bytes]], int]] | None = None


def _generated(events: int, seed: int) -> tuple[list[tuple[int, bytes, bytes]], int]:
    """The events of ``bench_messages`` as (0 exposure / 1 outcome, key, value), the last
    size kept so runs of several engines on the same events generate them once."""
    global _last_generated
    if _last_generated is None or _last_generated[0] != (events, seed):
        _last_generated = None  # free the previous size first
        _last_generated = ((events, seed), _generate(events, seed))
    return _last_generated[1]


def _generate(events: int, seed: int) -> tuple[list[tuple[int, bytes, bytes]], int]:
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    timed: list[tuple[float, tuple[int, bytes, bytes]]] = []
    units = 0
    while len(timed) < events:
        unit = f"user-{units:07d}"
        key = f"acme:{unit}".encode()
        units += 1
        at = rng.uniform(0, 86_400)
        for experiment in rng.sample(sorted(EXPERIMENTS), k=rng.randint(1, 2)):
            body = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "tenant_id": "acme",
                "unit_id": unit,
                "timestamp": (start + timedelta(seconds=at)).isoformat(),
                "type": "exposure",
                "experiment_key": experiment,
                "variant_key": rng.choice(EXPERIMENTS[experiment]),
            }
            timed.append((at, (0, key, orjson.dumps(body))))
        for _ in range(rng.randint(0, 6)):
            moment = at + rng.uniform(-600, 3_600)
            event = rng.choice(OUTCOMES)
            body = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "tenant_id": "acme",
                "unit_id": unit,
                "timestamp": (start + timedelta(seconds=moment)).isoformat(),
                "type": "outcome",
                "event": event,
                "value": round(rng.lognormvariate(3, 0.8), 2) if event == "purchase" else 1.0,
            }
            timed.append((moment, (1, key, orjson.dumps(body))))
    timed.sort(key=lambda pair: pair[0])
    return [message for _, message in timed], units


def batched(messages: list[Message], size: int) -> list[Message]:
    """The messages as batch messages of up to ``size`` events of one partition, each
    keyed like its first event (so it lands on that partition), in the same order."""
    open_batches: dict[tuple[str, int], list[Message]] = {}
    placed: list[list[Message]] = []
    for message in messages:
        topic, key, _ = message
        place = (topic, partition_for(key, PARTITIONS))
        batch = open_batches.get(place)
        if batch is None or len(batch) >= size:
            batch = open_batches[place] = []
            placed.append(batch)
        batch.append(message)
    return [
        (batch[0][0], batch[0][1], b"[" + b",".join(value for _, _, value in batch) + b"]")
        for batch in placed
    ]


def fresh_settings(bootstrap: str, label: str, partitions: int = PARTITIONS) -> Settings:
    """A new namespace (topics of ``partitions`` created) and data home."""
    home = Path(tempfile.mkdtemp(prefix=f"liftstream-bench-{label}-"))
    settings = Settings(
        bootstrap=bootstrap,
        namespace=f"bench{label}{uuid.uuid4().hex[:8]}",
        partitions=partitions,
        home=home,
        results_url="",
    )
    ensure_topics(bootstrap, settings.topics)
    return settings


def delete_namespace(settings: Settings) -> None:
    """Delete the namespace's topics (the catalog's and the worker's own, ``<ns>-...``)."""
    delete_namespace_topics(settings.bootstrap, settings.namespace)
    shutil.rmtree(settings.home, ignore_errors=True)


class Worker:
    """``python -m services.stream`` on ``settings``, optionally wrapped (e.g. cProfile)."""

    def __init__(
        self, settings: Settings, wrapper: list[str] | None = None, engine: str | None = None
    ) -> None:
        env = {
            **os.environ,
            **({"LIFTSTREAM_STREAM_ENGINE": engine} if engine else {}),
            "LIFTSTREAM_BOOTSTRAP": settings.bootstrap,
            "LIFTSTREAM_NAMESPACE": settings.namespace,
            "LIFTSTREAM_PARTITIONS": str(settings.partitions),
            "LIFTSTREAM_HOME": str(settings.home),
            "LIFTSTREAM_STREAM_PUBLISH_INTERVAL": str(PUBLISH_INTERVAL),
            "LIFTSTREAM_LOG_LEVEL": "WARNING",
        }
        self.log_path = settings.home / "stream-worker.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.spawned_at = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, *(wrapper or []), "-m", "services.stream"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def memory_kib(self, field: str) -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the worker, in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise RuntimeError(f"/proc/{self.process.pid}/status has no {field}")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
            raise SystemExit("stream worker exited:\n" + "\n".join(tail))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class ProgressFollower:
    """Follows the progress marks on the aggregates topic."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap, enable_auto_commit=False
        )
        partition = TopicPartition(settings.topics.aggregates, 0)
        self._consumer.assign([partition])
        self._consumer.seek_to_beginning(partition)
        self._offsets: dict[bytes, int] = {}

    def processed(self) -> int:
        """Events the latest marks say are fully reflected (topics start at offset 0)."""
        for batch in self._consumer.poll(timeout_ms=100, max_records=10_000).values():
            for record in batch:
                if record.key.startswith(b"progress|"):
                    offsets = orjson.loads(record.value)["next_offsets"]
                    self._offsets[record.key] = sum(offsets.values())
        return sum(self._offsets.values())

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Run:
    first_mark_at: float  # perf_counter seconds
    first_mark_events: int
    done_at: float


def follow_until(worker: Worker, follower: ProgressFollower, total: int, timeout: float) -> Run:
    first_at, first_events = 0.0, 0
    while True:
        done = follower.processed()
        now = time.perf_counter()
        if done and not first_at:
            first_at, first_events = now, done
        if done >= total:
            return Run(first_at, first_events, now)
        worker.check_alive()
        if now - worker.spawned_at > timeout:
            raise SystemExit(f"{done:,} of {total:,} events processed after {timeout:.0f}s")


def wait_until_idle(worker: Worker, settle: float = 3.0, timeout: float = 60.0) -> int:
    """RSS (KiB) of a worker on empty topics once it has not moved by 1 MiB for ``settle`` s."""
    stable_since, last = time.monotonic(), worker.memory_kib("VmRSS")
    while time.monotonic() - stable_since < settle:
        worker.check_alive()
        time.sleep(0.5)
        rss = worker.memory_kib("VmRSS")
        if abs(rss - last) > 1024:
            stable_since, last = time.monotonic(), rss
        if time.perf_counter() - worker.spawned_at > timeout:
            break
    return last


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _function(frame: str) -> str:
    """``name (path/to/file.py:123)`` -> ``name (file.py)``: own time per function."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})" if name else frame


def _own_time(raw: Path) -> list[str]:
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            own[_function(stack.rsplit(";", 1)[-1])] += int(count)
    samples = sum(own.values())
    return [
        f"{100 * count / samples:5.1f}%  {function}" for function, count in own.most_common(TOP)
    ] + [
        f"({samples:,} samples of the worker's busy threads, py-spy --rate 200; the "
        "mypyc-compiled per-event path has no Python frames: its time shows under "
        "StreamWorker._loop)"
    ]


def _cprofile_own_time(output: Path) -> list[str]:
    stats = pstats.Stats(str(output))
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    overall = sum(row[1][2] for row in rows)
    return [
        f"{100 * tottime / overall:5.1f}%  {name} ({Path(path).name}:{line})"
        for (path, line, name), (_, _, tottime, _, _) in rows[:TOP]
    ] + ["(cProfile from process start, own time)"]


@dataclass
class Measured:
    events: int
    units: int
    run: Run
    spawned_at: float
    idle_kib: int
    peak_kib: int
    profile: list[str]
    #: Kafka messages the events were on (0: one event each).
    messages: int = 0


def _event_rate(measured: Measured) -> float | None:
    """Events/s from the first progress mark to the end (marks count messages); None when
    the first mark already covered everything."""
    run = measured.run
    messages = measured.messages or measured.events
    per_message = measured.events / messages
    if run.done_at <= run.first_mark_at:
        return None
    return (messages - run.first_mark_events) * per_message / (run.done_at - run.first_mark_at)


def _rate_from_spawn(measured: Measured) -> float:
    """Events/s from the worker's spawn to the end: start-up included."""
    return measured.events / (measured.run.done_at - measured.spawned_at)


def rate_run(
    bootstrap: str, events: int, timeout: float, batch_size: int = 0, engine: str | None = None
) -> tuple[Measured, list[float]]:
    """Events first, then the worker; also returns the raw consume rate of the same
    topics, measured just before the worker starts and just after it stops. With
    ``batch_size``, the events go on batch messages; ``Measured.events`` stays the
    number of events and ``Measured.messages`` is the number of messages."""
    settings = fresh_settings(bootstrap, "rate")
    try:
        messages, units = bench_messages(settings, events)
        event_count = len(messages)
        if batch_size:
            messages = batched(messages, batch_size)
        total = produce_bulk(bootstrap, messages)
        del messages
        topics = {settings.topics.exposures: PARTITIONS, settings.topics.outcomes: PARTITIONS}
        raw_before = raw_consume_rate(bootstrap, topics)
        worker = Worker(settings, engine=engine)
        follower = ProgressFollower(settings)
        try:
            run = follow_until(worker, follower, total, timeout)
            peak = worker.memory_kib("VmHWM")
        finally:
            follower.close()
            worker.stop()
        raw_after = raw_consume_rate(bootstrap, topics)
    finally:
        delete_namespace(settings)
    raw_rates = [count / seconds for count, seconds in (raw_before, raw_after)]
    measured = Measured(event_count, units, run, worker.spawned_at, 0, peak, [], total)
    return measured, raw_rates


def idle_start_run(bootstrap: str, events: int, timeout: float, profile: bool) -> Measured:
    """The worker first (its idle RSS), then the events, under py-spy if ``profile``."""
    settings = fresh_settings(bootstrap, "idle")
    py_spy = _py_spy() if profile else None
    output = settings.home / ("profile.txt" if py_spy else "profile.pstats")
    wrapper = ["-m", "cProfile", "-o", str(output)] if profile and not py_spy else None
    try:
        messages, units = bench_messages(settings, events, seed=8)
        worker = Worker(settings, wrapper)
        follower = ProgressFollower(settings)
        spy: subprocess.Popen[bytes] | None = None
        try:
            idle = wait_until_idle(worker)
            if py_spy:
                spy = subprocess.Popen(
                    [
                        *(py_spy, "record", "--pid", str(worker.process.pid), "--format"),
                        *("raw", "--output", str(output), "--rate", "200", "--nonblocking"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            total = produce_bulk(bootstrap, messages)
            run = follow_until(worker, follower, total, timeout)
            peak = worker.memory_kib("VmHWM")
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            follower.close()
            worker.stop()
        lines: list[str] = []
        if py_spy:
            lines = _own_time(output)
        elif profile:
            lines = _cprofile_own_time(output)
    finally:
        delete_namespace(settings)
    return Measured(total, units, run, worker.spawned_at, idle, peak, lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_rate")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--idle-start-events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="rate runs (median reported)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument(
        "--batched", type=int, default=0, help="also run on batch messages of N events"
    )
    parser.add_argument(
        "--memory-events",
        default="",
        help="with --engines: memory per million units as the slope of peak RSS over "
        "runs of these event counts (e.g. 500000,1500000,2500000), instead of rate runs",
    )
    parser.add_argument(
        "--engines",
        default="",
        help="compare engines (e.g. aiokafka,faust): each on single-event and, with "
        "--batched, batch messages; only these runs",
    )
    parser.add_argument(
        "--single-engines",
        default="faust",
        help="with --engines and --batched: the engines also run on single-event messages",
    )
    parser.add_argument(
        "--single-events",
        type=int,
        default=0,
        help="events of the single-event runs with --engines (default: --events)",
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("LIFTSTREAM_BOOTSTRAP", "")
    if not bootstrap:
        raise SystemExit("LIFTSTREAM_BOOTSTRAP: set it to a running broker (host:port)")
    for name in ("events", "idle_start_events"):
        if getattr(args, name) < 1000:
            raise SystemExit(
                f"--{name.replace('_', '-')}: at least 1000, got {getattr(args, name)}"
            )

    if args.repeat < 1:
        raise SystemExit(f"--repeat: at least 1, got {args.repeat}")
    if args.memory_events and not args.engines:
        raise SystemExit("--memory-events: needs --engines")
    if args.engines:
        if args.memory_events:
            compare_memory(bootstrap, args)
        else:
            compare_engines(bootstrap, args)
        return
    runs = []
    batched_rates: list[tuple[Measured, Measured]] = []
    for _ in range(args.repeat):
        runs.append(rate_run(bootstrap, args.events, args.timeout))
        if args.batched:
            single = runs[-1][0]
            measured, _ = rate_run(bootstrap, args.events, args.timeout, args.batched)
            batched_rates.append((single, measured))
    small = idle_start_run(bootstrap, args.idle_start_events, args.timeout, not args.no_profile)
    print(
        f"events per run                     {runs[0][0].events:>12,} ({runs[0][0].units:,} units)"
    )
    ratios = []
    for number, (measured, raw_rates) in enumerate(runs, 1):
        run = measured.run
        rate = (measured.events - run.first_mark_events) / (run.done_at - run.first_mark_at)
        raw_rate = statistics.fmean(raw_rates)
        ratios.append(rate / raw_rate)
        from_spawn = run.done_at - measured.spawned_at
        print(f"run {number}:")
        print(
            f"  baseline: raw aiokafka consume   {raw_rate:>12,.0f} events/s "
            f"(before the worker {raw_rates[0]:,.0f}, after {raw_rates[1]:,.0f})"
        )
        print(f"  stream worker, first mark -> end {rate:>12,.0f} events/s")
        print(f"  stream worker / raw consume      {rate / raw_rate:>12.3f}")
        print(
            f"  (first progress mark {run.first_mark_at - measured.spawned_at:.1f} s after "
            f"spawn, covering {run.first_mark_events:,} events; all done {from_spawn:.1f} s "
            f"after spawn: {measured.events / from_spawn:,.0f} events/s including start-up)"
        )
    median = statistics.median(ratios)
    print(f"stream worker / raw consume, median of {len(ratios)} runs: {median:.3f}")
    for number, (single, batch) in enumerate(batched_rates, 1):
        spawn_single, spawn_batch = _rate_from_spawn(single), _rate_from_spawn(batch)
        marks = [_event_rate(single), _event_rate(batch)]
        shown = ["all in the first mark" if r is None else f"{r:,.0f} events/s" for r in marks]
        print(
            f"run {number}, the same events on single-event messages / batch messages of "
            f"{args.batched}: from spawn (start-up included) {spawn_single:,.0f} / "
            f"{spawn_batch:,.0f} events/s ({spawn_batch / spawn_single:.2f}x); "
            f"first mark -> end {shown[0]} / {shown[1]}"
        )
    big = runs[0][0]
    mib = 1024
    per_unit = (big.peak_kib - small.idle_kib) / mib / big.units
    slope = (big.peak_kib - small.peak_kib) / mib / (big.units - small.units)
    print(
        f"worker RSS: idle {small.idle_kib / mib:,.0f} MiB; peak {big.peak_kib / mib:,.0f} MiB "
        f"({big.units:,} units), {small.peak_kib / mib:,.0f} MiB ({small.units:,} units)"
    )
    print(f"memory per million units tracked   {per_unit * 1e6:>8,.0f} MiB (peak - idle) / units")
    print(f"                                   {slope * 1e6:>8,.0f} MiB (slope between the runs)")
    if small.profile:
        print(
            f"where the worker's time goes (started idle, then {small.events:,} events), "
            f"top {TOP} functions by own time:"
        )
        for line in small.profile:
            print(f"  {line}")


def baseline_run(bootstrap: str, events: int) -> float:
    """Events/s of a bare aiokafka consumer reading the events on single-event messages
    (one event per message): the mean of two reads, as in ``rate_run``."""
    settings = fresh_settings(bootstrap, "raw")
    try:
        messages, _ = bench_messages(settings, events)
        produce_bulk(bootstrap, messages)
        del messages
        topics = {settings.topics.exposures: PARTITIONS, settings.topics.outcomes: PARTITIONS}
        reads = [raw_consume_rate(bootstrap, topics) for _ in range(2)]
    finally:
        delete_namespace(settings)
    return statistics.fmean(count / seconds for count, seconds in reads)


def _shown(rate: float | None) -> str:
    return "all in the first mark" if rate is None else f"{rate:>9,.0f} events/s"


def compare_engines(bootstrap: str, args: argparse.Namespace) -> None:
    """Per repeat, in one run: the bare aiokafka consumer on single-event messages (the
    baseline), each engine on batch messages (the engines' order reversed every other
    repeat, so the machine's drift favours none), and the ``--single-engines`` on
    single-event messages (``--single-events`` of them); then the ratios of that repeat."""
    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    singles = [engine.strip() for engine in args.single_engines.split(",") if engine.strip()]
    single_events = args.single_events or args.events
    sizes = [args.batched] if args.batched else [0]
    repeats: list[tuple[float, dict[tuple[str, int], Measured]]] = []
    for number in range(1, args.repeat + 1):
        load = os.getloadavg()[0]
        baseline = baseline_run(bootstrap, args.events)
        order = engines if number % 2 else engines[::-1]
        runs: dict[tuple[str, int], Measured] = {}
        print(
            f"repeat {number} (load average {load:.1f} at its start; engine order "
            f"{', '.join(order)}):",
            flush=True,
        )
        print(
            f"  baseline: bare aiokafka consumer, single-event messages {baseline:>9,.0f} events/s"
        )
        plan = [(engine, size, args.events) for engine in order for size in sizes]
        if args.batched:
            plan += [(engine, 0, single_events) for engine in singles]
        for engine, size, events in plan:
            measured, _ = rate_run(bootstrap, events, args.timeout, size, engine)
            runs[(engine, size)] = measured
            form = f"batch messages of {size}" if size else "single-event messages"
            print(
                f"  {engine:<9} {form:<25} {measured.events:>9,} events: first mark -> end "
                f"{_shown(_event_rate(measured))}; from spawn "
                f"{_rate_from_spawn(measured):>9,.0f} events/s; peak RSS "
                f"{measured.peak_kib / 1024:,.0f} MiB",
                flush=True,
            )
        repeats.append((baseline, runs))
        _print_ratios(f"  repeat {number}", baseline, runs, args.batched)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if len(repeats) > 1 and args.batched:
        ratios = [_ratios(baseline, runs, args.batched) for baseline, runs in repeats]
        for name, index in (("faust batched / aiokafka batched", 0), ("faust batched / bare", 1)):
            values = [r[index] for r in ratios if r[index] is not None]
            if values:
                print(
                    f"{name}: median {statistics.median(values):.3f}, "
                    f"min {min(values):.3f}, max {max(values):.3f} over {len(values)} repeats"
                )


def _ratios(
    baseline: float, runs: dict[tuple[str, int], Measured], size: int
) -> tuple[float | None, float | None]:
    """(Faust batched / aiokafka batched, Faust batched / bare single-event consumer)."""
    faust = runs.get(("faust", size))
    aiokafka = runs.get(("aiokafka", size))
    faust_rate = _event_rate(faust) if faust else None
    aiokafka_rate = _event_rate(aiokafka) if aiokafka else None
    if faust_rate is None:
        return None, None
    return (faust_rate / aiokafka_rate if aiokafka_rate else None), faust_rate / baseline


def _print_ratios(
    label: str, baseline: float, runs: dict[tuple[str, int], Measured], size: int
) -> None:
    if not size:
        return
    versus_aiokafka, versus_bare = _ratios(baseline, runs, size)
    shown = [
        f"{value:.3f}" if value is not None else "-" for value in (versus_aiokafka, versus_bare)
    ]
    print(
        f"{label}: faust batched / aiokafka batched {shown[0]}; "
        f"faust batched / bare single-event consumer {shown[1]}",
        flush=True,
    )


def idle_rss_kib(bootstrap: str, engine: str) -> int:
    """RSS (KiB) of a worker of ``engine`` started on empty topics, once steady."""
    settings = fresh_settings(bootstrap, "idle")
    try:
        worker = Worker(settings, engine=engine)
        try:
            return wait_until_idle(worker)
        finally:
            worker.stop()
    finally:
        delete_namespace(settings)


def per_million_units(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of peak RSS (KiB) over units, in MiB per million units."""
    units, peaks = zip(*points, strict=True)
    return statistics.linear_regression(units, peaks).slope / 1024 * 1e6


def compare_memory(bootstrap: str, args: argparse.Namespace) -> None:
    """Each engine on the same events at each of ``--memory-events``: peak RSS over units."""
    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    raw = [part.strip().replace("_", "") for part in args.memory_events.split(",")]
    if len(raw) < 2 or not all(part.isdigit() and int(part) >= 1000 for part in raw):
        raise SystemExit(f"--memory-events: two or more event counts of at least 1000, got {raw!r}")
    counts = sorted({int(part) for part in raw})
    idle = {engine: idle_rss_kib(bootstrap, engine) for engine in engines}
    points: dict[str, list[tuple[int, int]]] = {engine: [] for engine in engines}
    form = f"batch messages of {args.batched}" if args.batched else "single-event messages"
    for events in counts:
        for engine in engines:
            measured, _ = rate_run(bootstrap, events, args.timeout, args.batched, engine)
            points[engine].append((measured.units, measured.peak_kib))
            mark = _event_rate(measured)
            shown = "all in the first mark" if mark is None else f"{mark:,.0f} events/s"
            print(
                f"{engine:<9} {measured.events:>10,} events ({measured.units:,} units), "
                f"{form}: peak RSS {measured.peak_kib / 1024:,.0f} MiB; first mark -> end "
                f"{shown}, from spawn "
                f"{_rate_from_spawn(measured):,.0f} events/s",
                flush=True,
            )
    for engine in engines:
        units, peak = points[engine][-1]
        print(
            f"{engine:<9} idle RSS {idle[engine] / 1024:,.0f} MiB; memory per million units: "
            f"slope over {len(counts)} runs {per_million_units(points[engine]):,.0f} MiB, "
            f"(peak - idle) / units at {units:,} units "
            f"{(peak - idle[engine]) / 1024 / units * 1e6:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
