"""``pip install liftstream`` alone is the SDK: it installs into a venv of its own with only
the SDK's dependencies, imports, assigns, and validates an event, with none of the
platform's packages (FastAPI, DuckDB, aiokafka, Faust, statsmodels...) present.

The project's wheel is built, from a copy of its sources, with this environment's
setuptools (no build isolation, no compiling), then installed without extras into a fresh
venv; pip resolves the SDK's dependencies from its cache or PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "setup.py", "README.md", "liftstream", "liftstream_cli"]
SOURCES += ["schemas", "services", "analytics"]
PIP = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
PLATFORM_ONLY = [
    "fastapi",
    "uvicorn",
    "duckdb",
    "aiokafka",
    "confluent_kafka",
    "faust",
    "statsmodels",
    "scipy",
    "numpy",
    "typer",
    "rich",
    "yaml",
    "prometheus_client",
    "pydantic_settings",
]

PROGRAM = f"""
import importlib.util, json
import liftstream
from liftstream import LiftstreamClient, assign
from liftstream.errors import InvalidInputError
from liftstream.events import SdkEvent
from liftstream.local_config import ConfigEvaluator
from liftstream.transport import KafkaTransport
from liftstream.http_transport import HttpTransport
from schemas.experiment import Experiment

experiment = Experiment.model_validate({{
    "key": "checkout-button", "name": "Checkout button", "unit_type": "user",
    "traffic": 100, "control": "control",
    "variants": [{{"key": "control", "weight": 50}}, {{"key": "treatment", "weight": 50}}],
    "metrics": [{{"name": "conversion", "event": "purchase", "type": "conversion"}}],
}})
variants = [assign(experiment, f"user-{{i}}") for i in range(2000)]
absent = [m for m in {PLATFORM_ONLY!r} if importlib.util.find_spec(m) is not None]
print(json.dumps({{
    "variants": sorted(set(variants)),
    "treatment_share": variants.count("treatment") / len(variants),
    "platform_modules_present": absent,
    "sdk_file": liftstream.__file__,
}}))
"""


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sdk-only")
    env = {k: v for k, v in os.environ.items() if k != "LIFTSTREAM_COMPILE"}
    # Built from a copy: setuptools leaves build/ behind in the tree it builds.
    source = root / "source"
    source.mkdir()
    for part in SOURCES:
        if (REPO / part).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.so")
            shutil.copytree(REPO / part, source / part, ignore=ignore)
        else:
            shutil.copy2(REPO / part, source / part)
    wheels = root / "wheels"
    subprocess.run(
        [
            *PIP,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        env=env,
        cwd=root,
    )
    (wheel,) = wheels.glob("liftstream-*.whl")
    target = root / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    subprocess.run(
        [*PIP, "--python", str(python), "install", str(wheel)],
        check=True,
        env=env,
        cwd=root,
    )
    return python


def test_the_sdk_installs_alone_and_assigns(sdk_venv: Path) -> None:
    completed = subprocess.run(
        [str(sdk_venv), "-c", PROGRAM],
        capture_output=True,
        text=True,
        cwd=sdk_venv.parents[1],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["platform_modules_present"] == []
    assert result["variants"] == ["control", "treatment"]
    assert 0.45 < result["treatment_share"] < 0.55
    # The installed copy is the one that ran, not the repository's.
    assert not result["sdk_file"].startswith(str(REPO))


def test_the_cli_without_the_server_extra_says_what_to_install(sdk_venv: Path) -> None:
    completed = subprocess.run(
        [str(sdk_venv.parent / "liftstream"), "--help"],
        capture_output=True,
        text=True,
        cwd=sdk_venv.parents[1],
    )
    assert completed.returncode != 0
    assert "liftstream[server]" in completed.stderr
