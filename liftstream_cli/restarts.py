"""When the local supervisor restarts a part that exited, and when it gives up on it.

A part that exits is started again after a back-off that doubles with each exit of the
current streak (``initial_backoff_s``, twice that, …, at most ``max_backoff_s``). The
streak is the exits within the last ``window_s`` seconds: a part that stayed up that long
starts afresh. The supervisor gives up on a part when it has exited ``give_up_after``
times within the window: then something is wrong that restarting will not mend, and
``liftstream up`` stops, naming the part and quoting its log.

Pure: the caller passes the clock (``time.monotonic`` values), so this is unit-tested
without processes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    give_up_after: int = 5
    window_s: float = 60.0


@dataclass(frozen=True)
class Restart:
    """Start the part again at ``at`` (monotonic seconds); ``streak`` exits in the window."""

    at: float
    streak: int


@dataclass(frozen=True)
class GiveUp:
    """The part exited ``exits`` times within ``window_s`` seconds: stop restarting it."""

    exits: int
    window_s: float


@dataclass
class RestartTracker:
    """One part's exits and restarts."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: int = 0
    _exits: deque[float] = field(default_factory=deque)

    def exited(self, now: float) -> Restart | GiveUp:
        """Record an exit at ``now``; say when to start the part again, or to give up."""
        self._exits.append(now)
        while self._exits and now - self._exits[0] > self.policy.window_s:
            self._exits.popleft()
        streak = len(self._exits)
        if streak >= self.policy.give_up_after:
            return GiveUp(streak, self.policy.window_s)
        backoff = min(self.policy.max_backoff_s, self.policy.initial_backoff_s * 2 ** (streak - 1))
        return Restart(now + backoff, streak)

    def restarted(self) -> None:
        self.restarts += 1
