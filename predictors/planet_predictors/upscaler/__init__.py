r"""Upscale-chain predictor: ``python -m planet_predictors.upscaler``.

Runs ``spec.upscale.stages`` in order: ``upscale`` (an ESRGAN-family checkpoint loaded with spandrel,
tiled), ``resize`` (PIL filter), ``img2img`` (SDXL detail pass with the request's prompt and seed,
tiled in pixel space). Tiles overlap by ``tileOverlap`` and are blended with feathered weights into a
band of rows, so memory follows the tile size, not the image size (``tiling``).

V1 — ``POST /v1/models/NAME:predict``::

    {"instances": [{"image": "<base64 PNG/JPEG/WebP>", "prompt": "...", "seed": 1,
                    "lane": "final", "format": "png", "stages": [...optional override...]}]}

The SDXL predictor's answer is accepted as is (the InferenceGraph sends it as ``$response``):
``{"predictions": [{"image", "format", "width", "height", "seed", "prompt", "lane", "revision",
"timings"}]}``; its ``format`` is kept for the output. Answer::

    {"predictions": [{"image": "<base64>", "format": "png", "width": 3440, "height": 1440, "seed": 1,
                      "prompt": "...", "lane": "final", "revision": "r1",
                      "stages": [{"type": "upscale", "width": 3072, "height": 1280, "ms": 812.5}, ...],
                      "timings": {"queue_ms", "stages_ms", "encode_image_ms", "total_ms"}}]}

A request's ``stages`` follows the spec's stage schema and cross-field rules (a resize needs width
and height, an img2img strength, only upscale stages take a factor); its upscale stages cannot name
a ``model`` (only mounted checkpoints run) and their factor must be one the pipeline loaded. Per image
it may cost at most what the pipeline's own chain costs on the largest input accepted, or one
generation at the lane's steps, whichever is more (``stages.cost_limits``, in pixel-steps).

Provenance: the output carries this server's ``planetgen:*`` keys only (the input's text chunks are
dropped: anyone can write them) and ``planetgen:input_sha256``, the hash of the input file.

V2 / Open Inference Protocol — ``POST /v2/models/NAME/infer``: ``image`` BYTES [n] (base64, or the file
itself as V2 binary data), optional ``prompt`` BYTES [n], ``seed`` INT64 [n], ``lane`` BYTES [n],
``format`` BYTES [n], ``stages`` BYTES [n] (JSON lists). Outputs: ``image`` BYTES [n], ``seed`` INT64
[n], ``metadata`` BYTES [n] (JSON).

Errors (``{"error", "reason", "field"}``, see docs/operations.md): 400 naming the field (not base64,
not an image, over the pixel limit, a stage the spec's rules refuse, over the cost limit, empty
``instances``), 429 + ``Retry-After`` when a lane is full, 504 on timeout (the work stops at the next
tile or denoising step).

Models. Checkpoints are mounted at ``<--upscaler-root>/<sha256(uri)[:12]>/`` (the operator's
``names.upscaler_dir``); the first ``.safetensors``/``.pth``/``.pt``/``.ckpt`` there is loaded. A model
whose scale differs from the stage's factor is run, then resized to the factor (lanczos).
``--preset tiny`` replaces every upscaler by a seeded random Real-ESRGAN Compact of the stage's factor
and SDXL by the tiny SDXL preset.

ONNX Runtime contract (``--backend onnxruntime``; written by the engine builder): ``--engine-dir``
holds ``manifest.json`` with ``{"backend": "onnxruntime", "components": {"upscaler-<sha256(uri)[:12]>":
{"path": "<file>.onnx"}}}``; the graph's input is ``image`` (float32 NCHW, RGB in 0..1, dynamic batch,
height and width) and its output ``upscaled`` (float32 NCHW, 0..1, ``scale`` x the input's size). A
``unet`` component, when present, also runs the img2img UNet with ONNX Runtime.

TensorRT: there are no TensorRT upscaler engines; ``--backend tensorrt`` logs a warning and runs the
chain with torch (fp16 on CUDA), so a TensorRT pipeline's upscale step still starts.
"""
