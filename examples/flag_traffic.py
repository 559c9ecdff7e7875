"""Simulated users of the demo's checkout behind the flag ``new-checkout``, through the SDK.

Each user (region ``eu`` or, one in four, ``us``) asks ``client.enabled("new-checkout",
...)``, which serves the flag's current rollout step and logs the exposure of the users in
its arms; then checks out: an error with probability 5% (``--bad``: 8% when the flag is
on), a purchase with probability 10%. Run it beside a rollout of the flag
(``examples/rollout-new-checkout-flag.yaml``) and watch ``liftstream rollout status``:

    python examples/flag_traffic.py --tenant demo [--users-per-s 2000] [--bad]

It reads the platform's addresses and key as the CLI does (``liftstream up`` writes them),
and stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import random
import time

from liftstream import LiftstreamClient
from liftstream_cli.local_settings import load_settings

FLAG = "new-checkout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--users-per-s", type=float, default=2000.0)
    parser.add_argument("--bad", action="store_true", help="the on value fails more often")
    options = parser.parse_args()
    settings = load_settings()
    client = LiftstreamClient.from_config(
        settings.control_url,
        settings.api_key,
        tenant_id=options.tenant,
        bootstrap=settings.bootstrap,
        namespace=settings.namespace,
    )
    rng = random.Random(7)
    started, users = time.monotonic(), 0
    try:
        while True:
            user = f"shopper-{int(started)}-{users}"
            region = "us" if users % 4 == 0 else "eu"
            users += 1
            on = client.enabled(FLAG, user, {"region": region})
            if rng.random() < (0.08 if on and options.bad else 0.05):
                client.track(user, "checkout_error")
            if rng.random() < 0.10:
                client.track(user, "purchase", value=round(rng.lognormvariate(3.5, 0.6), 2))
            if users % 1000 == 0:
                ahead = users / options.users_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                print(f"\r{users} users", end="", flush=True)
    except KeyboardInterrupt:
        print()
    finally:
        client.close()


if __name__ == "__main__":
    main()
