"""Run the web dashboard.

``python -m services.dashboard [--host 127.0.0.1] [--port 8794] [--results-url URL]
[--control-url URL] [--secure-cookies]``; ``--port 0`` takes a free port. The services'
addresses default to ``LIFTSTREAM_RESULTS_URL`` / ``LIFTSTREAM_CONTROL_URL`` or the running
platform's. Prints ``dashboard ready at URL`` once it answers; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import logging
import sys

from liftstream.settings import load_settings
from services.dashboard.app import create_app
from services.dashboard.platform_api import PlatformApi
from services.http_runner import announcing_server, configure_logging, service_arguments

DEFAULT_PORT = 8794


def main(argv: list[str] | None = None) -> int:
    parser = service_arguments("python -m services.dashboard", __doc__, DEFAULT_PORT)
    parser.add_argument("--results-url", default=None)
    parser.add_argument("--control-url", default=None)
    parser.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark the session cookie Secure (when served over HTTPS)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = load_settings()
    results_url = args.results_url or settings.results_url
    control_url = args.control_url or settings.control_url
    if not results_url or not control_url:
        print(
            "the dashboard needs the results and control services: set "
            "LIFTSTREAM_RESULTS_URL and LIFTSTREAM_CONTROL_URL (or run `liftstream up`)",
            file=sys.stderr,
        )
        return 2
    app = create_app(PlatformApi(results_url, control_url), secure_cookies=args.secure_cookies)
    announcing_server(app, args, "dashboard").run()
    return 0
