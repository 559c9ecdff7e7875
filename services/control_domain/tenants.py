"""Operator commands on the control topic: create a tenant with its first admin key.

The operator's trust comes from access to Kafka, like the broker's own tools: these
functions read the control topic, check the change against its projection, and write
the events directly (the control service picks them up like any other). Everything a
tenant does afterwards goes through the control API with its keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from kafka.errors import KafkaError
from pydantic import ValidationError

from liftstream.errors import InvalidInputError, PlatformUnavailableError
from liftstream.producer import create_producer
from liftstream.settings import Settings
from schemas.control import ApiKeyIssued, ControlEvent, Role, TenantCreated
from schemas.errors import FieldError
from services.control_domain.api_keys import NewKey, generate_key
from services.control_domain.control_log import read_control_state

OPERATOR = "operator"
SEND_TIMEOUT_S = 30.0


class TenantExistsError(InvalidInputError):
    """The tenant already exists."""


@dataclass(frozen=True)
class IssuedKey:
    tenant_id: str
    role: Role
    key: NewKey


def _publish(settings: Settings, events: list[ControlEvent]) -> None:
    producer = create_producer(
        settings.bootstrap, client_id="liftstream-operator", linger_ms=0, max_block_s=15.0
    )
    try:
        for event in events:
            producer.send(
                settings.topics.control,
                key=event.partition_key,
                value=event.model_dump_json().encode(),
            ).get(timeout=SEND_TIMEOUT_S)
    except KafkaError as error:
        raise PlatformUnavailableError(
            f"Kafka at {settings.bootstrap} did not store the control event ({error})"
        ) from error
    finally:
        producer.close(timeout=5)


def _key_event(tenant_id: str, key: NewKey, role: Role, reason: str) -> ApiKeyIssued:
    return ApiKeyIssued(
        tenant_id=tenant_id,
        author=OPERATOR,
        reason=reason,
        key_id=key.key_id,
        key_hash=key.key_hash,
        role=role,
        label=reason,
    )


def bootstrap_tenant(
    settings: Settings, tenant_id: str, name: str = "", reason: str = "bootstrap"
) -> IssuedKey:
    """Create ``tenant_id`` and its first admin key; ``TenantExistsError`` if it exists."""
    try:
        created = TenantCreated(tenant_id=tenant_id, author=OPERATOR, name=name, reason=reason)
    except ValidationError as error:
        raise InvalidInputError.from_validation("invalid tenant", error) from None
    state = read_control_state(settings.bootstrap, settings.topics.control)
    existing = state.tenant(tenant_id)
    if existing is not None and existing.created:
        raise TenantExistsError(
            "cannot bootstrap the tenant",
            [FieldError(field="tenant_id", reason=f"tenant '{tenant_id}' already exists")],
        )
    key = generate_key()
    _publish(settings, [created, _key_event(tenant_id, key, "admin", reason)])
    return IssuedKey(tenant_id, "admin", key)


def local_admin_key(settings: Settings, tenant_id: str) -> str:
    """A working admin key of ``tenant_id`` for this machine's CLI, creating what is missing.

    The key is kept in ``$LIFTSTREAM_HOME/local-admin.json`` (mode 0600) and reused while
    the control topic still knows it; otherwise the tenant is created if needed and a new
    admin key issued.
    """
    path = settings.home / "local-admin.json"
    saved = _read_saved_keys(path)
    state = read_control_state(settings.bootstrap, settings.topics.control)
    known = saved.get(f"{settings.namespace}/{tenant_id}")
    if known is not None:
        record = state.keys.authenticate(known)
        if record is not None and not record.revoked and record.tenant_id == tenant_id:
            return known
    tenant = state.tenant(tenant_id)
    key = generate_key()
    reason = "local admin key for liftstream up"
    events: list[ControlEvent] = []
    if tenant is None or not tenant.created:
        events.append(TenantCreated(tenant_id=tenant_id, author=OPERATOR, reason=reason))
    events.append(_key_event(tenant_id, key, "admin", reason))
    _publish(settings, events)
    saved[f"{settings.namespace}/{tenant_id}"] = key.secret_key
    write_private_json(path, saved)
    return key.secret_key


def _read_saved_keys(path: Path) -> dict[str, str]:
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}


def write_private_json(path: Path, content: object) -> None:
    """Write JSON readable by the owner only (0600), never briefly readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(content, file, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
