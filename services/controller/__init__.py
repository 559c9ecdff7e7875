"""The rollout controller: checks every active rollout plan on its interval and writes
each decision (advance, hold, rollback, complete, inconclusive) with its evidence to the
control topic; calls the plans' webhooks. ``python -m services.controller``."""
