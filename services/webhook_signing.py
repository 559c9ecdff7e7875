"""HMAC-SHA256 signatures of rollout webhooks: shared by the controller (signs) and the
control API (tells a tenant its secret).

Each tenant's secret is derived from the operator's ``LIFTSTREAM_WEBHOOK_SECRET``
(``liftstream up`` makes one), so no secret is ever written to the control topic:
``secret = hex(HMAC-SHA256(operator secret, tenant id))``. A call carries
``X-Liftstream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``;
a receiver recomputes it with its secret (``verify``) and refuses old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from services.settings import WEBHOOK_SECRET_ENV, ServiceSettings, load

SECRET_ENV = WEBHOOK_SECRET_ENV
SIGNATURE_HEADER = "X-Liftstream-Signature"


def operator_secret(environ: Mapping[str, str] | None = None) -> str | None:
    return load(ServiceSettings, environ).webhook_secret or None


def tenant_secret(operator: str, tenant_id: str) -> str:
    return hmac.new(operator.encode(), tenant_id.encode(), hashlib.sha256).hexdigest()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance_s: float = 300.0) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, body, timestamp), header)
