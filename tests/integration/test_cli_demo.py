"""``liftstream demo`` with no platform running starts one, shows the scorecard, stops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liftstream.settings import Settings
from liftstream_cli.main import DEFAULT_DEMO_UNITS
from tests.integration.helpers_cli import LiftstreamProcess, wait_until_gone

pytestmark = pytest.mark.integration


def test_demo_without_a_platform_starts_one_for_the_run_and_leaves_nothing(
    platform_settings: Settings, tmp_path: Path
) -> None:
    demo = LiftstreamProcess(["demo", "--units", "1500", "--seed", "7"], tmp_path / "demo")
    try:
        assert demo.wait(timeout=300) == 0, demo.stderr
    finally:
        demo.stop()
    assert "starting one for this command" in demo.stderr
    assert "sample ratio ok" in demo.stdout
    assert "1,500 units" in demo.stdout
    for metric in ("conversion", "revenue", "page_views"):
        assert metric in demo.stdout
    assert not (platform_settings.home / "platform.json").exists()
    assert wait_until_gone(platform_settings.namespace) == []


@pytest.mark.slow
def test_the_default_demo_finds_its_effect_end_to_end(
    platform_settings: Settings, tmp_path: Path
) -> None:
    up = LiftstreamProcess(["up"], tmp_path / "up")
    try:
        up.wait_for_output("liftstream is up", timeout=180)
        demo = LiftstreamProcess(["demo"], tmp_path / "demo")
        assert demo.wait(timeout=600) == 0, demo.stderr
        shown = LiftstreamProcess(["results", "checkout-button", "--json"], tmp_path / "results")
        assert shown.wait(timeout=60) == 0, shown.stderr
    finally:
        up.stop()
    scorecard = json.loads(shown.stdout)
    assert scorecard["total_units"] == DEFAULT_DEMO_UNITS
    assert not scorecard["sample_ratio"]["srm_detected"]
    conversion = next(m for m in scorecard["metrics"] if m["metric"] == "conversion")
    assert conversion["p_value"] < 0.01
    assert conversion["verdict"] == "better"
