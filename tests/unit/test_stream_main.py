"""``python -m services.stream`` refuses a bad configuration with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.stream.__main__ import main


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("LIFTSTREAM_BOOTSTRAP", "127.0.0.1:1")


def test_missing_bootstrap_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LIFTSTREAM_BOOTSTRAP")
    assert main() == 2
    assert "LIFTSTREAM_BOOTSTRAP" in capsys.readouterr().err


@pytest.mark.parametrize("interval", ["soon", "0", "-1", "nan"])
def test_bad_publish_interval_is_named(
    interval: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFTSTREAM_STREAM_PUBLISH_INTERVAL", interval)
    assert main() == 2
    assert "LIFTSTREAM_STREAM_PUBLISH_INTERVAL" in capsys.readouterr().err


def test_unknown_log_level_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFTSTREAM_LOG_LEVEL", "chatty")
    assert main() == 2
    assert "LIFTSTREAM_LOG_LEVEL" in capsys.readouterr().err
