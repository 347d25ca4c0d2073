"""Kopf handlers: thin glue between watch events and :mod:`planet_operator.reconcile`.

Importing this package registers every handler (``kopf run -m planet_operator.handlers``).
"""

from planet_operator.handlers import children, lifecycle, pipelines

__all__ = ["children", "lifecycle", "pipelines"]
