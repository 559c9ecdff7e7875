"""What the example traffic scripts share: an SDK client for the local platform, and a
loop that calls one step at a steady rate until Ctrl-C.

The client reads the platform's addresses and key as the CLI does (``liftstream up``
writes them to ``$LIFTSTREAM_HOME/platform.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from liftstream import LiftstreamClient
from liftstream_cli.local_settings import load_settings


def local_client(tenant: str) -> LiftstreamClient:
    """An SDK client of ``tenant`` on the platform ``liftstream up`` runs, config streamed."""
    settings = load_settings()
    return LiftstreamClient.from_config(
        settings.control_url,
        settings.api_key,
        tenant_id=tenant,
        bootstrap=settings.bootstrap,
        namespace=settings.namespace,
    )


def run_paced(
    client: LiftstreamClient, step: Callable[[int], None], per_s: float, what: str, every: int
) -> None:
    """``step(0)``, ``step(1)``, ... at ``per_s`` a second (paced each ``every`` steps),
    printing the count, until Ctrl-C; then the client is closed (its events flushed)."""
    started, done = time.monotonic(), 0
    try:
        while True:
            step(done)
            done += 1
            if done % every == 0:
                ahead = done / per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                print(f"\r{done} {what}", end="", flush=True)
    except KeyboardInterrupt:
        print()
    finally:
        client.close()
