"""The SDK stays light: importing it pulls in none of the platform's heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "duckdb",
    "aiokafka",
    "confluent_kafka",
    "faust",
    "fastapi",
    "statsmodels",
    "scipy",
    "pandas",
    "numpy",
]


def test_importing_the_sdk_does_not_import_analytics_or_stream_dependencies() -> None:
    program = (
        "import json, sys\n"
        "import liftstream, liftstream.client, liftstream.assignment, liftstream.local_config\n"
        "import liftstream.transport, liftstream.http_transport, liftstream.settings\n"
        "import liftstream.openfeature, liftstream.shadow\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert json.loads(completed.stdout) == []


def test_the_sdk_is_reachable_from_the_package() -> None:
    program = (
        "import json, sys, liftstream\n"
        "print(json.dumps([liftstream.LiftstreamClient.__name__, liftstream.assign.__name__]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert json.loads(completed.stdout) == ["LiftstreamClient", "assign"]
