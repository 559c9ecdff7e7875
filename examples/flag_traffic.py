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

from local_traffic import local_client, run_paced

FLAG = "new-checkout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--users-per-s", type=float, default=2000.0)
    parser.add_argument("--bad", action="store_true", help="the on value fails more often")
    options = parser.parse_args()
    client = local_client(options.tenant)
    rng = random.Random(7)
    started = int(time.time())

    def user_visits(index: int) -> None:
        user = f"shopper-{started}-{index}"
        on = client.enabled(FLAG, user, {"region": "us" if index % 4 == 0 else "eu"})
        if rng.random() < (0.08 if on and options.bad else 0.05):
            client.track(user, "checkout_error")
        if rng.random() < 0.10:
            client.track(user, "purchase", value=round(rng.lognormvariate(3.5, 0.6), 2))

    run_paced(client, user_visits, options.users_per_s, "users", every=1000)


if __name__ == "__main__":
    main()
