"""Fixtures of the browser tests: one real platform per module (``liftstream up`` against
the real broker, with the demo's experiment sent through it), the dashboard it serves,
and Debian's Chromium driven by Playwright (``make setup`` installs ``chromium``;
Playwright's own browser download is not used). Every test saves screenshots under
``build/screenshots/`` (an artifact of the run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.helpers_cli import LiftstreamProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
DEMO_UNITS = 1500
DEMO_EXPERIMENT = "checkout-button"


def chromium_path() -> str:
    path = os.environ.get("LIFTSTREAM_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("no chromium: `make setup` installs Debian's (apt-get install chromium)")
    return path


@dataclass
class RunningPlatform:
    home: Path
    env: dict[str, str]
    state: dict[str, Any]
    dashboard_url: str
    log_dir: Path

    @property
    def admin_key(self) -> str:
        return str(self.state["api_key"])

    def cli(self, *args: str) -> str:
        """``liftstream ARGS`` against this platform; its standard output."""
        run = LiftstreamProcess(list(args), self.log_dir / f"cli-{uuid.uuid4().hex[:8]}", self.env)
        assert run.wait(timeout=120) == 0, run.stderr
        return run.stdout

    def control(self, method: str, path: str, key: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            f"{self.state['control_url']}{path}",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def results(self, path: str, key: str) -> httpx.Response:
        return httpx.get(
            f"{self.state['results_url']}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )


@contextlib.contextmanager
def _dashboard(state: dict[str, Any], env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """The platform's dashboard; a platform that does not run one gets one here."""
    if state.get("dashboard_url"):
        yield str(state["dashboard_url"])
        return
    log = (log_dir / "dashboard.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.dashboard", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        env={
            **os.environ,
            **env,
            "LIFTSTREAM_RESULTS_URL": state["results_url"],
            "LIFTSTREAM_CONTROL_URL": state["control_url"],
        },
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert "dashboard ready at" in line, (log_dir / "dashboard.log").read_text()
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture(scope="module")
def platform(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``liftstream up`` with the demo's experiment (``liftstream demo``) sent through it."""
    from liftstream.settings import Settings
    from services.broker.topics import delete_namespace_topics, ensure_topics

    root = tmp_path_factory.mktemp("browser")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    home = root / "home"
    home.mkdir()
    env = {
        "LIFTSTREAM_BOOTSTRAP": kafka_bootstrap,
        "LIFTSTREAM_NAMESPACE": namespace,
        "LIFTSTREAM_PARTITIONS": "4",
        "LIFTSTREAM_HOME": str(home),
        "LIFTSTREAM_RESULTS_URL": "",
        "LIFTSTREAM_CONTROL_URL": "",
        "LIFTSTREAM_COLLECTOR_URL": "",
        "LIFTSTREAM_API_KEY": "",
        "LIFTSTREAM_TENANT": "",
    }
    settings = Settings(
        bootstrap=kafka_bootstrap, namespace=namespace, partitions=4, home=home, results_url=""
    )
    ensure_topics(kafka_bootstrap, settings.topics)
    up = LiftstreamProcess(["up"], root / "up", env)
    try:
        up.wait_for_output("liftstream is up", timeout=180)
        demo = LiftstreamProcess(
            ["demo", "--units", str(DEMO_UNITS), "--seed", "7"], root / "demo", env
        )
        assert demo.wait(timeout=300) == 0, demo.stderr
        state = json.loads((home / "platform.json").read_text())
        with _dashboard(state, env, root) as dashboard_url:
            yield RunningPlatform(home, env, state, dashboard_url, root)
    finally:
        up.stop()
        with contextlib.suppress(Exception):
            delete_namespace_topics(kafka_bootstrap, namespace)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies); its console errors are collected, and a
    screenshot of where it ended is saved."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        page.screenshot(path=SCREENSHOTS / f"{request.node.name}-end.png", full_page=True)
    context.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def sign_in(page: Page, dashboard_url: str, key: str) -> None:
    page.goto(f"{dashboard_url}/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{dashboard_url}/experiments")


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} after {timeout}s")
