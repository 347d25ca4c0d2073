"""Model-agnostic serving core: lanes, admission, micro-batching, errors and metrics.

Also what the predictors share around their own work: ``model`` (warm-up, all-or-nothing submit,
finish), ``protocol`` (V1/V2 envelopes), ``binary`` (the V2 binary-data extension), ``text`` (the
Unicode check), ``http`` (what KServe's app gets: one error shape, limits, disconnects) and ``cli``
(flags, starting ``kserve.ModelServer``).

Layers (nothing imports upward): ``sdxl``/``upscaler`` ▶ ``serving`` ▶ ``errors``/``metrics``.
"""
