r"""SDXL text-to-image predictor: ``python -m planet_predictors.sdxl``.

V1 — ``POST /v1/models/NAME:predict``::

    {"instances": [{"prompt": {"color": "deep blue", "atmosphere": "frosted cloudy zones",
                               "moons": "no moons", "sky": "distant stars dark sky"},
                    "seed": 42, "steps": 30, "guidance": 7.0, "lane": "final", "format": "png",
                    "width": 1536, "height": 640, "negative_prompt": "blurry"}]}

``prompt`` is an object of the pipeline's attributes (rendered through its template) or a string of
free text. Everything else is optional: ``seed`` (absent: random, and returned), ``steps`` (default:
the lane's), ``guidance``, ``lane`` (``final``/``draft`` or the configured lanes), ``format``
(``png`` | ``webp`` | ``jpeg``), ``width``/``height`` (multiples of 8, at most the configured area).
Answer::

    {"predictions": [{"image": "<base64>", "format": "png", "width": 1536, "height": 640, "seed": 42,
                      "prompt": "deep blue planet with ...", "lane": "final", "revision": "r1",
                      "timings": {"queue_ms": ..., "encode_prompt_ms": ..., "denoise_ms": ...,
                                  "decode_ms": ..., "encode_image_ms": ..., "total_ms": ...}}]}

V2 / Open Inference Protocol — ``POST /v2/models/NAME/infer``; inputs by name, one row per image:
``prompt`` BYTES [n] (free text, or a JSON object string for a structured prompt), optional ``seed``
INT64 [n], ``steps`` INT32 [n], ``guidance`` FP32 [n], ``lane`` BYTES [n], ``format`` BYTES [n],
``width``/``height`` INT32 [n], ``negative_prompt`` BYTES [n]. Outputs: ``image`` BYTES [n] (base64),
``seed`` INT64 [n], ``metadata`` BYTES [n] (JSON: prompt, timings, width, height, format, lane, revision).

V2 binary data (KServe's and Triton's ``binary_data=True``) is accepted for every input; answers
are JSON. Structured prompts sent as BYTES are JSON object strings there too.

Errors, in one shape everywhere: 400 ``{"error": "instances[0].prompt.color: unsupported value
\"plaid\"; allowed: ...", "reason": "bad_request", "field": "instances[0].prompt.color"}`` (also for
text that is not valid Unicode, nesting over 1024 levels, and more images for a lane than its queue
can ever hold); 429 with ``Retry-After`` when a lane's queue is full or drafts are shed; 504 on
timeout (the work stops at the next denoising step); 503 while shutting down. See
docs/operations.md, "Predictor HTTP API". PNGs carry ``planetgen:*`` tEXt provenance (pipeline,
revision, model_hash, seed, prompt_sha256, steps).
"""
