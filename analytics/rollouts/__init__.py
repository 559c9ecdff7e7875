"""Rollout decisions: pure functions of a plan, the rollout's state and what a check saw.

``guardrails`` tests each guardrail metric (one-sided, always valid, relative scale),
``health`` the health gates, ``decide`` turns both into advance | hold | rollback |
complete | inconclusive with its evidence, ``simulation`` runs seeded simulated rollouts.
No I/O and no clock: the same inputs give the same decision, bit for bit.
"""
