"""API keys: how they look, how they are hashed, and the key projection every service uses.

A key reads ``lsk_<key id>_<secret>``. The key id is public (it is the author of the
changes made with the key); the control topic stores only the SHA-256 of the whole key.
``KeyRing`` is the pure projection of the control events that concern keys:
hash -> (tenant, role, revoked). The control service and the results service both
authenticate with it, each following the control topic.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace

from schemas.control import ApiKeyIssued, ApiKeyRevoked, ControlEvent, Role

KEY_PREFIX = "lsk_"
ROLES: tuple[Role, ...] = ("admin", "ingest", "read")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret_key: str  # shown to its owner once, never stored
    key_hash: str


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant_id: str
    role: Role
    revoked: bool
    label: str


def hash_key(secret_key: str) -> str:
    """The SHA-256 (hex) of a full key, as stored on the control topic."""
    return hashlib.sha256(secret_key.encode()).hexdigest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret_key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id=key_id, secret_key=secret_key, key_hash=hash_key(secret_key))


def key_id_of(secret_key: str) -> str | None:
    """The key id a well-formed key names, else None (no lookup needed to reject junk)."""
    if not secret_key.startswith(KEY_PREFIX):
        return None
    key_id, separator, secret = secret_key[len(KEY_PREFIX) :].partition("_")
    return key_id if separator and key_id and secret else None


class KeyRing:
    """Key id -> record, and hash -> key id, from the control events applied in log order."""

    def __init__(self) -> None:
        self._by_id: dict[str, KeyRecord] = {}
        self._hash_of: dict[str, str] = {}

    def apply(self, event: ControlEvent) -> None:
        if isinstance(event, ApiKeyIssued):
            if event.key_id in self._by_id:
                return  # a key id is issued once; a replayed or forged re-issue changes nothing
            self._by_id[event.key_id] = KeyRecord(
                event.key_id, event.tenant_id, event.role, revoked=False, label=event.label
            )
            self._hash_of[event.key_id] = event.key_hash
        elif isinstance(event, ApiKeyRevoked):
            record = self._by_id.get(event.key_id)
            if record is not None and record.tenant_id == event.tenant_id:
                self._by_id[event.key_id] = replace(record, revoked=True)

    def authenticate(self, secret_key: str) -> KeyRecord | None:
        """The record of a known key, revoked or not; None for an unknown or malformed key."""
        key_id = key_id_of(secret_key)
        if key_id is None or key_id not in self._by_id:
            return None
        if not hmac.compare_digest(self._hash_of[key_id], hash_key(secret_key)):
            return None
        return self._by_id[key_id]

    def get(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    def of_tenant(self, tenant_id: str) -> list[KeyRecord]:
        return sorted(
            (r for r in self._by_id.values() if r.tenant_id == tenant_id), key=lambda r: r.key_id
        )

    def rows(self) -> list[tuple[str, str, str, str, bool, str]]:
        """(key id, tenant, role, hash, revoked, label) of every key, for the DuckDB mirror."""
        return [
            (r.key_id, r.tenant_id, r.role, self._hash_of[r.key_id], r.revoked, r.label)
            for r in sorted(self._by_id.values(), key=lambda r: r.key_id)
        ]
