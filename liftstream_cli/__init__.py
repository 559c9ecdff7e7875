"""The ``liftstream`` command line: run the platform locally, apply experiments, read results.

``run`` is the console script: it loads ``main.app`` and, where only the SDK is installed
(``pip install liftstream`` without ``[server]``), says what to install instead of a
traceback. The heavier modules (the platform supervisor, the demo) are imported only by
the commands that need them.
"""

from __future__ import annotations

import sys

_OURS = {"liftstream", "liftstream_cli", "services", "analytics", "schemas"}


def run() -> None:
    try:
        from liftstream_cli.main import app
    except ModuleNotFoundError as missing:
        if (missing.name or "").split(".")[0] in _OURS:
            raise
        sys.exit(
            f"liftstream: the command line needs the platform's packages ({missing.name} is "
            "not installed): pip install 'liftstream[server]'"
        )
    app()
