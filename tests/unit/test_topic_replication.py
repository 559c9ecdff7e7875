"""The topic catalog's replication: every topic gets the configured replicas and
``min.insync.replicas`` (a majority by default), and a cluster gets 3 replicas and 12
event partitions unless the environment says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from liftstream.settings import Settings, load_settings
from schemas.topics import TopicCatalog, majority
from services.broker.topology import cluster_settings


def test_single_broker_catalog_has_one_replica_and_min_isr_one() -> None:
    for spec in TopicCatalog(namespace="ns").specs():
        assert spec.replication_factor == 1
        assert spec.config["min.insync.replicas"] == "1"


def test_replicated_catalog_puts_a_majority_in_sync_on_every_topic() -> None:
    catalog = TopicCatalog(namespace="ns", event_partitions=12, replication_factor=3)
    names = set()
    for spec in catalog.specs():
        names.add(spec.name)
        assert spec.replication_factor == 3
        assert spec.config["min.insync.replicas"] == "2"
    assert {catalog.exposures, catalog.outcomes, catalog.control, catalog.aggregates} <= names
    # Retention and compaction are kept beside the replication settings.
    specs = {spec.name: spec for spec in catalog.specs()}
    assert specs[catalog.aggregates].config["cleanup.policy"] == "compact"
    assert specs[catalog.exposures].partitions == 12


@pytest.mark.parametrize(("replicas", "in_sync"), [(1, 1), (2, 2), (3, 2), (5, 3)])
def test_default_min_insync_is_a_majority(replicas: int, in_sync: int) -> None:
    assert majority(replicas) == in_sync


def test_explicit_min_insync_wins_and_is_bounded() -> None:
    catalog = TopicCatalog(replication_factor=3, min_insync_replicas=3)
    assert {spec.config["min.insync.replicas"] for spec in catalog.specs()} == {"3"}
    with pytest.raises(ValueError, match="min_insync_replicas"):
        TopicCatalog(replication_factor=3, min_insync_replicas=4)
    with pytest.raises(ValueError, match="replication_factor"):
        TopicCatalog(replication_factor=0)


def _settings() -> Settings:
    return Settings(bootstrap="", namespace="ns", partitions=4, home=Path("/tmp"), results_url="")


def test_a_cluster_gets_three_replicas_and_twelve_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFTSTREAM_PARTITIONS", raising=False)
    monkeypatch.delenv("LIFTSTREAM_REPLICATION_FACTOR", raising=False)
    assert cluster_settings(_settings(), 1) == _settings()
    clustered = cluster_settings(_settings(), 3)
    assert (clustered.replication_factor, clustered.partitions) == (3, 12)
    assert cluster_settings(_settings(), 5).replication_factor == 3


def test_the_environment_wins_over_the_cluster_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_PARTITIONS", "24")
    monkeypatch.setenv("LIFTSTREAM_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("LIFTSTREAM_MIN_INSYNC_REPLICAS", "1")
    settings = load_settings()
    clustered = cluster_settings(settings, 3)
    assert (clustered.replication_factor, clustered.partitions) == (2, 24)
    assert {s.config["min.insync.replicas"] for s in clustered.topics.specs()} == {"1"}
    monkeypatch.setenv("LIFTSTREAM_REPLICATION_FACTOR", "3")
    with pytest.raises(ValueError, match="need as many brokers"):
        cluster_settings(load_settings(), 2)


def test_a_replication_setting_that_is_not_a_number_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIFTSTREAM_REPLICATION_FACTOR", "three")
    with pytest.raises(ValueError, match="LIFTSTREAM_REPLICATION_FACTOR"):
        load_settings()
