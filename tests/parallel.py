"""How the suite is shared among pytest-xdist's processes (``make test`` runs ``pytest -n``).

Most integration tests wait on Kafka and on the processes they start, so several run at
once on a small machine. Two rules here, applied at collection (in every process alike, so
xdist sees the same collection everywhere; ``--dist loadgroup`` in pyproject.toml):

- A test that uses a module-scoped fixture (one platform, venv or browser per module) is
  put in its module's ``xdist_group``: the module runs in one process and builds it once.
  A test marked ``serial`` runs in one process with every other ``serial`` test, one
  after another (see ``SERIAL``).
- The tests that take longest are handed out first (``--no-loadscope-reorder`` keeps this
  order): the groups of tests that start processes, then the ``slow``-marked (reduced)
  runs, then the other tests that start processes, then the unit tests: many short ones,
  which fill the processes evenly at the end of the run.
"""

from __future__ import annotations

import pytest

#: Marker of tests that must not run beside one another (they share one process).
SERIAL = "serial"
_PROCESS_DIRS = ("tests/integration/", "tests/browser/", "tests/packaging/")


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definitions and definitions[-1].scope in ("module", "class", "package")
        for definitions in info.name2fixturedefs.values()
    )


def _rank(item: pytest.Item) -> int:
    starts_processes = item.nodeid.startswith(_PROCESS_DIRS)
    if starts_processes and item.get_closest_marker("xdist_group"):
        return 0
    if item.get_closest_marker("slow"):
        return 1
    return 2 if starts_processes else 3


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: run in collection order
        return
    for item in items:
        if item.get_closest_marker(SERIAL):
            item.add_marker(pytest.mark.xdist_group(SERIAL))
        elif not item.get_closest_marker("xdist_group") and _uses_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    items.sort(key=_rank)  # stable: collection order within a rank
