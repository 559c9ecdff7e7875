"""Which webhook calls are settled, kept in the controller's data directory: what makes
webhook delivery at-least-once across controller restarts.

A decision's call to one URL is *settled* once the receiver took it (2xx) or the sender
gave up on it (a 4xx refusal, the retries spent, the URL policy): ``record`` writes it to a
small SQLite file (``deliveries.sqlite`` in ``LIFTSTREAM_CONTROLLER_DATA_DIR``). A call
queued or being retried when the process dies is not settled, so the controller, reading
the control log again at start-up, sends it again (``Controller.on_applied``); the
receiver de-duplicates by ``X-Liftstream-Event-Id`` (the decision's id). Calls of
decisions older than ``resend_s`` are not sent again, and a file created now (a new data
directory) knows nothing of the past, so nothing before it is sent again (logged).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from services.private_files import make_private

FILE_NAME = "deliveries.sqlite"


#: Records between two prunings of a long-running controller's log.
PRUNE_EVERY = 10_000


class DeliveryLog:
    def __init__(self, folder: Path | None, keep_s: float = 2 * 24 * 3600.0) -> None:
        """``folder`` None: in memory (tests; nothing survives the process). Calls settled
        more than ``keep_s`` ago are forgotten (at start and every ``PRUNE_EVERY``)."""
        self.keep_s = keep_s
        self._recorded = 0
        if folder is None:
            target, self.fresh = ":memory:", True
        else:
            path = folder / FILE_NAME
            make_private(path)
            self.fresh = not path.exists()
            target = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS settled (event_id TEXT NOT NULL, url TEXT NOT NULL, "
            "outcome TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (event_id, url))"
        )

    def settled(self, event_id: str, url: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM settled WHERE event_id = ? AND url = ?", (event_id, url)
            ).fetchone()
        return row is not None

    def record(self, event_id: str, url: str, outcome: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO settled VALUES (?, ?, ?, ?)",
                (event_id, url, outcome, time.time()),
            )
            self._recorded += 1
        if self._recorded % PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> int:
        """Forget calls settled more than ``keep_s`` ago; how many."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM settled WHERE at < ?", (time.time() - self.keep_s,)
            )
        return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
