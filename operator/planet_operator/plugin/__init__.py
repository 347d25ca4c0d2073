"""``kubectl planet``: inspect pipelines and drive their rollouts from kubectl."""
