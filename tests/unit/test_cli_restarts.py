"""The supervisor's restart policy: doubling back-off with a cap, a streak that a long run
resets, and giving up after repeated fast failures."""

from __future__ import annotations

from liftstream_cli.restarts import GiveUp, Restart, RestartPolicy, RestartTracker

POLICY = RestartPolicy(initial_backoff_s=0.5, max_backoff_s=3.0, give_up_after=5, window_s=60)


def test_back_off_doubles_up_to_its_cap() -> None:
    tracker = RestartTracker(POLICY)
    waits = []
    now = 0.0
    for _ in range(4):
        decision = tracker.exited(now)
        assert isinstance(decision, Restart)
        waits.append(decision.at - now)
        now += 1.0
    assert waits == [0.5, 1.0, 2.0, 3.0]


def test_gives_up_on_the_fifth_exit_within_a_minute() -> None:
    tracker = RestartTracker(POLICY)
    decisions = [tracker.exited(float(second)) for second in range(0, 50, 10)]
    assert all(isinstance(d, Restart) for d in decisions[:4])
    assert decisions[4] == GiveUp(exits=5, window_s=60)


def test_a_part_that_ran_longer_than_the_window_starts_a_new_streak() -> None:
    tracker = RestartTracker(POLICY)
    for second in (0.0, 1.0, 2.0, 3.0):
        assert isinstance(tracker.exited(second), Restart)
    # It then ran for over a minute: its next exit is the first of a new streak.
    decision = tracker.exited(200.0)
    assert decision == Restart(at=200.5, streak=1)


def test_restarts_are_counted() -> None:
    tracker = RestartTracker(POLICY)
    tracker.exited(0.0)
    tracker.restarted()
    tracker.exited(5.0)
    tracker.restarted()
    assert tracker.restarts == 2
