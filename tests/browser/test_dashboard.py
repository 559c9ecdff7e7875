"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real
platform: signing in and out, the demo's scorecard equal to ``liftstream results --json``,
the time-series chart drawn, a flag killed from the page and seen by the SDK, a read key
kept to its tenant and its rights, and an experiment named ``<script>`` shown as text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Page, expect

from liftstream.local_config import ConfigPoller
from tests.browser.conftest import (
    DEMO_EXPERIMENT,
    DEMO_UNITS,
    RunningPlatform,
    shot,
    sign_in,
    wait_for,
)
from tests.integration.helpers_control import create_tenant

pytestmark = pytest.mark.integration

ROLLOUT_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rollout-checkout-button.yaml"
HOSTILE_NAME = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _rows(page: Page) -> list[dict[str, Any]]:
    return page.locator("table.scorecard tbody tr").evaluate_all(
        "rows => rows.map(row => "
        "({...row.dataset, effect: row.querySelector('.effect').innerText}))"
    )


def _number(text: str) -> float | None:
    return None if text == "" else float(json.loads(text))


def test_sign_in_keeps_the_key_on_the_server_and_sign_out_ends_it(
    page: Page, platform: RunningPlatform
) -> None:
    url = platform.dashboard_url
    page.goto(f"{url}/experiments")
    expect(page).to_have_url(f"{url}/login")
    page.get_by_label("API key").fill("lsk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    shot(page, "sign-in-refused")

    sign_in(page, url, platform.admin_key)
    expect(page.get_by_test_id("who")).to_contain_text("tenant demo")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session = cookies["liftstream_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert platform.admin_key not in session["value"]
    assert platform.admin_key not in page.url
    assert platform.admin_key not in page.content()
    storage = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert platform.admin_key not in storage
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: scripts cannot read it
    csp = page.request.get(f"{url}/experiments").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    shot(page, "experiments")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{url}/login")
    page.goto(f"{url}/experiments")
    expect(page).to_have_url(f"{url}/login")


def test_the_demo_scorecard_on_the_page_equals_liftstream_results_json(
    page: Page, platform: RunningPlatform
) -> None:
    sign_in(page, platform.dashboard_url, platform.admin_key)
    row = page.locator(f'tr[data-experiment="{DEMO_EXPERIMENT}"]')
    expect(row).to_contain_text(f"{DEMO_UNITS:,}")
    row.get_by_role("link").click()
    expect(page.get_by_test_id("scorecard")).to_be_visible()
    shot(page, "experiment-relative")

    for scale in ("relative", "absolute"):
        if scale == "absolute":
            page.get_by_role("link", name="absolute").click()  # htmx swaps the table in
            expect(page.locator("#scorecard")).to_have_attribute("data-scale", "absolute")
            shot(page, "experiment-absolute")
        if scale == "relative":  # what the CLI prints
            expected = json.loads(
                platform.cli("results", DEMO_EXPERIMENT, "--tenant", "demo", "--json")
            )
        else:  # the same service's JSON, without another CLI process
            expected = platform.results(
                f"/v1/tenants/demo/experiments/{DEMO_EXPERIMENT}/results?scale=absolute",
                platform.admin_key,
            ).json()
        shown = _rows(page)
        assert len(shown) == len(expected["metrics"]) == 3
        assert (
            int(page.locator("#scorecard").get_attribute("data-total-units") or 0)
            == (expected["total_units"])
        )
        for row_shown, comparison in zip(shown, expected["metrics"], strict=True):
            effect = comparison[f"{scale}_effect"]
            assert row_shown["metric"] == comparison["metric"]
            assert row_shown["variant"] == comparison["treatment"]["variant_key"]
            assert _number(row_shown["estimate"]) == effect["estimate"]
            assert _number(row_shown["ciLow"]) == effect["ci_low"]
            assert _number(row_shown["ciHigh"]) == effect["ci_high"]
            assert _number(row_shown["pValue"]) == comparison["p_value"]
            assert _number(row_shown["adjustedPValue"]) == comparison["adjusted_p_value"]
            assert _number(row_shown["sequentialPValue"]) == comparison["sequential"]["p_value"]
            assert (
                _number(row_shown["chanceToWin"])
                == comparison["bayesian"]["chance_to_beat_control"]
            )
            assert row_shown["verdict"] == comparison["verdict"]
            assert int(row_shown["treatmentUnits"]) == comparison["treatment"]["units"]
            # What a person reads is the same figure, rounded.
            shown_text = row_shown["effect"].replace("%", "").replace(",", "")
            factor = 100 if scale == "relative" else 1
            assert float(shown_text) == pytest.approx(effect["estimate"] * factor, abs=0.01)


def test_the_time_series_chart_draws_one_point_per_day(
    page: Page, platform: RunningPlatform
) -> None:
    sign_in(page, platform.dashboard_url, platform.admin_key)
    page.goto(f"{platform.dashboard_url}/experiments/{DEMO_EXPERIMENT}")
    chart = page.locator('svg[data-chart="effect"]')
    expect(chart).to_be_visible()
    daily = platform.results(
        f"/v1/tenants/demo/experiments/{DEMO_EXPERIMENT}/daily", platform.admin_key
    ).json()
    days = len(daily["days"])
    assert days >= 1
    # Series 1 is the treatment's effect (series 0 the "no effect" line): a dot a day.
    expect(chart.locator(".serie-1 circle.dot")).to_have_count(days)
    expect(page.locator('svg[data-chart="units"] .serie-0 circle.dot')).to_have_count(days)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    chart.scroll_into_view_if_needed()
    shot(page, "experiment-charts")
    assert not page.console_errors  # type: ignore[attr-defined]  # no CSP violation


def test_killing_a_flag_from_the_page_reaches_the_sdk(
    page: Page, platform: RunningPlatform
) -> None:
    flag = {"key": "new-checkout", "ramp": 100.0, "description": "the new checkout flow"}
    platform.control(
        "PUT", "/v1/tenants/demo/flags/new-checkout", platform.admin_key, {"flag": flag}
    )
    poller = ConfigPoller(platform.state["control_url"], platform.admin_key, interval_s=0.2)
    poller.start()
    try:
        wait_for(
            lambda: poller.evaluator and poller.evaluator.flag("new-checkout", "user-1") is True,
            30,
            "the SDK never saw the flag on",
        )
        sign_in(page, platform.dashboard_url, platform.admin_key)
        page.get_by_role("link", name="Flags").click()
        row = page.locator('tr[data-flag="new-checkout"]')
        expect(row).to_contain_text("on for 100")
        row.get_by_text("Kill…").click()
        row.get_by_label("Reason").fill("checkout errors after deploy")
        shot(page, "flag-kill-form")
        row.get_by_role("button", name="Kill the flag").click()
        expect(page.get_by_test_id("flag-state")).to_have_attribute("data-killed", "true")
        expect(page.get_by_role("status")).to_contain_text("Kill switch set.")
        expect(page.locator("ol.history")).to_contain_text("checkout errors after deploy")
        shot(page, "flag-killed")
        wait_for(
            lambda: poller.evaluator.flag("new-checkout", "user-1") is False,
            30,
            "the SDK still serves the killed flag's on value",
        )
    finally:
        poller.stop()


def test_a_read_key_sees_only_its_tenant_and_cannot_change_anything(
    page: Page, platform: RunningPlatform
) -> None:
    other = create_tenant(
        platform.env["LIFTSTREAM_BOOTSTRAP"],
        f"{platform.env['LIFTSTREAM_NAMESPACE']}.control",
        "other",
    )
    _define_hostile_experiment(platform, other["admin"])
    read_key = platform.control(
        "POST", "/v1/tenants/demo/keys", platform.admin_key, {"role": "read", "label": "analyst"}
    )["key"]
    platform.control(
        "PUT",
        "/v1/tenants/demo/flags/read-only-check",
        platform.admin_key,
        {"flag": {"key": "read-only-check", "ramp": 50.0}},
    )
    sign_in(page, platform.dashboard_url, read_key)
    expect(page.get_by_test_id("who")).to_contain_text("(read)")
    expect(page.get_by_test_id("experiments")).not_to_contain_text("hostile")
    page.goto(f"{platform.dashboard_url}/experiments/hostile")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    shot(page, "read-key-other-tenant")

    page.goto(f"{platform.dashboard_url}/flags")
    expect(page.locator('tr[data-flag="read-only-check"]')).to_be_visible()
    expect(page.get_by_test_id("kill-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Kill the flag")).to_have_count(0)
    expect(page.get_by_test_id("read-only")).to_be_visible()
    shot(page, "read-key-flags")
    # A forged post with the session's own CSRF token is refused on the server, too.
    page.goto(f"{platform.dashboard_url}/flags/read-only-check")
    token = page.locator('form[action="/logout"] input[name="csrf_token"]').input_value()
    answer = page.request.post(
        f"{platform.dashboard_url}/flags/read-only-check/kill",
        form={"csrf_token": token, "killed": "true", "reason": "not mine to kill"},
        max_redirects=0,
    )
    assert answer.status == 403
    # And a post without the token is refused before anything else.
    assert (
        page.request.post(
            f"{platform.dashboard_url}/flags/read-only-check/kill",
            form={"killed": "true", "reason": "x"},
            max_redirects=0,
        ).status
        == 403
    )
    flag = platform.control("GET", "/v1/tenants/demo/flags/read-only-check", platform.admin_key)
    assert flag["killed"] is False


def test_an_experiment_named_script_is_shown_as_text(page: Page, platform: RunningPlatform) -> None:
    other = create_tenant(
        platform.env["LIFTSTREAM_BOOTSTRAP"],
        f"{platform.env['LIFTSTREAM_NAMESPACE']}.control",
        "hostile-co",
    )
    _define_hostile_experiment(platform, other["admin"], tenant="hostile-co")
    sign_in(page, platform.dashboard_url, other["admin"])
    link = page.get_by_role("link", name=HOSTILE_NAME)
    expect(link).to_be_visible()
    link.click()
    expect(page.get_by_test_id("experiment-name")).to_have_text(HOSTILE_NAME)
    expect(page.get_by_test_id("history")).to_contain_text("<script>")
    shot(page, "hostile-name")
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("main script").count() == 0
    assert page.locator("main img[src=x]").count() == 0


def _define_hostile_experiment(
    platform: RunningPlatform, admin_key: str, tenant: str = "other"
) -> None:
    experiment = {
        "key": "hostile",
        "name": HOSTILE_NAME,
        "hypothesis": "</p><script>window.__pwned = 3</script>",
        "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        "metrics": [{"name": "buys", "event": "purchase", "type": "conversion"}],
    }
    wait_for(
        lambda: _answers(platform, "GET", f"/v1/tenants/{tenant}", admin_key),
        30,
        "the control service never knew the tenant's key",
    )
    platform.control(
        "PUT",
        f"/v1/tenants/{tenant}/experiments/hostile",
        admin_key,
        {"experiment": experiment, "reason": "<b>reason</b><script>window.__pwned = 4</script>"},
    )
    wait_for(
        lambda: (
            platform.results(
                f"/v1/tenants/{tenant}/experiments/hostile/results", admin_key
            ).is_success
        ),
        60,
        "the results service never loaded the experiment",
    )


def _answers(platform: RunningPlatform, method: str, path: str, key: str) -> bool:
    import httpx

    try:
        return httpx.request(
            method,
            f"{platform.state['control_url']}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        ).is_success
    except httpx.HTTPError:
        return False


def test_the_rollout_timeline_shows_the_controllers_decisions_with_their_evidence(
    page: Page, platform: RunningPlatform
) -> None:
    """Last in the module: the plan ramps the demo's experiment."""
    plan = yaml.safe_load(ROLLOUT_EXAMPLE.read_text()) | {"check_interval_s": 1}
    key = plan["key"]
    platform.control(
        "PUT",
        f"/v1/tenants/demo/rollouts/{key}",
        platform.admin_key,
        {"plan": plan, "reason": "ship it, watched"},
    )
    decisions = wait_for(
        lambda: platform.control(
            "GET", f"/v1/tenants/demo/rollouts/{key}/decisions", platform.admin_key
        ),
        60,
        "the controller made no decision",
    )
    sign_in(page, platform.dashboard_url, platform.admin_key)
    page.get_by_role("link", name="Rollouts").click()
    page.get_by_role("link", name=key).click()
    timeline = page.get_by_test_id("timeline")
    first = decisions[0]
    entry = timeline.locator(f'li[data-decision="{first["decision"]}"]').last
    expect(entry).to_contain_text(first["reason"])
    entry.locator("summary").click()
    expect(entry).to_contain_text("page_views")
    expect(timeline).to_contain_text("ship it, watched")
    expect(page.get_by_test_id("rollout-approve")).to_have_count(1)
    shot(page, "rollout-timeline")
