"""Shared fixtures: the real Kafka broker and a fresh topic namespace per test.

The broker is found in this order: ``LIFTSTREAM_BOOTSTRAP`` if set (``.ci/run`` starts
one and sets it); testcontainers' Kafka container if a Docker engine answers; else a
local broker from the Maven Central jars, started for the session in a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftstream.settings import Settings


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for the whole test session."""
    from_env = os.environ.get("LIFTSTREAM_BOOTSTRAP")
    if from_env:
        yield from_env
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.0.2").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from services.broker.local import LocalKafka

    with LocalKafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker.bootstrap


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
