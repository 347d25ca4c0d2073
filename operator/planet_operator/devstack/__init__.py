"""The local stack behind ``planet dev up`` and ``make demo``: a development and test harness.

It runs the embedded API server, the real operator and a *local KServe runtime* on one machine with
no cluster and no GPU. The runtime runs each InferenceService's predictor container command as a
local process (tiny preset, torch on CPU), reports KServe-shaped status, splits traffic between
revisions as ``canaryTrafficPercent`` / ``spec.canary[]`` say, and runs InferenceGraph Sequence
steps. It is not a production runtime: no scale-out, no images, no network isolation, no auth.
"""
