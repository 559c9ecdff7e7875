"""Shared fixtures: the real Kafka broker and a fresh topic namespace per test.

The broker is found in this order: ``LIFTSTREAM_BOOTSTRAP`` if set (``.ci/run`` starts
one and sets it); testcontainers' Kafka container if a Docker engine answers; else a
local broker from the Maven Central jars, started for the session in a temporary folder.
A run in parallel processes (``pytest -n``) starts that broker once, in the controlling
process, and hands it to its workers as ``LIFTSTREAM_BOOTSTRAP``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from liftstream.settings import Settings

if TYPE_CHECKING:
    from tests.integration.helpers_stream import AggregatesReader

pytest_plugins = ["tests.parallel"]

# The CLI's rich consoles are made at import, and a COLUMNS (or LINES) in the environment
# then fixes their size for good, where the CLI tests give each command its own width
# (CliRunner's env). A terminal's, or the one xdist's worker processes inherit, goes.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def _started_broker(data_dir: Path) -> Iterator[str]:
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.0.2").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from services.broker.local import LocalKafka

    with LocalKafka(data_dir) as broker:
        yield broker.bootstrap


_shared_broker = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    """xdist's controlling process, before it starts its workers (they inherit the
    environment): one broker for them all, when none is named."""
    distributed = getattr(config.option, "tx", None) and not hasattr(config, "workerinput")
    if distributed and not os.environ.get("LIFTSTREAM_BOOTSTRAP"):
        data_dir = Path(_shared_broker.enter_context(tempfile.TemporaryDirectory()))
        bootstrap = _shared_broker.enter_context(_started_broker(data_dir / "kafka"))
        os.environ["LIFTSTREAM_BOOTSTRAP"] = bootstrap
        _shared_broker.callback(os.environ.pop, "LIFTSTREAM_BOOTSTRAP", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    _shared_broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for the whole test session."""
    from_env = os.environ.get("LIFTSTREAM_BOOTSTRAP")
    if from_env:
        yield from_env
        return
    with _started_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture
def platform_settings(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings for one test: its own topic namespace (topics created) and data home.

    The environment is set too, so processes the test starts see the same platform.
    """
    from services.broker.topics import delete_namespace_topics, ensure_topics

    namespace = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        bootstrap=kafka_bootstrap,
        namespace=namespace,
        partitions=4,
        home=tmp_path / "home",
        results_url="",
    )
    settings.home.mkdir(parents=True, exist_ok=True)
    for name, value in {
        "LIFTSTREAM_BOOTSTRAP": kafka_bootstrap,
        "LIFTSTREAM_NAMESPACE": namespace,
        "LIFTSTREAM_PARTITIONS": "4",
        "LIFTSTREAM_HOME": str(settings.home),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIFTSTREAM_RESULTS_URL", raising=False)
    ensure_topics(kafka_bootstrap, settings.topics)
    yield settings
    with contextlib.suppress(Exception):
        delete_namespace_topics(kafka_bootstrap, namespace)


@pytest.fixture
def reader(platform_settings: Settings) -> Iterator[AggregatesReader]:
    """Follows the test's aggregates topic (the latest record per key)."""
    from tests.integration.helpers_stream import AggregatesReader

    reader = AggregatesReader(platform_settings)
    yield reader
    reader.close()
