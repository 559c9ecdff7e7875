"""liftstream's client SDK (the CLI is ``liftstream_cli``; the server side is ``services``).

The SDK (assignment, exposure logging, outcome tracking) imports neither DuckDB, aiokafka
nor statsmodels, so services can embed it cheaply:

    from liftstream import LiftstreamClient, assign, ConfigPoller, HttpTransport

Names are resolved on first use, so ``import liftstream.settings`` (which every service
does) does not load the Kafka producer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liftstream.assignment import assign, bucket
    from liftstream.client import LiftstreamClient
    from liftstream.errors import DeliveryError, InvalidInputError, PlatformUnavailableError
    from liftstream.http_transport import HttpTransport, TransportStats
    from liftstream.local_config import ConfigEvaluator, ConfigPoller

_EXPORTS = {
    "assign": "liftstream.assignment",
    "bucket": "liftstream.assignment",
    "LiftstreamClient": "liftstream.client",
    "DeliveryError": "liftstream.errors",
    "InvalidInputError": "liftstream.errors",
    "PlatformUnavailableError": "liftstream.errors",
    "HttpTransport": "liftstream.http_transport",
    "TransportStats": "liftstream.http_transport",
    "ConfigEvaluator": "liftstream.local_config",
    "ConfigPoller": "liftstream.local_config",
}

__all__ = [
    "ConfigEvaluator",
    "ConfigPoller",
    "DeliveryError",
    "HttpTransport",
    "InvalidInputError",
    "LiftstreamClient",
    "PlatformUnavailableError",
    "TransportStats",
    "assign",
    "bucket",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'liftstream' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
