"""The stream's per-event path compiled with mypyc (setup.py) is never older than its
source: a stale extension would run in place of the code being tested."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPILED = (
    "services/stream/intake",
    "services/stream/attribution",
    "services/stream/partials",
    "services/stream/processor",
    "schemas/partitioning",
    "analytics/attribution/rule",
)


@pytest.mark.parametrize("module", COMPILED)
def test_compiled_module_is_not_older_than_its_source(module: str) -> None:
    source = ROOT / f"{module}.py"
    for extension in source.parent.glob(f"{source.stem}.cpython-*.so"):
        assert extension.stat().st_mtime >= source.stat().st_mtime, (
            f"{extension.name} is older than {source.name}: run `make setup` to rebuild it "
            "(or delete it to run the module interpreted)"
        )
