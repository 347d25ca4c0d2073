"""Model-agnostic serving core: lanes, admission, micro-batching, errors and metrics.

Layers (nothing imports upward): ``sdxl``/``upscaler`` ▶ ``serving`` ▶ ``errors``/``metrics``.
"""
