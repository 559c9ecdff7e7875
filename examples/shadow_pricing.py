"""A shadow test of a new pricing function beside the old one, through the SDK: the
candidate a gated rollout waits for (``examples/rollout-checkout-shadow-gate.yaml``).

Every call returns the old price; on half the calls the new one runs off the caller's path
and is compared with it, on the other half the old one runs twice (the noise floor). The
new function agrees with the old one (``--bad``: it differs on 5% of carts), so the
rollout's entry gate passes once enough comparisons are in (a few thousand); with
``--bad`` it never does. Watch ``liftstream rollout status`` and ``liftstream shadow
results pricing-v2``:

    python examples/shadow_pricing.py --tenant demo [--calls-per-s 500] [--bad]

It reads the platform's addresses and key as the CLI does (``liftstream up`` writes them),
and stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import zlib

from local_traffic import local_client, run_paced

SHADOW = "pricing-v2"


def old_price(cart: int) -> float:
    return round(10 + (cart % 97) * 0.5, 2)


def new_price(cart: int, bad: bool) -> float:
    wrong = bad and zlib.crc32(str(cart).encode()) % 20 == 0
    return old_price(cart) + (1.0 if wrong else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--calls-per-s", type=float, default=500.0)
    parser.add_argument("--bad", action="store_true", help="the candidate differs on 5%%")
    options = parser.parse_args()
    client = local_client(options.tenant)

    def priced(cart: int) -> None:
        client.shadow(
            SHADOW,
            primary=lambda: old_price(cart),
            candidate=lambda: new_price(cart, options.bad),
            sample=0.5,
            noise=0.5,
        )

    run_paced(client, priced, options.calls_per_s, "calls", every=100)


if __name__ == "__main__":
    main()
