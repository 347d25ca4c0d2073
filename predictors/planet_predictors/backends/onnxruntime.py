"""ONNX Runtime backend: the UNet (the denoising loop's cost) runs as an ONNX graph.

Minimal on purpose: text encoders, VAE and scheduler stay in torch; ``--engine-dir`` holds
``manifest.json`` (``{"backend": "onnxruntime", "components": {"unet": {"path": "unet.onnx"}}}``)
and the graph, whose inputs are ``sample``, ``timestep``, ``encoder_hidden_states``,
``text_embeds``, ``time_ids`` and whose output is ``out_sample`` (:func:`export_unet` writes one).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_contracts.engines import MANIFEST, UNET_INPUTS, UNET_OUTPUT
from planet_predictors.backends.base import component_path
from planet_predictors.backends.graph import GraphForward
from planet_predictors.backends.torch_diffusers import TorchBackend
from planet_predictors.serving.errors import BackendUnavailable


class OnnxRuntimeBackend(TorchBackend):
    """Torch pipeline around an ONNX Runtime UNet session."""

    name = "onnxruntime"

    def _after_load(self) -> None:
        import onnxruntime as ort

        path = component_path(self.settings.engine_dir, backend=self.name, component="unet")
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # ORT raises its own untyped errors
            raise BackendUnavailable(f"cannot load ONNX UNet {path}: {exc}") from exc
        unet = self.pipe.unet
        # The pipeline reads the UNet's config and modules; only its forward is replaced.
        unet.forward = _OrtForward(session)


class _OrtForward(GraphForward):
    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        (out,) = self.session.run([UNET_OUTPUT], {name: _np(value) for name, value in feeds.items()})
        return torch.from_numpy(out)


def _np(tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


class UNetExportWrapper(torch.nn.Module):
    """The SDXL UNet with flat tensor inputs: what ONNX export and TensorRT see."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        text_embeds: torch.Tensor,
        time_ids: torch.Tensor,
    ) -> torch.Tensor:
        """One denoising step; ``timestep`` has one value per batch item."""
        added = {"text_embeds": text_embeds, "time_ids": time_ids}
        out = self.unet(sample, timestep, encoder_hidden_states, added_cond_kwargs=added, return_dict=False)
        return out[0]  # type: ignore[no-any-return]


def unet_dims(unet: Any, *, sequence: int = 77) -> dict[str, int]:
    """The UNet's input sizes: latent channels, text width and length, pooled text width.

    ``sequence`` is the tokenizer's length (SDXL's CLIP: 77; a model with its own tokenizer differs).
    """
    cfg = unet.config
    text_dim = int(unet.add_embedding.linear_1.in_features) - 6 * int(cfg.addition_time_embed_dim)
    return {
        "latent_channels": int(cfg.in_channels),
        "cross_attention_dim": int(cfg.cross_attention_dim),
        "text_embeds": text_dim,
        "sequence": sequence,
        "time_ids": 6,
    }


def unet_inputs(
    unet: Any,
    *,
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    sequence: int = 77,
) -> tuple[torch.Tensor, ...]:
    """Random UNet inputs in ``UNET_INPUTS`` order for a latent of ``height`` x ``width``."""
    dims = unet_dims(unet, sequence=sequence)
    return (
        torch.randn(batch, dims["latent_channels"], height, width, generator=generator),
        torch.full((batch,), 10.0),
        torch.randn(batch, dims["sequence"], dims["cross_attention_dim"], generator=generator),
        torch.randn(batch, dims["text_embeds"], generator=generator),
        torch.randn(batch, dims["time_ids"], generator=generator),
    )


def unet_dynamic_axes() -> dict[str, dict[int, str]]:
    """Batch is dynamic everywhere; the latent's size and the text's length too.

    ONNX Runtime then serves any size, and any tokenizer (SDXL's pad to 77, a preset's own to fewer).
    """
    dynamic = {name: {0: "batch"} for name in UNET_INPUTS}
    dynamic["encoder_hidden_states"] = {0: "batch", 1: "sequence"}
    dynamic["sample"] = {0: "batch", 2: "height", 3: "width"}
    dynamic[UNET_OUTPUT] = {0: "batch", 2: "height", 3: "width"}
    return dynamic


#: A latent this size traces the path that upsamples to the skip tensors' size (odd height): the
#: graph then works for every size, not only multiples of the UNet's downsampling factor.
EXPORT_LATENT = (7, 16)


def export_unet(unet: Any, engine_dir: Path, *, opset: int = 17) -> Path:
    """Export an SDXL UNet with dynamic batch and size, and write the manifest (tests, local use)."""
    engine_dir.mkdir(parents=True, exist_ok=True)
    example = unet_inputs(unet, batch=2, height=EXPORT_LATENT[0], width=EXPORT_LATENT[1])
    path = engine_dir / "unet.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape asserts: the graph is checked by tests
        torch.onnx.export(
            UNetExportWrapper(unet).eval(),
            example,
            str(path),
            input_names=list(UNET_INPUTS),
            output_names=[UNET_OUTPUT],
            dynamic_axes=unet_dynamic_axes(),
            opset_version=opset,
            dynamo=False,
        )
    manifest = {"backend": "onnxruntime", "precision": "fp32", "components": {"unet": {"path": path.name}}}
    (engine_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path
