"""Canary rollouts: a pure state machine, Prometheus analysis and a small Prometheus client.

Import modules, not names: ``from planet_operator.rollout import machine`` then ``machine.decide``.
"""
