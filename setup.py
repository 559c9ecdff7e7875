"""Build hook: optionally compile the stream worker's per-event path with mypyc.

With ``LIFTSTREAM_COMPILE=1`` (``make setup`` sets it), installing the project builds
``services/stream/{intake,attribution,partials,processor}.py``,
``analytics/attribution/rule.py`` and ``schemas/partitioning.py`` into C extensions next
to their sources, which Python then imports in their place: the worker runs about a
fifth fewer instructions per event (docs/benchmarks.md). Without it, or where no C
compiler exists, the same modules run interpreted; they are ordinary, fully typed
Python.

mypyc type-checks what it compiles (and what that imports) and enforces the annotations
at run time. An extension older than its source is stale: ``make`` rebuilds it, and
``tests/unit/test_compiled_stream.py`` fails until it is rebuilt.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

#: The per-event path of the stream worker, compiled as one group.
COMPILED = [
    "services/stream/intake.py",
    "services/stream/attribution.py",
    "services/stream/partials.py",
    "services/stream/processor.py",
    # The attribution rule the per-event path applies.
    "analytics/attribution/rule.py",
    # Kafka's default partitioner: the stream checks every element of a batch with it.
    "schemas/partitioning.py",
]


def extensions() -> list[Extension]:
    if os.environ.get("LIFTSTREAM_COMPILE") != "1":
        return []
    from mypyc.build import mypycify  # only needed when compiling (a dev dependency)

    return mypycify(COMPILED, group_name="services.stream._compiled", opt_level="3")


setup(ext_modules=extensions())
