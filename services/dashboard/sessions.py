"""Signed-in sessions of the dashboard, held on the server.

Signing in with an API key makes a session: a random id (256 bits) that goes to the
browser in an HttpOnly, SameSite=Strict cookie, while the key itself, the key's tenant and
role (as the control service reported them) and the session's CSRF token stay here in
memory. The key is never in a URL, a page or the browser's storage. A session ends when
its owner signs out, after ``idle_s`` without a request, after ``max_age_s`` in any case,
or when the dashboard restarts (sign in again). The store holds at most ``max_sessions``;
the least recently used is dropped first.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE_NAME = "liftstream_session"
DEFAULT_IDLE_S = 8 * 3600.0
DEFAULT_MAX_AGE_S = 24 * 3600.0
DEFAULT_MAX_SESSIONS = 10_000


@dataclass
class Session:
    """One signed-in browser: the key it acts with and what the control service said of it."""

    session_id: str
    api_key: str = field(repr=False)
    key_id: str
    tenant_id: str
    role: str
    csrf_token: str = field(repr=False)
    created_at: float
    last_seen: float
    flashes: list[str] = field(default_factory=list)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def flash(self, message: str) -> None:
        """A message for the next page this session sees ("Kill switch set.")."""
        self.flashes = [*self.flashes[-4:], message]

    def take_flashes(self) -> list[str]:
        taken, self.flashes = self.flashes, []
        return taken

    def csrf_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token.encode(), token.encode())


class SessionStore:
    def __init__(
        self,
        idle_s: float = DEFAULT_IDLE_S,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_s = idle_s
        self._max_age_s = max_age_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, api_key: str, key_id: str, tenant_id: str, role: str) -> Session:
        now = self._clock()
        session = Session(
            session_id=secrets.token_urlsafe(32),
            api_key=api_key,
            key_id=key_id,
            tenant_id=tenant_id,
            role=role,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
        )
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen > self._idle_s or now - session.created_at > self._max_age_s:
                del self._sessions[session_id]
                return None
            session.last_seen = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
