"""A small async Kubernetes REST client and apply helpers (the bottom layer of the operator)."""
