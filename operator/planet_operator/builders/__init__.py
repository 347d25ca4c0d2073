"""Pure builders: a validated spec in, Kubernetes manifests out.

No I/O here: `planet render` and the operator's handlers call the same functions.
"""
