"""Model-agnostic serving core: lanes, admission, micro-batching, errors and metrics.

Also what the predictors share around their own work: ``model`` (warm-up, all-or-nothing submit,
finish), ``protocol`` (V1/V2 envelopes) and ``cli`` (flags, starting ``kserve.ModelServer``).

Layers (nothing imports upward): ``sdxl``/``upscaler`` ▶ ``serving`` ▶ ``errors``/``metrics``.
"""
