"""``liftstream plan``: sample sizes statsmodels agrees with, the effect detectable so far,
and bad options named in a one-line error with exit code 1."""

from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize
from typer.testing import CliRunner

from liftstream_cli.main import app

runner = CliRunner()


def test_conversion_plan_prints_the_units_statsmodels_computes() -> None:
    result = runner.invoke(
        app, ["plan", "--metric", "conversion", "--baseline", "0.1", "--mde", "0.05", "--relative"]
    )
    assert result.exit_code == 0, result.output
    h = proportion_effectsize(0.105, 0.1)
    units = math.ceil(NormalIndPower().solve_power(h, alpha=0.05, power=0.8))
    assert f"{units:,} control units and {units:,} per treatment" in result.output
    assert "+0.5 pp (+5.0% relative)" in result.output
    assert f"planned_units: {2 * units} (control and one treatment" in result.output


def test_mean_plan_with_units_so_far_prints_the_detectable_effect() -> None:
    result = runner.invoke(
        app,
        ["plan", "--metric", "mean", "--baseline", "30", "--std", "12", "--units", "9042"],
    )
    assert result.exit_code == 0, result.output
    # 9,042 units per arm is what a 0.5 difference needs at sd 12: it is detectable now.
    assert "with 9,042 control units so far: detectable effect +0.5 " in result.output


def test_bad_options_are_named() -> None:
    missing_std = runner.invoke(app, ["plan", "--metric", "mean", "--baseline", "3", "--mde", "1"])
    assert missing_std.exit_code == 1 and "--std" in missing_std.output
    bad_rate = runner.invoke(
        app, ["plan", "--metric", "conversion", "--baseline", "1.5", "--mde", "0.1"]
    )
    assert bad_rate.exit_code == 1 and "--baseline" in bad_rate.output
    bad_kind = runner.invoke(app, ["plan", "--metric", "ratio", "--baseline", "1", "--mde", "1"])
    assert bad_kind.exit_code == 1 and "--metric" in bad_kind.output
