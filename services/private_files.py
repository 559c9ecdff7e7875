"""The services' data files are private to the user running them.

A DuckDB file holds every tenant's events and keys' hashes: no other local user may read
it. ``make_private(path)`` is called before a service opens its file: the process umask
becomes 077, so everything it creates from then on (the file, DuckDB's ``.wal`` and temp
files) is 0600 / 0700; a file or WAL left by an older version is tightened to 0600; the
file's folder is created 0700, and tightened to 0700 when it is the platform's data home
(``LIFTSTREAM_HOME``). Any other existing folder (``--db /tmp/x.duckdb``) is the
operator's choice and left as it is.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from liftstream.settings import home_dir

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_private(path: Path) -> None:
    """Make ``path`` (a DuckDB file, existing or not) and what comes with it private."""
    os.umask(0o077)
    folder = path.parent
    created = not folder.exists()
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if created or _same(folder, home_dir()):
        folder.chmod(FOLDER_MODE)
    for file in (path, path.with_name(f"{path.name}.wal")):
        with contextlib.suppress(FileNotFoundError):
            file.chmod(FILE_MODE)


def _same(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False
