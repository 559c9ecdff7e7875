"""The stream's per-event path compiled with mypyc (``setup.py``'s ``COMPILED``): every
module is built, imported as the extension, never older than its source (a stale
extension would run in place of the code being tested), and gives the same results as
its interpreted source on the same messages.

``make setup`` builds the extensions; a checkout where nothing is compiled fails here
(delete the extensions and set ``LIFTSTREAM_INTERPRETED=1`` to run the rest of the
suite on the interpreted path on purpose)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from schemas.events import ExposureEvent
from schemas.topics import TopicCatalog
from tests.unit.event_logs import tricky_log

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.environ.get("LIFTSTREAM_INTERPRETED") == "1", reason="interpreted on purpose"
)


def _compiled_sources() -> list[str]:
    """``COMPILED`` of ``setup.py``, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py defines no COMPILED list")


SOURCES = _compiled_sources()
MODULES = [source.removesuffix(".py").replace("/", ".") for source in SOURCES]


@pytest.mark.parametrize("source", SOURCES)
def test_module_is_compiled_and_not_older_than_its_source(source: str) -> None:
    path = ROOT / source
    extensions = list(path.parent.glob(f"{path.stem}.cpython-*.so"))
    assert extensions, f"{source} is not compiled: run `make setup`"
    for extension in extensions:
        assert extension.stat().st_mtime >= path.stat().st_mtime, (
            f"{extension.name} is older than {path.name}: run `make setup` to rebuild it "
            "(or delete it to run the module interpreted)"
        )
    module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
    assert module.__file__ is not None and module.__file__.endswith(".so"), module.__file__


@contextmanager
def _interpreted() -> Iterator[dict[str, ModuleType]]:
    """The compiled modules loaded again from their ``.py`` sources, importing each other
    (their imports resolve to the interpreted copies); the compiled ones are put back."""
    saved = {name: sys.modules[name] for name in MODULES if name in sys.modules}
    loaded: dict[str, ModuleType] = {}
    try:
        for name in MODULES:
            sys.modules.pop(name, None)
        # Dependencies first: a module's imports must find the interpreted copies.
        for name in sorted(MODULES, key=_dependency_rank):
            spec = importlib.util.spec_from_file_location(
                name, ROOT / (name.replace(".", "/") + ".py")
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        yield loaded
    finally:
        for name in MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _dependency_rank(name: str) -> int:
    order = ["rule", "partitioning", "attribution", "partials", "intake", "processor"]
    return order.index(name.rsplit(".", 1)[1])


def _run(processor_module: ModuleType) -> tuple[object, ...]:
    """The tricky log, one event a message, then again as batches and garbage."""
    intake = sys.modules["services.stream.intake"]
    catalog = TopicCatalog(namespace="compiled", event_partitions=1)
    processor = processor_module.StreamProcessor(catalog)
    processor.assign(0, {}, {})
    offsets = {catalog.exposures: 0, catalog.outcomes: 0}
    letters = []
    events = tricky_log(seed=9)
    for event in events:
        topic = catalog.exposures if isinstance(event, ExposureEvent) else catalog.outcomes
        message = intake.SourceMessage(
            topic, 0, offsets[topic], event.partition_key, event.to_json()
        )
        offsets[topic] += 1
        letters.append(processor.handle(message))
    outcomes = [event for event in events if not isinstance(event, ExposureEvent)]
    batch = b"[" + b",".join(event.to_json() for event in outcomes[:50]) + b"]"
    garbage = [b"{", b"[]", b'{"type": "outcome"}', batch.replace(b'"value":', b'"value":"x",')]
    for value in [batch, *garbage]:
        message = intake.SourceMessage(catalog.outcomes, 0, offsets[catalog.outcomes], None, value)
        offsets[catalog.outcomes] += 1
        letters.append(processor.handle(message))
    states = {
        key: (sorted(state.seen_event_ids), dict(state.exposures), state.outcomes)
        for key, state in processor.units[0].items()
    }
    reasons = [None if letter is None else (letter.reason, letter.errors) for letter in letters]
    return processor.partials.totals(0), states, reasons, processor.dead_letter_count


def test_compiled_and_interpreted_stream_give_the_same_results() -> None:
    compiled = importlib.import_module("services.stream.processor")
    assert compiled.__file__ is not None and compiled.__file__.endswith(".so")
    expected = _run(compiled)
    with _interpreted() as modules:
        interpreted = modules["services.stream.processor"]
        assert interpreted.__file__ is not None and interpreted.__file__.endswith(".py")
        assert sys.modules["services.stream.attribution"].__file__.endswith(".py")
        actual = _run(interpreted)
    assert actual == expected
    totals, _, reasons, dead_letters = expected
    assert totals and dead_letters >= 4 and any(reasons)
