"""The worker's Faust app is namespaced and leaves the platform's own topics alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from liftstream.settings import Settings
from services.stream.app import create_app


def settings_for(tmp_path: Path, bootstrap: str = "127.0.0.1:9") -> Settings:
    return Settings(
        bootstrap=bootstrap, namespace="team-a", partitions=6, home=tmp_path, results_url=""
    )


def test_consumer_group_and_changelog_are_in_the_namespace(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))
    assert app.conf.id == "team-a-stream"
    (table,) = app.tables.values()
    assert table.changelog_topic.get_topic_name() == "team-a-stream-units-changelog"
    assert table.changelog_topic.partitions == 6
    assert app.conf.web_enabled is False


def test_platform_topics_are_consumed_but_never_declared(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path))
    (agent,) = app.agents.values()
    assert set(agent.channel.topics) == {"team-a.exposures", "team-a.outcomes"}
    assert not agent.channel.internal


def test_missing_bootstrap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LIFTSTREAM_BOOTSTRAP"):
        create_app(settings_for(tmp_path, bootstrap=""))
